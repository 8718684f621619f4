"""``eval.score_threshold: auto``: the operating point chosen on the validation split after
training, stored in the checkpoint (and so in its exports), where predict reads it.

- Dense labels (every visible rock labelled, e.g. the Mars Mastcam masks): the threshold of the
  best F1 at IoU ``eval.iou_threshold``, pooled over the dense validation sources; precision
  means something there.
- Sparse labels only (e.g. the Chang'e set): precision against them understates a good
  detector, so the threshold is the highest one that still finds ``eval.auto_recall_target`` of
  the labelled rocks.

Greedy matching by score (COCO's) never changes a higher-scoring detection's match when lower
ones are cut, so one matching at threshold 0 gives precision and recall at every threshold.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rockdet.catalog_quality import match_boxes
from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.errors import CheckpointError
from rockdet.inference import detect_as_predict_does, training_image_size

log = logging.getLogger(__name__)


@dataclass
class SourceScores:
    """Every detection of one validation source, judged at threshold 0."""

    name: str
    dense: bool
    scores: np.ndarray  # [D]
    right: np.ndarray  # [D]: 1 right, 0 wrong, -1 on a crowd region
    rocks: int


@dataclass
class ThresholdChoice:
    rule: str  # "best_f1 (dense labels)" | "recall_target (sparse labels)" | "fallback"
    score_threshold: float
    precision: float
    recall: float
    f1: float
    sources: list[str]
    note: str = ""


def judge_scores(name: str, dense: bool, scores: list[np.ndarray], verdicts: list[np.ndarray], rocks: int) -> SourceScores:
    return SourceScores(name, dense, np.concatenate(scores) if scores else np.zeros(0),
                        np.concatenate(verdicts) if verdicts else np.zeros(0, dtype=np.int64), rocks)


def curve(sources: list[SourceScores]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, precision, recall) of the pooled sources, one point per score."""
    scores = np.concatenate([s.scores for s in sources]) if sources else np.zeros(0)
    right = np.concatenate([s.right for s in sources]) if sources else np.zeros(0, dtype=np.int64)
    rocks = sum(s.rocks for s in sources)
    order = np.argsort(-scores, kind="stable")
    scores, right = scores[order], right[order]
    true_positives = np.cumsum(right == 1)
    judged = np.cumsum(right != -1)
    # The point of a threshold t keeps every detection scoring >= t: the last of equal scores.
    last_of_equal = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    precision = true_positives / np.maximum(judged, 1)
    recall = true_positives / max(rocks, 1)
    return scores[last_of_equal], precision[last_of_equal], recall[last_of_equal]


def choose_threshold(sources: list[SourceScores], recall_target: float, fallback: float) -> ThresholdChoice:
    dense = [s for s in sources if s.dense]
    used = dense or sources
    names = [s.name for s in used]
    thresholds, precision, recall = curve(used)
    if not len(thresholds):
        return ThresholdChoice("fallback", fallback, 0.0, 0.0, 0.0, names, "no detection on the validation split")
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    if dense:
        best = int(np.argmax(f1))  # thresholds descend, so ties keep the higher one
        return ThresholdChoice("best_f1 (dense labels)", float(thresholds[best]), float(precision[best]),
                               float(recall[best]), float(f1[best]), names)
    reached = np.nonzero(recall >= recall_target)[0]
    note = ""
    if len(reached):
        best = int(reached[0])
    else:
        best = int(np.argmax(recall))
        note = f"recall target {recall_target} not reached; the threshold of the highest recall"
    return ThresholdChoice("recall_target (sparse labels)", float(thresholds[best]), float(precision[best]),
                           float(recall[best]), float(f1[best]), names, note)


@torch.inference_mode()
def score_source(model: torch.nn.Module, name: str, dense: bool, dataset: RockDataset, input_size: int,
                 max_detections: int, iou: float, batch_size: int = 4) -> SourceScores:
    """Detect over one validation source as predict does and judge every detection."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_detection)
    scores, verdicts, rocks, records = [], [], 0, iter(dataset.records)
    for images, targets in loader:
        for pred, target, record in zip(detect_as_predict_does(model, images, input_size, max_detections),
                                        targets, records):
            verdict, _ = match_boxes(pred["boxes"].numpy(), target["boxes"].numpy(), record.crowd_boxes, iou)
            scores.append(pred["scores"].numpy())
            verdicts.append(verdict)
            rocks += len(target["boxes"])
    return judge_scores(name, dense, scores, verdicts, rocks)


def choose_for_checkpoint(path: Path, validation: list[tuple[str, bool, RockDataset]], recall_target: float,
                          iou: float, fallback: float) -> ThresholdChoice:
    """Choose the operating point of one checkpoint file and store it in the file."""
    from rockdet.models import load_checkpoint_model

    model, hparams = load_checkpoint_model(path)
    sources = [score_source(model, name, dense, dataset, training_image_size(hparams),
                            int(hparams["model"]["detections_per_image"]), iou)
               for name, dense, dataset in validation]
    choice = choose_threshold(sources, recall_target, fallback)
    store_choice(path, choice)
    return choice


def store_choice(path: Path, choice: ThresholdChoice) -> None:
    """Write the chosen threshold into a checkpoint's saved settings, atomically."""
    from rockdet.atomic import atomic_path

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a damaged file
        raise CheckpointError(f"{path}: cannot store the chosen threshold ({exc})") from None
    evaluation = checkpoint.setdefault("hyper_parameters", {}).setdefault("evaluation", {})
    evaluation["score_threshold"] = choice.score_threshold
    evaluation["threshold_choice"] = asdict(choice)
    with atomic_path(path) as temp:
        torch.save(checkpoint, temp)
    log.info("%s: operating point %.4f by %s (precision %.3f, recall %.3f on %s)", path.name,
             choice.score_threshold, choice.rule, choice.precision, choice.recall, ", ".join(choice.sources))
