"""`rockdet evaluate`: a model over labelled images, detected as predict detects, judged by COCO's
metrics and as catalogs at the operating point (against dense masks too)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.data.dense_masks import RockMasks
from rockdet.evaluation.metrics import COCO_MAX_DETECTIONS, DetectionMetrics, EvalResult
from rockdet.evaluation.quality import judge_image, summarise
from rockdet.predict.detect import EVALUATION_SETTINGS, as_detections, detect_raw_tensors


@torch.inference_mode()
def evaluate_model(model: nn.Module, dataset: RockDataset, batch_size: int = 4,
                   device: str | torch.device = "cpu", score_threshold: float = 0.5,
                   iou_threshold: float = 0.5, num_workers: int = 0,
                   max_detections: int = COCO_MAX_DETECTIONS,
                   input_size: int | None = None, rock_masks: RockMasks | None = None,
                   tta: str = "none") -> EvalResult:
    """Run ``model`` over a labelled dataset and compute the metrics (``max_detections``: see
    DetectionMetrics). With ``input_size`` (the training image size) images are tiled and
    merged exactly as `rockdet predict` does (``tta`` as its ``--tta``); without it each image
    is one forward pass. ``quality`` judges the detections at ``score_threshold``
    (evaluation.quality), against dense ``rock_masks`` too when given."""
    if tta != "none" and not input_size:
        raise ValueError("evaluate_model: tta needs input_size (the tiled path predict takes)")
    settings = EVALUATION_SETTINGS.updated(tta=tta)
    model = model.to(device).eval()
    metrics = DetectionMetrics(score_threshold, iou_threshold, max_detections)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_detection,
                        num_workers=num_workers)
    judged, records = [], iter(dataset.records)
    for images, targets in tqdm(loader, desc="evaluate", unit="batch"):
        if input_size:
            raws = detect_raw_tensors(model, images, input_size, device, settings)
            preds = [as_detections(raw.rocks(settings, 0.0), max_detections) for raw in raws]
            # The catalog at the operating point is merged from the tiles at that threshold, as
            # predict merges it (a union across a tile border takes only boxes above it).
            catalogs = [as_detections(raw.rocks(settings, score_threshold)) for raw in raws]
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
