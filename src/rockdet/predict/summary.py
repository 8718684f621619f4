"""The files of a whole batch: summary.json, rocks.csv, the COCO pre-annotations, the SFD, the
site map and report.html.

The run holds one small Outcome per image. Its rocks are written once, in its catalog, and the
batch files are built by streaming the finished catalogs back in input order
(predict.batch_files): memory stays flat however many rocks the batch finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rockdet.atomic import write_json_atomic
from rockdet.catalog.rock import catalog_columns
from rockdet.io.input_list import InputList
from rockdet.io.layout import REPORT_FILE, SITE_MAP_FILE, SUMMARY_FILE, OutputLayout
from rockdet.predict.settings import CAMERA_AUTO


@dataclass
class Outcome:
    """What happened to one image, for summary.json."""

    image: str
    status: str  # done | skipped | failed
    reason: str | None = None
    rocks: int = 0
    notes: list[str] = field(default_factory=list)
    #: Its catalog has metric columns (a camera sized it): rocks.csv gets them too.
    sized: bool = False


def finish_batch(predictor, layout: OutputLayout, images: InputList, outcomes: list[Outcome],
                 started: float, resume: dict[str, int] | None = None) -> dict[str, Any]:
    """Write the batch files and return the summary written to summary.json. ``resume``: what
    the run did with an earlier run's catalogs (counts of those redone and kept, and why)."""
    from rockdet.report.html import ReportData

    settings = predictor.settings
    by_status = {status: [o for o in outcomes if o.status == status] for status in ("done", "skipped", "failed")}
    # Metric columns when a camera sized any image (with camera auto, PDS products only).
    sized = any(o.sized for o in outcomes) or (predictor.camera.sizer is not None and settings.camera != CAMERA_AUTO)
    columns = ["image"] + catalog_columns(predictor.info.has_masks, sized)
    report = ReportData(layout.root)
    try:
        summary = _write_batch(predictor, layout, images, outcomes, by_status, started, resume, columns, report)
    except BaseException:
        report.abandon()
        raise
    report.finish(summary)
    return summary


def _write_batch(predictor, layout: OutputLayout, images: InputList, outcomes: list[Outcome],
                 by_status: dict[str, list[Outcome]], started: float, resume: dict[str, int] | None,
                 columns: list[str], report) -> dict[str, Any]:
    """rocks.csv, the COCO file, the SFD, the site map and summary.json; the report's rows."""
    from rockdet.predict.batch_files import BatchStream

    settings = predictor.settings
    finished = {o.image for o in outcomes if o.status != "failed"}
    with BatchStream(layout, columns, "coco" in settings.formats, report) as stream:
        for image in images:  # in input order
            if image.key in finished:
                stream.add(image.key)
    seconds = time.monotonic() - started
    done = len(by_status["done"])
    summary = {
        "images": len(images), "done": done, "skipped": len(by_status["skipped"]),
        "failed": len(by_status["failed"]),
        "failures": [{"image": o.image, "reason": o.reason} for o in by_status["failed"]],
        "skipped_images": [{"image": o.image, "reason": o.reason} for o in by_status["skipped"]],
        "rocks_this_run": sum(o.rocks for o in by_status["done"]), "rocks_total": stream.rocks,
        "notes": {o.image: o.notes for o in by_status["done"] if o.notes},
        "seconds": round(seconds, 2), "images_per_second": round(done / seconds, 3) if seconds else None,
        **predictor.context, "formats": list(settings.formats), "versions": versions(),
        "redone_made_otherwise": 0, "redone_unusable_catalog": 0, "kept_by_file_times": 0, "kept_by_hash": 0,
        **(resume or {})}
    if stream.unreadable:
        summary["catalogs_left_out"] = [{"image": key, "reason": reason} for key, reason in stream.unreadable]
    if stream.has_metres:
        from rockdet.report.sfd import write_batch_sfd
        from rockdet.report.site_map import write_site_map

        # By catalog key, as `rockdet sfd OUT` reads a folder: the same bootstrap for the same rocks.
        summary["sfd"] = write_batch_sfd(layout.root, ((key, [{"diameter_m": d} for d in metres], area)
                                                       for key, metres, area in sorted(stream.metric, key=lambda m: m[0])))
        summary["site_map"] = write_site_map(stream.site, layout.batch_file(SITE_MAP_FILE))
    summary["report"] = str(layout.batch_file(REPORT_FILE))
    # The summary first: a report that cannot be drawn leaves it, and `rockdet report` can retry.
    write_json_atomic(layout.batch_file(SUMMARY_FILE), summary)
    return summary


def versions() -> dict[str, str]:
    """The software that made a batch (summary.json; a folder holding it was written by rockdet)."""
    import platform

    import numpy as np
    import pytorch_lightning as pl
    import torch
    import torchvision

    from rockdet import __version__

    return {"rockdet": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorch_lightning": pl.__version__, "python": platform.python_version(), "numpy": np.__version__}
