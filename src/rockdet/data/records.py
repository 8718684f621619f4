"""The one annotation record every reader produces, and the box checks they share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

ROCK_LABEL = 1  # label 0 is background in torchvision detectors
#: Lander and rover hardware (e.g. the Chang'e ``artifact`` labels), learnt as a class of its
#: own so the detector has something better to call it than a rock; never in a rock catalog.
HARDWARE_LABEL = 2
#: Label carried through augmentation by ignore regions (never reaches the model as a class).
IGNORE_LABEL = -1
#: Target key of the ignore regions, float32 [M, 4] xyxy, beside "boxes" and "labels".
IGNORE_BOXES_KEY = "ignore_boxes"
#: Target key of COCO crowd regions in evaluation targets, float32 [K, 4] xyxy.
CROWD_BOXES_KEY = "crowd_boxes"


def no_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.float32)


@dataclass
class AnnotatedImage:
    """One image and its rocks: boxes are float32 [N, 4] xyxy pixels."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    #: Decodes uint8 [N, H, W] instance masks aligned with ``boxes``; None when there are none.
    mask_loader: Callable[[], np.ndarray] | None = None
    #: Regions (float32 [M, 4] xyxy) where unlabelled rocks are likely: never taught as background.
    ignore_boxes: np.ndarray = field(default_factory=no_boxes)
    #: COCO ``iscrowd`` rock regions (float32 [K, 4] xyxy): one box over many rocks. Training
    #: ignores them (they are among ``ignore_boxes`` too); evaluation neither rewards nor
    #: punishes a detection on one, as COCO does.
    crowd_boxes: np.ndarray = field(default_factory=no_boxes)
    #: int64 [N] class of each box (ROCK_LABEL or HARDWARE_LABEL); None: every box is a rock.
    box_labels: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        if self.box_labels is not None:
            return np.asarray(self.box_labels, dtype=np.int64)
        return np.full(len(self.boxes), ROCK_LABEL, dtype=np.int64)

    @property
    def rock_count(self) -> int:
        return int((self.labels == ROCK_LABEL).sum())

    def instance_masks(self) -> np.ndarray | None:
        return None if self.mask_loader is None else self.mask_loader()


@dataclass
class LoadReport:
    """What loading found and fixed, for data-report and the logs."""

    source: Path
    images: int = 0
    rocks: int = 0
    empty_images: int = 0
    clipped_boxes: int = 0
    dropped: Counter = field(default_factory=Counter)
    ignored_categories: Counter = field(default_factory=Counter)
    #: Boxes of data.ignore_classes kept as ignore regions.
    ignore_regions: int = 0
    #: Boxes of data.hardware_classes (lander and rover hardware), learnt as their own class.
    hardware: int = 0
    problems: list[str] = field(default_factory=list)
    #: Image files listed more than once (one line each, naming the file): training refuses them.
    duplicate_images: list[str] = field(default_factory=list)

    def add(self, record: AnnotatedImage) -> None:
        self.images += 1
        self.rocks += record.rock_count
        self.hardware += len(record.boxes) - record.rock_count
        self.empty_images += int(record.rock_count == 0)
        self.ignore_regions += len(record.ignore_boxes)


@dataclass
class AnnotationSet:
    records: list[AnnotatedImage]
    report: LoadReport


def sanitize_boxes(boxes: np.ndarray, width: int, height: int, report: LoadReport,
                   where: str) -> np.ndarray:
    """Clip xyxy boxes to the image; return the indices of the boxes kept.

    Boxes entirely outside the image or with zero area after clipping are dropped and counted.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if not len(boxes):
        return np.zeros(0, dtype=np.int64)
    finite = np.isfinite(boxes).all(axis=1)
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, width)
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, height)
    outside = ~finite | (boxes[:, 0] >= width) | (boxes[:, 1] >= height) | \
        (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    zero_area = ~outside & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    changed = finite & ~outside & ~zero_area & (np.abs(clipped - boxes) > 1e-3).any(axis=1)
    report.clipped_boxes += int(changed.sum())
    for reason, mask in (("outside image", outside), ("zero area", zero_area)):
        if mask.any():
            report.dropped[reason] += int(mask.sum())
            report.problems.append(f"{where}: dropped {int(mask.sum())} box(es), {reason}")
    boxes[:] = clipped
    return np.flatnonzero(~outside & ~zero_area)


def clip_regions(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Ignore regions clipped to the image; empty or non-finite ones are dropped."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    boxes = boxes[np.isfinite(boxes).all(axis=1)]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes (pixel edges) around each instance mask [N, H, W]."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def pixel_corners(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes as whole-pixel [x0, y0, x1, y1) ranges inside the extent, at least one pixel each:
    the pixels whose centres lie inside the box, as a mask is rasterised.

    Not every pixel the box touches: a sliver of a bright pixel column at the box's edge would
    otherwise decide a box lying 90 % on black (a Yutu PCAM frame's border, stop 32: 89.9 % of the
    pixels it touched were dark, and 90.1 % of those inside it by the catalog checker's count)."""
    x0 = np.clip(np.floor(boxes[:, 0] + 0.5), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(boxes[:, 1] + 0.5), 0, height - 1).astype(np.int64)
    x1 = np.maximum(np.clip(np.floor(boxes[:, 2] + 0.5), 0, width).astype(np.int64), x0 + 1)
    y1 = np.maximum(np.clip(np.floor(boxes[:, 3] + 0.5), 0, height).astype(np.int64), y0 + 1)
    return np.stack([x0, y0, x1, y1], axis=1)
