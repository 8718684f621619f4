"""The files of a whole batch: summary.json, rocks.csv, the COCO pre-annotations, the SFD, the
site map and report.html.

The run holds one small Outcome per image. Its rocks are written once, in its catalog, and the
batch files are built by streaming the finished catalogs back in input order
(predict.batch_files): memory stays flat however many rocks the batch finds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from rockdet.atomic import write_json_atomic
from rockdet.catalog.rock import catalog_columns
from rockdet.io.input_list import InputList
from rockdet.io.layout import REPORT_FILE, SITE_MAP_FILE, SUMMARY_FILE, OutputLayout
from rockdet.predict.settings import CAMERA_AUTO

log = logging.getLogger(__name__)


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
                 started: float, resume: dict[str, int] | None = None, unchanged_catalogs: str | None = None
                 ) -> dict[str, Any]:
    """Write the batch files and return the summary written to summary.json. ``resume``: what
    the run did with an earlier run's catalogs (counts of those redone and kept, and why).
    ``unchanged_catalogs``: every image was kept, each catalog as the journal vouches for it
    (resume.BatchPlan.unchanged_catalogs); batch files built from those very catalogs are kept."""
    from rockdet.predict.batch_files import batch_fingerprint, forget_batch_files, kept_batch_files
    from rockdet.report.html import ReportData, write_report_page

    settings = predictor.settings
    by_status = {status: [o for o in outcomes if o.status == status] for status in ("done", "skipped", "failed")}
    # Metric columns when a camera sized any image (with camera auto, PDS products only).
    sized = any(o.sized for o in outcomes) or (predictor.camera.sizer is not None and settings.camera != CAMERA_AUTO)
    columns = ["image"] + catalog_columns(predictor.info.has_masks, sized)
    coco = "coco" in settings.formats
    if unchanged_catalogs is not None and len(by_status["skipped"]) == len(outcomes):
        kept = kept_batch_files(layout, batch_fingerprint(unchanged_catalogs, columns, coco))
        if kept is not None:
            log.info("batch files kept as they are: built from these very catalogs")
            summary = _summary(predictor, layout, images, by_status, started, resume, kept["summary"])
            write_json_atomic(layout.batch_file(SUMMARY_FILE), summary)
            write_report_page(layout.root, summary, kept["report_rows"], kept["histogram"] is True)
            return summary
    forget_batch_files(layout)
    report = ReportData(layout.root)
    try:
        summary, catalogs = _write_batch(predictor, layout, images, outcomes, by_status, started, resume, columns,
                                         report)
    except BaseException:
        report.abandon()
        raise
    report.finish(summary)
    if catalogs is not None:
        from rockdet.predict.batch_files import record_batch_files

        record_batch_files(layout, batch_fingerprint(catalogs, columns, coco), summary, report.rows, report.histogram)
    return summary


def _write_batch(predictor, layout: OutputLayout, images: InputList, outcomes: list[Outcome],
                 by_status: dict[str, list[Outcome]], started: float, resume: dict[str, int] | None,
                 columns: list[str], report) -> tuple[dict[str, Any], str | None]:
    """rocks.csv, the COCO file, the SFD, the site map and summary.json; the report's rows. Also
    the digest of the catalogs read (None when one could not be: the files are not recorded)."""
    from rockdet.predict.batch_files import BatchStream

    settings = predictor.settings
    finished = {o.image for o in outcomes if o.status != "failed"}
    with BatchStream(layout, columns, "coco" in settings.formats, report) as stream:
        for image in images:  # in input order
            if image.key in finished:
                stream.add(image.key)
    built = {"rocks_total": stream.rocks}
    if stream.unreadable:
        built["catalogs_left_out"] = [{"image": key, "reason": reason} for key, reason in stream.unreadable]
    if stream.has_metres:
        from rockdet.report.sfd import write_batch_sfd
        from rockdet.report.site_map import write_site_map

        # By catalog key, as `rockdet sfd OUT` reads a folder: the same bootstrap for the same rocks.
        built["sfd"] = write_batch_sfd(layout.root, ((key, [{"diameter_m": d} for d in metres], area)
                                                     for key, metres, area in sorted(stream.metric, key=lambda m: m[0])))
        built["site_map"] = write_site_map(stream.site, layout.batch_file(SITE_MAP_FILE))
    summary = _summary(predictor, layout, images, by_status, started, resume, built)
    # The summary first: a report that cannot be drawn leaves it, and `rockdet report` can retry.
    write_json_atomic(layout.batch_file(SUMMARY_FILE), summary)
    return summary, None if stream.unreadable else stream.catalogs.hexdigest()


def _summary(predictor, layout: OutputLayout, images: InputList, by_status: dict[str, list[Outcome]], started: float,
             resume: dict[str, int] | None, built: dict[str, Any]) -> dict[str, Any]:
    """summary.json: this run's counts and settings, and ``built``, what the batch files hold
    (rocks_total; the SFD, site map and catalogs left out when there are any)."""
    seconds = time.monotonic() - started
    done = len(by_status["done"])
    summary = {
        "images": len(images), "done": done, "skipped": len(by_status["skipped"]),
        "failed": len(by_status["failed"]),
        "failures": [{"image": o.image, "reason": o.reason} for o in by_status["failed"]],
        "skipped_images": [{"image": o.image, "reason": o.reason} for o in by_status["skipped"]],
        "rocks_this_run": sum(o.rocks for o in by_status["done"]), "rocks_total": built["rocks_total"],
        "notes": {o.image: o.notes for o in by_status["done"] if o.notes},
        "seconds": round(seconds, 2), "images_per_second": round(done / seconds, 3) if seconds else None,
        **predictor.context, "formats": list(predictor.settings.formats), "versions": versions(),
        "redone_made_otherwise": 0, "redone_unusable_catalog": 0, "kept_by_file_times": 0, "kept_by_hash": 0,
        **(resume or {})}
    summary.update((key, value) for key, value in built.items() if key != "rocks_total")
    summary["report"] = str(layout.batch_file(REPORT_FILE))
    return summary


def versions() -> dict[str, str]:
    """The software that made a batch (summary.json; a folder holding it was written by rockdet)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np
    import torch
    import torchvision

    from rockdet import __version__

    try:  # its metadata, not the package: importing Lightning takes seconds a no-op resume need not spend
        lightning = version("pytorch-lightning")
    except PackageNotFoundError:
        lightning = "unknown"
    return {"rockdet": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorch_lightning": lightning, "python": platform.python_version(), "numpy": np.__version__}
