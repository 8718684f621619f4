"""A batch's rocks, streamed: each finished image's catalog is read back from disk, one at a time
in input order, and its rows go straight into rocks.csv, the COCO pre-annotations and the
report's data file. What stays in memory is a few numbers a rock (pixel sizes for the histogram,
metric sizes for the SFD, site coordinates for the map), never the rows themselves: holding every
rock's row cost 2.7 KiB a rock at 100,000 images (issue 21).

The batch files are recorded with the stamps of the catalogs they were built from (and their own):
a resume with nothing to do, whose every catalog the journal vouches for unchanged, keeps them as
they are instead of reading every catalog again, and rewrites only summary.json and report.html
(reading 100,000 catalogs took most of such a resume's minute)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from array import array
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from rockdet.atomic import atomic_path, write_json_atomic
from rockdet.catalog.coco import ROCK_CATEGORY, coco_annotation
from rockdet.catalog.files import read_catalog_json_stamped
from rockdet.errors import RockdetError
from rockdet.io.layout import BATCH_RECORD_FILE, COCO_FILE, REPORT_FILES, ROCKS_FILE, SFD_FILES, SITE_MAP_FILE, OutputLayout
from rockdet.predict.journal import CatalogStamps, file_stamp
from rockdet.report.html import ReportData

log = logging.getLogger(__name__)


@dataclass
class SitePoints:
    """Rocks with site coordinates, as columns (the site map's input)."""

    images: list[str] = field(default_factory=list)
    north_m: array = field(default_factory=lambda: array("d"))
    east_m: array = field(default_factory=lambda: array("d"))
    diameter_m: array = field(default_factory=lambda: array("d"))  # NaN: no metric size


class BatchStream:
    """Opened over a batch's output folder; ``add`` copies one image's catalog into the batch
    files; leaving the block puts rocks.csv and the COCO file in place (only if it succeeds)."""

    def __init__(self, layout: OutputLayout, columns: list[str], coco: bool, report: ReportData):
        self.layout, self.columns, self.with_coco, self.report = layout, columns, coco, report
        self.rocks = 0
        #: (key, metric diameters, ground area) of images with either: the SFD's input.
        self.metric: list[tuple[str, array, Any]] = []
        self.has_metres = False
        self.site = SitePoints()
        #: Catalogs that could not be read back: (key, why).
        self.unreadable: list[tuple[str, str]] = []
        #: The catalogs read, as the batch record names them.
        self.catalogs = CatalogStamps()
        self._stack = ExitStack()

    def __enter__(self) -> BatchStream:
        stack = self._stack.__enter__()
        temp = stack.enter_context(atomic_path(self.layout.batch_file(ROCKS_FILE)))
        self._csv = csv.DictWriter(stack.enter_context(temp.open("w", newline="")), fieldnames=self.columns,
                                   extrasaction="ignore")
        self._csv.writeheader()
        if self.with_coco:
            temp = stack.enter_context(atomic_path(self.layout.batch_file(COCO_FILE)))
            self._coco = stack.enter_context(temp.open("w", encoding="utf-8"))
            self._coco.write('{"info": {"description": "rockdet predictions (pre-annotations)"},\n"images": [')
            # Annotations follow the images in a COCO file: they wait in a spill file until then.
            self._annotations = stack.enter_context(tempfile.TemporaryFile("w+", dir=self.layout.root,
                                                                           encoding="utf-8"))
            self._images = self._annotation_count = 0
        return self

    def add(self, key: str) -> None:
        path = self.layout.catalog_file(key, "json")
        try:
            document, stamp = read_catalog_json_stamped(path, strict=True)
        except RockdetError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            log.warning("%s: left out of the batch files (%s)", key, reason)
            self.unreadable.append((key, reason))
            self.report.add_unreadable(key, reason)
            return
        self.catalogs.add(key, stamp)
        rows = document.get("rocks", [])
        self.rocks += len(rows)
        self._csv.writerows({"image": key, **{k: ("" if v is None else v) for k, v in row.items()}}
                            for row in rows)
        if self.with_coco:
            self._add_coco(key, document, rows)
        self.report.add(key, rows)
        metres = array("d", (row["diameter_m"] for row in rows if row.get("diameter_m") is not None))
        self.has_metres = self.has_metres or len(metres) > 0
        if len(metres) or document.get("ground_area_m2") is not None:
            self.metric.append((key, metres, document.get("ground_area_m2")))
        for row in rows:
            if row.get("site_x_m") is not None and row.get("site_y_m") is not None:
                self.site.images.append(key)
                self.site.north_m.append(row["site_x_m"])
                self.site.east_m.append(row["site_y_m"])
                diameter = row.get("diameter_m")
                self.site.diameter_m.append(float("nan") if diameter is None else diameter)

    def _add_coco(self, key: str, document: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        self._images += 1
        image = {"id": self._images, "file_name": key, "width": document.get("width"),
                 "height": document.get("height")}
        self._coco.write(("," if self._images > 1 else "") + "\n" + json.dumps(image))
        for row in rows:
            self._annotation_count += 1
            self._annotations.write(("," if self._annotation_count > 1 else "") + "\n"
                                    + json.dumps(coco_annotation(self._annotation_count, self._images, row)))

    def __exit__(self, *exc_info) -> bool:
        if exc_info[0] is None and self.with_coco:
            self._coco.write('\n],\n"annotations": [')
            self._annotations.seek(0)
            shutil.copyfileobj(self._annotations, self._coco)
            self._coco.write(f'\n],\n"categories": [{json.dumps(ROCK_CATEGORY)}]}}\n')
        return self._stack.__exit__(*exc_info)


#: The batch files a record vouches for; summary.json and report.html are rewritten every run.
KEPT_FILES = (ROCKS_FILE, COCO_FILE, *SFD_FILES, SITE_MAP_FILE, *REPORT_FILES[1:])
#: What the batch files hold, and how: raise it when their content changes (so does rockdet's version).
BATCH_FORMAT = 1
#: A record is a few hundred bytes: a larger file is not one rockdet wrote.
RECORD_MAX_BYTES = 1 << 20
#: What summary.json takes from a kept record (the rest is this run's).
RECORDED_SUMMARY = ("rocks_total", "sfd", "site_map")


def batch_fingerprint(catalogs: str, columns: list[str], coco: bool) -> str:
    """What the batch files hold: these catalogs (CatalogStamps' digest), these columns, a COCO file
    or not, written by this rockdet (another version's files are built again)."""
    import rockdet

    made = [catalogs, columns, coco, BATCH_FORMAT, rockdet.__version__]
    return hashlib.blake2b(json.dumps(made).encode(), digest_size=16).hexdigest()


def record_batch_files(layout: OutputLayout, fingerprint: str, summary: dict[str, Any], report_rows: int,
                       histogram: bool) -> None:
    """Written last, once every batch file is in place: what they were built from, their stamps, and
    what summary.json and report.html take from them. Best effort: without it, the next resume
    builds the batch files again."""
    files = {name: stamp for name in KEPT_FILES if (stamp := file_stamp(layout.batch_file(name))) is not None}
    try:
        write_json_atomic(layout.batch_file(BATCH_RECORD_FILE), {
            "fingerprint": fingerprint, "files": files, "report_rows": report_rows, "histogram": histogram,
            "summary": {key: summary[key] for key in RECORDED_SUMMARY if key in summary}})
    except OSError as exc:
        log.warning("%s: not written (%s); the next resume builds the batch files again",
                    layout.batch_file(BATCH_RECORD_FILE), exc.strerror or exc)


def forget_batch_files(layout: OutputLayout) -> None:
    """Before the batch files are rebuilt: a run stopped halfway leaves no record of them."""
    layout.batch_file(BATCH_RECORD_FILE).unlink(missing_ok=True)


def kept_batch_files(layout: OutputLayout, fingerprint: str) -> dict[str, Any] | None:
    """The record of batch files built from exactly these catalogs, each file still as written then;
    None when they must be built again (no record, another one's, or one rockdet did not write)."""
    record = _read_record(layout.batch_file(BATCH_RECORD_FILE))
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint \
            or not isinstance(record.get("files"), dict) or not set(record["files"]) <= set(KEPT_FILES) \
            or not {ROCKS_FILE, REPORT_FILES[1]} <= set(record["files"]) \
            or not _count(record.get("report_rows")) or not isinstance(record.get("histogram"), bool):
        return None
    built = record.get("summary")
    if not isinstance(built, dict) or not set(built) <= set(RECORDED_SUMMARY) or not _count(built.get("rocks_total")) \
            or any(not isinstance(built[key], dict) for key in ("sfd", "site_map") if key in built):
        return None
    if any(file_stamp(layout.batch_file(name)) != stamp for name, stamp in record["files"].items()):
        return None
    return record


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _read_record(path) -> Any:
    """The record's JSON, or None: never through a link, never blocking on a pipe, never unbounded."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_size > RECORD_MAX_BYTES:
            return None
        data = handle.read(RECORD_MAX_BYTES + 1)
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
