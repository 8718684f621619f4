"""The files of a whole batch, built in one pass from what the run holds: summary.json, rocks.csv,
the COCO pre-annotations, the SFD, the site map and report.html.

Each finished image hands in a digest of its catalog (its rows and ground area) as it is written;
an image an earlier run finished hands in the catalog that run wrote, read once when the run
planned its work. Nothing written by this run is read back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rockdet.atomic import write_json_atomic
from rockdet.catalog.catalog import Catalog
from rockdet.catalog.coco import write_predictions_coco
from rockdet.catalog.files import write_rows_csv
from rockdet.catalog.rock import catalog_columns
from rockdet.io.inputs import InputImage
from rockdet.io.layout import COCO_FILE, REPORT_FILE, ROCKS_FILE, SITE_MAP_FILE, SUMMARY_FILE, OutputLayout
from rockdet.predict.settings import CAMERA_AUTO


@dataclass(frozen=True)
class CatalogDigest:
    """What the batch files need of one image's catalog."""

    key: str
    width: int
    height: int
    rows: tuple[dict[str, Any], ...]
    ground_area_m2: Any = None

    @classmethod
    def of(cls, key: str, catalog: Catalog) -> CatalogDigest:
        return cls(key, catalog.width, catalog.height, tuple(catalog.rows()), catalog.context.get("ground_area_m2"))

    @classmethod
    def of_document(cls, key: str, document: dict[str, Any]) -> CatalogDigest:
        """From a catalog JSON an earlier run wrote (checked as strictly as resume checks it)."""
        return cls(key, document.get("width"), document.get("height"), tuple(document.get("rocks", [])),
                   document.get("ground_area_m2"))


@dataclass
class Outcome:
    """What happened to one image, for summary.json; a finished one carries its catalog's digest."""

    image: str
    status: str  # done | skipped | failed
    reason: str | None = None
    rocks: int = 0
    notes: list[str] = field(default_factory=list)
    digest: CatalogDigest | None = None


def finish_batch(predictor, layout: OutputLayout, images: list[InputImage], outcomes: list[Outcome],
                 started: float, resume: dict[str, int] | None = None) -> dict[str, Any]:
    """Write the batch files and return the summary written to summary.json. ``resume``: what
    the run did with an earlier run's catalogs (counts of those redone and kept, and why)."""
    from rockdet.report.html import write_report

    settings = predictor.settings
    by_status = {status: [o for o in outcomes if o.status == status] for status in ("done", "skipped", "failed")}
    digests = {o.image: o.digest for o in outcomes if o.digest is not None}
    finished = [digests[image.key] for image in images if image.key in digests]  # in input order
    rows = [{"image": digest.key, **row} for digest in finished for row in digest.rows]
    # Metric columns when a camera sized any image (with camera auto, PDS products only).
    sized = any("size_flag" in row for row in rows) or (predictor.camera.sizer is not None and
                                                         settings.camera != CAMERA_AUTO)
    write_rows_csv(layout.batch_file(ROCKS_FILE), ["image"] + catalog_columns(predictor.info.has_masks, sized), rows)
    if "coco" in settings.formats:
        write_predictions_coco(finished, layout.batch_file(COCO_FILE))
    seconds = time.monotonic() - started
    done = len(by_status["done"])
    summary = {
        "images": len(images), "done": done, "skipped": len(by_status["skipped"]),
        "failed": len(by_status["failed"]),
        "failures": [{"image": o.image, "reason": o.reason} for o in by_status["failed"]],
        "skipped_images": [{"image": o.image, "reason": o.reason} for o in by_status["skipped"]],
        "rocks_this_run": sum(o.rocks for o in by_status["done"]), "rocks_total": len(rows),
        "notes": {o.image: o.notes for o in by_status["done"] if o.notes},
        "seconds": round(seconds, 2), "images_per_second": round(done / seconds, 3) if seconds else None,
        **predictor.context, "formats": list(settings.formats), "versions": versions(),
        "redone_made_otherwise": 0, "redone_unusable_catalog": 0, "kept_by_file_times": 0, "kept_by_hash": 0,
        **(resume or {})}
    if any(row.get("diameter_m") is not None for row in rows):
        from rockdet.report.sfd import write_batch_sfd
        from rockdet.report.site_map import write_site_map

        # By catalog key, as `rockdet sfd OUT` reads a folder: the same bootstrap for the same rocks.
        summary["sfd"] = write_batch_sfd(layout.root, ((d.key, list(d.rows), d.ground_area_m2)
                                                       for d in sorted(finished, key=lambda d: d.key)))
        summary["site_map"] = write_site_map(rows, layout.batch_file(SITE_MAP_FILE))
    summary["report"] = str(layout.batch_file(REPORT_FILE))
    # The summary first: a report that cannot be drawn leaves it, and `rockdet report` can retry.
    write_json_atomic(layout.batch_file(SUMMARY_FILE), summary)
    write_report(layout.root, summary, finished)
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
