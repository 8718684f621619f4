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
#: A map needs rocks from at least this many images to say more than one image's catalog does.
MIN_IMAGES = 2


def write_site_map(rows: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Plot rows with site coordinates when they come from at least two images; say what was done."""
    placed = [row for row in rows if row.get("site_x_m") not in (None, "") and row.get("site_y_m") not in (None, "")]
    images = sorted({row["image"] for row in placed})
    if len(images) < MIN_IMAGES:
        return {"written": False, "reason": f"site coordinates from {len(images)} image(s); a map needs "
                f"{MIN_IMAGES} or more"}
    figure = Figure(figsize=(7, 6.5))
    axis = figure.subplots()
    for image in images:
        mine = [row for row in placed if row["image"] == image]
        axis.scatter([float(r["site_y_m"]) for r in mine], [float(r["site_x_m"]) for r in mine],
                     s=[MARKER_AREA_PER_METRE * float(r.get("diameter_m") or 0.05) for r in mine],
                     alpha=0.6, label=Path(image).name)
    axis.set(xlabel="east (SITE_FRAME y, m)", ylabel="north (SITE_FRAME x, m)",
             title=f"{len(placed)} rocks from {len(images)} images")
    axis.set_aspect("equal", adjustable="datalim")
    axis.grid(alpha=0.3)
    if len(images) <= 12:
        axis.legend(fontsize="small", loc="best")
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=120, format="png")
    return {"written": True, "file": path.name, "images": len(images), "rocks": len(placed)}
