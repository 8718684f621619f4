"""Write a size-frequency result where people look: sfd.json beside sfd.png.

Kept apart from sfd.py (statistics, no drawing) so imports run one way: this module uses both
the statistics and the plots, and neither of them knows about the other's caller.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rockdet.atomic import write_json_atomic
from rockdet.errors import RockdetError
from rockdet.outputs import SFD_FILES
from rockdet.plots import plot_sfd
from rockdet.sfd import SfdResult, load_sizes, sfd_statistics

SFD_JSON, SFD_PNG = SFD_FILES


def write_sfd(result: SfdResult, out_dir: Path) -> dict:
    """sfd.json and sfd.png in ``out_dir``; returns the JSON's headline numbers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / SFD_JSON, {**asdict(result), "model": "F_k(D) = k exp(-(1.79 + 0.152/k) D)"})
    plot_sfd(result, out_dir / SFD_PNG)
    return {k: v for k, v in asdict(result).items() if k != "cumulative"}


def write_batch_sfd(out_dir: Path) -> dict:
    """The batch's SFD after predict --camera; a batch without ground area reports why."""
    try:
        sizes = load_sizes(out_dir)
    except RockdetError as exc:
        return {"status": "error", "message": str(exc)}
    return {**write_sfd(sfd_statistics(sizes.diameters, sizes.area_m2), out_dir),
            "unreadable_catalogs": sizes.unreadable, "invalid_diameters": sizes.invalid_diameters}
