"""site_map.png: rocks from many images of a rover site on one map, from rocks.csv's site columns.

Each image's label gives the rover pose in SITE_FRAME, so rocks seen from different drives and
mast pointings fall where they lie on the ground. SITE_FRAME points x north, y east, z down: the
map shows north up and east right, one colour per image, marker area by rock diameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from rockdet.atomic import atomic_path

#: Marker area (points²) per metre of rock diameter on the map.
MARKER_AREA_PER_METRE = 400.0
#: Marker size of a rock without a metric size (m).
UNSIZED_DIAMETER_M = 0.05
#: A map needs rocks from at least this many images to say more than one image's catalog does.
MIN_IMAGES = 2


def write_site_map(points, path: Path) -> dict[str, Any]:
    """Plot rocks with site coordinates (``points``: columns images, north_m, east_m and
    diameter_m, NaN where unsized) when they come from at least two images; say what was done."""
    import numpy as np

    images = np.asarray(points.images, dtype=object)
    names = sorted(set(points.images))
    if len(names) < MIN_IMAGES:
        return {"written": False, "reason": f"site coordinates from {len(names)} image(s); a map needs "
                f"{MIN_IMAGES} or more"}
    north, east = np.asarray(points.north_m), np.asarray(points.east_m)
    diameter = np.nan_to_num(np.asarray(points.diameter_m), nan=UNSIZED_DIAMETER_M)
    figure = Figure(figsize=(7, 6.5))
    axis = figure.subplots()
    for image in names:
        mine = images == image
        axis.scatter(east[mine], north[mine], s=MARKER_AREA_PER_METRE * diameter[mine], alpha=0.6,
                     label=Path(image).name)
    axis.set(xlabel="east (SITE_FRAME y, m)", ylabel="north (SITE_FRAME x, m)",
             title=f"{len(images)} rocks from {len(names)} images")
    axis.set_aspect("equal", adjustable="datalim")
    axis.grid(alpha=0.3)
    if len(names) <= 12:
        axis.legend(fontsize="small", loc="best")
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=120, format="png")
    return {"written": True, "file": path.name, "images": len(names), "rocks": len(images)}
