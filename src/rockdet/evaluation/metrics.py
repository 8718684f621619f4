"""Detection metrics shared by validation during training and `rockdet evaluate`: COCO mAP and recall
(crowd regions honoured) and precision and recall at the operating point."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from rockdet.data.records import CROWD_BOXES_KEY, ROCK_LABEL
from rockdet.evaluation.quality import match_boxes

#: The COCO summary numbers we report, under torchmetrics' names.
_MAP_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
#: COCO's default cap on detections scored per image; rockdet scores up to the model's own cap.
COCO_MAX_DETECTIONS = 100


@dataclass
class EvalResult:
    scalars: dict[str, float]
    #: Precision at COCO's 101 recall points, IoU 0.5, all sizes (for the PR curve).
    pr_recall: list[float]
    pr_precision: list[float]
    #: Catalog quality at the operating point: totals, by size, by image (evaluation.quality.summarise).
    quality: dict = field(default_factory=dict)


class OperatingPoint(Metric):
    """Precision and recall at one score threshold, greedy IoU matching as in COCO."""

    full_state_update = False

    def __init__(self, score_threshold: float = 0.5, iou_threshold: float = 0.5):
        super().__init__()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        for name in ("true_positives", "detections", "ground_truth"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        for pred, target in zip(preds, targets):
            keep = pred["scores"] >= self.score_threshold
            boxes = pred["boxes"][keep][pred["scores"][keep].argsort(descending=True)]
            crowd = target.get(CROWD_BOXES_KEY, torch.zeros((0, 4)))
            verdict, _ = match_boxes(boxes.cpu().numpy(), target["boxes"].cpu().numpy(), crowd.cpu().numpy(),
                                     self.iou_threshold)
            # A detection on a crowd region is neither right nor wrong (COCO's rule).
            self.detections += int((verdict != -1).sum())
            self.ground_truth += len(target["boxes"])
            self.true_positives += int((verdict == 1).sum())

    def compute(self) -> dict[str, torch.Tensor]:
        tp = self.true_positives.float()
        precision = tp / self.detections.clamp(min=1)
        recall = tp / self.ground_truth.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {"precision_at_score": precision, "recall_at_score": recall, "f1_at_score": f1}


def coco_target(target: dict) -> dict:
    """A target for COCO's evaluation: the rocks, plus crowd regions flagged ``iscrowd``, which
    COCO neither rewards nor punishes a detection for."""
    crowd = target.get(CROWD_BOXES_KEY)
    boxes, labels = target["boxes"], target["labels"]
    if crowd is None or not len(crowd):
        return {"boxes": boxes, "labels": labels, "iscrowd": torch.zeros(len(boxes), dtype=torch.int64)}
    return {"boxes": torch.cat([boxes, crowd.to(boxes)]),
            "labels": torch.cat([labels, torch.full((len(crowd),), ROCK_LABEL, dtype=labels.dtype)]),
            "iscrowd": torch.cat([torch.zeros(len(boxes), dtype=torch.int64), torch.ones(len(crowd), dtype=torch.int64)])}


class DetectionMetrics(nn.Module):
    """COCO mAP (overall, 0.5, by size), COCO recall at IoU 0.5, and an operating point.

    ``max_detections`` is the most detections scored per image. Pass the model's own cap
    (``model.detections_per_image``): COCO's 100 would hide rocks a dense field's catalog holds.
    """

    def __init__(self, score_threshold: float = 0.5, iou_threshold: float = 0.5,
                 max_detections: int = COCO_MAX_DETECTIONS):
        super().__init__()
        self.max_detections = int(max_detections)
        self.coco = MeanAveragePrecision(iou_type="bbox", extended_summary=True, backend="pycocotools",
                                         max_detection_thresholds=[1, 10, self.max_detections])
        self.coco.warn_on_many_detections = False
        self.operating_point = OperatingPoint(score_threshold, iou_threshold)

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        preds = [{k: p[k].detach() for k in ("boxes", "scores", "labels")} for p in preds]
        self.coco.update(preds, [coco_target(t) for t in targets])
        self.operating_point.update(preds, targets)

    def compute(self) -> EvalResult:
        coco = self.coco.compute()
        scalars = {key: float(coco[key]) for key in _MAP_KEYS}
        precision = coco["precision"]  # [IoU thresholds, recall points, classes, area ranges, max detections]
        # pycocotools' summary takes "map" at 100 detections, which is not among ours (-1 then): the
        # same average (every IoU threshold, all areas) at our cap, from its precision table.
        valid = precision[..., 0, -1][precision[..., 0, -1] > -1] if precision.numel() else torch.zeros(0)
        scalars["map"] = float(valid.mean()) if valid.numel() else -1.0
        scalars["mar"] = float(coco[f"mar_{self.max_detections}"])
        # recall: [IoU thresholds, classes, area ranges, max detections]; IoU 0.5, all, the cap
        recall = coco["recall"]
        scalars["recall_50"] = float(recall[0, :, 0, -1].clamp(min=0).mean()) if recall.numel() else 0.0
        scalars.update({k: float(v) for k, v in self.operating_point.compute().items()})
        curve = (precision[0, :, :, 0, -1].clamp(min=0).mean(dim=1) if precision.numel()
                 else torch.zeros(101))
        return EvalResult(scalars, torch.linspace(0, 1, len(curve)).tolist(), curve.tolist())

    def reset(self) -> None:
        self.coco.reset()
        self.operating_point.reset()
