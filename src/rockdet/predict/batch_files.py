"""A batch's rocks, streamed: each finished image's catalog is read back from disk, one at a time
in input order, and its rows go straight into rocks.csv, the COCO pre-annotations and the
report's data file. What stays in memory is a few numbers a rock (pixel sizes for the histogram,
metric sizes for the SFD, site coordinates for the map), never the rows themselves: holding every
rock's row cost 2.7 KiB a rock at 100,000 images (issue 21)."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
from array import array
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from rockdet.atomic import atomic_path
from rockdet.catalog.coco import ROCK_CATEGORY, coco_annotation
from rockdet.catalog.files import read_catalog_json
from rockdet.errors import RockdetError
from rockdet.io.layout import COCO_FILE, ROCKS_FILE, OutputLayout
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
            document = read_catalog_json(path, strict=True)
        except RockdetError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            log.warning("%s: left out of the batch files (%s)", key, reason)
            self.unreadable.append((key, reason))
            self.report.add_unreadable(key, reason)
            return
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
