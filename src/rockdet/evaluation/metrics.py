"""Detection metrics shared by validation during training and the evaluate command."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from tqdm import tqdm

from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.data.dense_masks import RockMasks
from rockdet.data.records import CROWD_BOXES_KEY, ROCK_LABEL
from rockdet.evaluation.quality import judge_image, match_boxes, summarise
from rockdet.predict.detect import EVALUATION_SETTINGS, as_detections, detect_raw_tensors

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
    #: Catalog quality at the operating point: totals, by size, by image (catalog_quality.summarise).
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
        scalars["mar"] = float(coco[f"mar_{self.max_detections}"])
        # recall: [IoU thresholds, classes, area ranges, max detections]; IoU 0.5, all, the cap
        recall = coco["recall"]
        scalars["recall_50"] = float(recall[0, :, 0, -1].clamp(min=0).mean()) if recall.numel() else 0.0
        scalars.update({k: float(v) for k, v in self.operating_point.compute().items()})
        precision = coco["precision"]
        curve = (precision[0, :, :, 0, -1].clamp(min=0).mean(dim=1) if precision.numel()
                 else torch.zeros(101))
        return EvalResult(scalars, torch.linspace(0, 1, len(curve)).tolist(), curve.tolist())

    def reset(self) -> None:
        self.coco.reset()
        self.operating_point.reset()


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: RockDataset, batch_size: int = 4,
                   device: str | torch.device = "cpu", score_threshold: float = 0.5,
                   iou_threshold: float = 0.5, num_workers: int = 0,
                   max_detections: int = COCO_MAX_DETECTIONS,
                   input_size: int | None = None, rock_masks: RockMasks | None = None) -> EvalResult:
    """Run ``model`` over a labelled dataset and compute the metrics (``max_detections``: see
    DetectionMetrics). With ``input_size`` (the training image size) images are tiled and
    merged exactly as `rockdet predict` does; without it each image is one forward pass.
    ``quality`` judges the detections at ``score_threshold`` (catalog_quality), against dense
    ``rock_masks`` too when given."""
    model = model.to(device).eval()
    metrics = DetectionMetrics(score_threshold, iou_threshold, max_detections)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_detection,
                        num_workers=num_workers)
    judged, records = [], iter(dataset.records)
    for images, targets in tqdm(loader, desc="evaluate", unit="batch"):
        if input_size:
            raws = detect_raw_tensors(model, images, input_size, device)
            preds = [as_detections(raw.rocks(EVALUATION_SETTINGS, 0.0), max_detections) for raw in raws]
            # The catalog at the operating point is merged from the tiles at that threshold, as
            # predict merges it (a union across a tile border takes only boxes above it).
            catalogs = [as_detections(raw.rocks(EVALUATION_SETTINGS, score_threshold)) for raw in raws]
        else:
            preds = [{k: v.cpu() for k, v in p.items()} for p in model([image.to(device) for image in images])]
            catalogs = preds
        metrics.update(preds, targets)
        for catalog, target, record in zip(catalogs, targets, records):
            judged.append(judge_at(catalog, target, record, score_threshold, rock_masks))
    result = metrics.compute()
    result.quality = summarise(judged)
    return result


def judge_at(pred: dict, target: dict, record, score_threshold: float, rock_masks: RockMasks | None):
    """One image's detections at the operating point, judged against its labels (and mask)."""
    keep = pred["scores"] >= score_threshold
    order = pred["scores"][keep].argsort(descending=True)
    boxes = pred["boxes"][keep][order].numpy()
    mask = rock_masks(record.path, record.width, record.height) if rock_masks is not None else None
    return judge_image(record.path.name, boxes, target["boxes"].numpy(), record.crowd_boxes, mask)


def format_metrics_table(scalars: dict[str, float]) -> str:
    width = max(len(k) for k in scalars)
    return "\n".join(f"{key:<{width}}  {value:7.4f}" for key, value in scalars.items())


def format_quality(quality: dict, score_threshold: float | None) -> str:
    """The catalog-quality totals and the size breakdown as text for the terminal."""
    totals = quality.get("totals", {})
    lines = [f"at the operating point (score >= {score_threshold}):"]
    lines += [f"  {key:<20}  {value:7.4f}" if isinstance(value, float) else f"  {key:<20}  {value:>7}"
              for key, value in totals.items()]
    lines.append("  size px      rocks  recall@0.5  detections  precision@0.5")
    for row in quality.get("by_size", []):
        lines.append(f"  {row['size_px']:<11} {row['rocks']:>6}  {row['recall_50']:10.3f}  {row['detections']:>10}"
                     f"  {row['precision_50']:13.3f}")
    return "\n".join(lines)
