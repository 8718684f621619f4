"""``eval.score_threshold: auto``: the operating point chosen on the validation split after
training, stored in the checkpoint (and so in its exports), where predict reads it.

- Dense labels (every visible rock labelled, e.g. the Mars Mastcam masks): the threshold of the
  best F1, pooled over the dense validation sources. With dense rock masks beside a source (a
  ``masks/`` folder, as `rockdet evaluate` finds them) F1 is that of mask precision and recall,
  the figures a catalog is judged by when masks hold shadows and merged rocks; without them it
  is box F1 at IoU ``eval.iou_threshold``.
- Sparse labels only (e.g. the Chang'e set): precision against them understates a good
  detector, so the threshold is the highest one that still finds ``eval.auto_recall_target`` of
  the labelled rocks.

Each candidate threshold is judged on the catalogs predict would write at it: the tiles of every
validation image are detected once and merged again at each candidate (a union across a tile
border only takes boxes above the threshold, so a catalog at 0.3 is not the one at 0 cut at 0.3).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.data.dense_masks import RockMasks
from rockdet.evaluation.quality import RockMask, match_boxes
from rockdet.models.info import ThresholdChoice
from rockdet.predict.detect import EVALUATION_SETTINGS, RawTiles, detect_raw_tensors

log = logging.getLogger(__name__)

#: Candidate operating points: every 0.01 from 0.01 to 0.99 (finer steps move a catalog by a rock
#: or two, well inside what a validation split can tell apart).
CANDIDATE_THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(1, 100))
MASK_MEASURE, BOX_MEASURE = "mask precision/recall", "box precision/recall"


@dataclass
class ValidationImage:
    """One validation image: its tile outputs and what to judge them against."""

    raw: RawTiles
    truth: np.ndarray  # [N, 4] labelled rocks
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # COCO crowd regions
    mask: RockMask | None = None  # dense rock mask

    def counts(self, threshold: float, iou: float, by_mask: bool) -> tuple[int, int, int, int]:
        """(right detections, judged detections, rocks found, rocks) of the catalog at ``threshold``."""
        rocks = self.raw.rocks(EVALUATION_SETTINGS, threshold)
        boxes = np.array([[r.x_min, r.y_min, r.x_max, r.y_max] for r in rocks], dtype=np.float64).reshape(-1, 4)
        if by_mask:
            on_rock, found, components = self.mask.verdicts(boxes)
            return int(on_rock.sum()), len(boxes), found, components
        verdict, found = match_boxes(boxes, self.truth, self.crowd, iou)
        return int((verdict == 1).sum()), int((verdict != -1).sum()), int(found.sum()), len(self.truth)


@dataclass
class ValidationSource:
    name: str
    dense: bool
    images: list[ValidationImage]

    @property
    def has_masks(self) -> bool:
        return bool(self.images) and all(image.mask is not None for image in self.images)


@dataclass
class OperatingCurve:
    """Pooled precision and recall of the catalogs at each candidate threshold (ascending)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    measure: str
    sources: list[str]


def operating_curve(sources: list[ValidationSource], iou: float,
                    candidates: tuple[float, ...] = CANDIDATE_THRESHOLDS) -> OperatingCurve:
    """Precision and recall pooled over ``sources``, by masks when every source has them."""
    by_mask = bool(sources) and all(source.has_masks for source in sources)
    totals = np.zeros((len(candidates), 4), dtype=np.int64)
    for source in sources:
        for image in source.images:
            totals += np.array([image.counts(t, iou, by_mask) for t in candidates], dtype=np.int64)
    right, judged, found, rocks = totals.T
    return OperatingCurve(np.asarray(candidates, dtype=np.float64), right / np.maximum(judged, 1),
                          found / np.maximum(rocks, 1), MASK_MEASURE if by_mask else BOX_MEASURE,
                          [source.name for source in sources])


def choose_threshold(sources: list[ValidationSource], recall_target: float, fallback: float, iou: float = 0.5,
                     candidates: tuple[float, ...] = CANDIDATE_THRESHOLDS) -> ThresholdChoice:
    """The operating point: best F1 on the dense sources, else the sparse recall target."""
    dense = [s for s in sources if s.dense]
    used = dense or sources
    curve = operating_curve(used, iou, candidates)
    precision, recall = curve.precision, curve.recall
    if not len(curve.thresholds) or not recall.any():
        return ThresholdChoice("fallback", fallback, 0.0, 0.0, 0.0, curve.sources,
                               "no rock found on the validation split at any threshold", curve.measure)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    if dense:
        best = int(np.flatnonzero(f1 == f1.max())[-1])  # ties keep the higher threshold
        return ThresholdChoice("best_f1 (dense labels)", float(curve.thresholds[best]), float(precision[best]),
                               float(recall[best]), float(f1[best]), curve.sources, measure=curve.measure)
    reached = np.flatnonzero(recall >= recall_target)
    note = ""
    if len(reached):
        best = int(reached[-1])
    else:
        best = int(np.flatnonzero(recall == recall.max())[-1])
        note = f"recall target {recall_target} not reached; the threshold of the highest recall"
    return ThresholdChoice("recall_target (sparse labels)", float(curve.thresholds[best]), float(precision[best]),
                           float(recall[best]), float(f1[best]), curve.sources, note, curve.measure)


@torch.inference_mode()
def detect_source(model: torch.nn.Module, name: str, dense: bool, dataset: RockDataset, input_size: int,
                  masks: RockMasks | None = None, batch_size: int = 4) -> ValidationSource:
    """Detect over one validation source as predict does (tile outputs kept, not merged)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_detection)
    images, records = [], iter(dataset.records)
    for batch, targets in loader:
        for raw, target, record in zip(detect_raw_tensors(model, batch, input_size), targets, records):
            mask = masks(record.path, record.width, record.height) if masks is not None else None
            images.append(ValidationImage(raw, target["boxes"].numpy(), np.asarray(record.crowd_boxes, float),
                                          None if mask is None else RockMask(mask)))
    return ValidationSource(name, dense, images)


def choose_for_checkpoint(path: Path, validation: list[tuple[str, bool, RockDataset]], recall_target: float,
                          iou: float, fallback: float, masks: list[RockMasks | None] | None = None) -> ThresholdChoice:
    """Choose the operating point of one checkpoint (or model file) and store it in the file.
    ``masks``: per validation source, its dense rock masks (or None)."""
    from rockdet.models import load_model
    from rockdet.models.files import store_model_info

    model, info = load_model(path)
    masks = masks or [None] * len(validation)
    sources = [detect_source(model, name, dense, dataset, info.input_size, source_masks)
               for (name, dense, dataset), source_masks in zip(validation, masks)]
    choice = choose_threshold(sources, recall_target, fallback, iou)
    store_model_info(Path(path), info.with_threshold(choice))
    log.info("%s: operating point %.2f by %s of the %s (precision %.3f, recall %.3f on %s)", Path(path).name,
             choice.score_threshold, choice.rule, choice.measure, choice.precision, choice.recall,
             ", ".join(choice.sources))
    return choice
