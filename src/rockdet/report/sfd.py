"""Write a size-frequency result where people look: sfd.json beside sfd.png.

Kept apart from stats.sfd (statistics, no drawing) so imports run one way: this module uses both
the statistics and the plots, and neither of them knows about the other's caller.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from rockdet.atomic import write_json_atomic
from rockdet.errors import RockdetError, exception_reason
from rockdet.io.layout import SFD_FILES
from rockdet.report.plots import plot_sfd
from rockdet.stats.sfd import SfdResult, sfd_statistics, sizes_of_catalogs

SFD_JSON, SFD_PNG = SFD_FILES


def write_sfd(result: SfdResult, out_dir: Path, left_out: dict | None = None) -> dict:
    """sfd.json and sfd.png in ``out_dir``; returns the JSON's headline numbers. ``left_out``
    (what the statistics did not use, and why) is recorded in the JSON."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SFD_JSON, {**asdict(result), "model": "F_k(D) = k exp(-(1.79 + 0.152/k) D)",
                                           **({"left_out": left_out} if left_out is not None else {})})
    try:
        plot_sfd(result, out_dir / SFD_PNG)
    except (OverflowError, ValueError) as exc:  # matplotlib, for values no catalog should hold
        raise RockdetError(f"{out_dir / SFD_PNG}: cannot draw these sizes ({exc.__class__.__name__}: "
                           f"{exception_reason(exc)}); sfd.json is written") from None
    return {k: v for k, v in asdict(result).items() if k != "cumulative"}


def write_batch_sfd(out_dir: Path, catalogs: Iterable[tuple[str, list, Any]]) -> dict:
    """The batch's SFD from its catalogs' (name, rock rows, ground_area_m2); a batch without
    ground area, or with a corrupted one, reports why."""
    try:
        sizes = sizes_of_catalogs(catalogs)
        result = sfd_statistics(sizes.diameters, sizes.area_m2)
        return {**write_sfd(result, out_dir, sizes.left_out()), "unreadable_catalogs": sizes.unreadable,
                "invalid_diameters": sizes.invalid_diameters, "absurd_diameters": sizes.absurd_diameters}
    except RockdetError as exc:
        return {"status": "error", "message": str(exc)}
