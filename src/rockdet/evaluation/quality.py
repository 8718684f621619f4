"""How far a catalog can be trusted at its operating point: box precision and recall at IoU 0.5
and 0.3 (COCO crowd regions honoured), mask precision and recall against dense rock masks,
nested duplicates, by rock size and by image.

Dense masks (e.g. the Mars Mastcam set) often hold the rock's shadow and merge touching rocks,
so a right box can fall under IoU 0.5; mask figures judge a detection by the pixels under it:
- a detection is a rock (mask precision) when at least half of its box's pixels are rock
  pixels, or its box centre is one;
- a mask component of at least ``min_component_px`` pixels is found (mask recall) when a
  detection's centre lies on it or a detection's box covers at least half of it.
These are the rules of the project's independent checker (``shared/tools/mask_precision.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: IoU thresholds of the box figures: COCO's 0.5, and 0.3 for masks that hold shadows.
BOX_IOUS = (0.5, 0.3)
#: Edges (px, square root of the box area) of the size bins of the breakdown.
SIZE_EDGES_PX = (0, 16, 32, 64, 128, float("inf"))
#: A detection this much inside a larger one of the same image counts as nested (the checker's rule).
NESTED_INSIDE = 0.8
#: A detection lying this much inside a crowd region is neither right nor wrong (COCO's rule).
CROWD_INSIDE = 0.5
#: Mask components smaller than this are pebbles and noise, not rocks to find.
MIN_COMPONENT_PX = 20


def box_sides(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def nested_flags(boxes: np.ndarray) -> np.ndarray:
    """Per box: it lies at least NESTED_INSIDE inside a larger box of the same set."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    width = np.clip(np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0]), 0, None)
    height = np.clip(np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1]), 0, None)
    inside = (width * height >= NESTED_INSIDE * area[:, None]) & (area[None, :] > area[:, None])
    return inside.any(axis=1)


def _iou(boxes: np.ndarray, truth: np.ndarray) -> np.ndarray:
    width = np.clip(np.minimum(boxes[:, None, 2], truth[None, :, 2]) - np.maximum(boxes[:, None, 0], truth[None, :, 0]), 0, None)
    height = np.clip(np.minimum(boxes[:, None, 3], truth[None, :, 3]) - np.maximum(boxes[:, None, 1], truth[None, :, 1]), 0, None)
    inter = width * height
    union = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None] + \
        ((truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1]))[None, :] - inter
    return inter / np.maximum(union, 1e-9)


def match_boxes(boxes: np.ndarray, truth: np.ndarray, crowd: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching of score-sorted ``boxes`` to ``truth`` as COCO does it.

    Returns per detection 1 (right), 0 (wrong) or -1 (on a crowd region: ignored), and per
    truth box whether it was found."""
    boxes, truth = np.asarray(boxes, float).reshape(-1, 4), np.asarray(truth, float).reshape(-1, 4)
    verdict = np.zeros(len(boxes), dtype=np.int64)
    found = np.zeros(len(truth), dtype=bool)
    ious = _iou(boxes, truth) if len(boxes) and len(truth) else np.zeros((len(boxes), len(truth)))
    for i in range(len(boxes)):
        if len(truth):
            row = np.where(found, -1.0, ious[i])
            best = int(row.argmax())
            if row[best] >= iou:
                found[best], verdict[i] = True, 1
                continue
        if len(crowd) and _inside_any(boxes[i], crowd) >= CROWD_INSIDE:
            verdict[i] = -1
    return verdict, found


def _inside_any(box: np.ndarray, regions: np.ndarray) -> float:
    regions = np.asarray(regions, float).reshape(-1, 4)
    width = np.clip(np.minimum(box[2], regions[:, 2]) - np.maximum(box[0], regions[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], regions[:, 3]) - np.maximum(box[1], regions[:, 1]), 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return float((width * height).max() / area)


class RockMask:
    """One image's dense rock mask with its components labelled once, to judge many catalogs."""

    def __init__(self, rock: np.ndarray, min_component_px: int = MIN_COMPONENT_PX):
        self.rock = np.asarray(rock, dtype=bool)
        self.labels, count = ndimage.label(self.rock)
        self.sizes = ndimage.sum(self.rock, self.labels, range(1, count + 1)) if count else np.zeros(0)
        self.big = {i + 1 for i, size in enumerate(self.sizes) if size >= min_component_px}

    def verdicts(self, boxes: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(per detection: on rock pixels, mask components found, components)."""
        rock, labels, sizes, big = self.rock, self.labels, self.sizes, self.big
        height, width = rock.shape
        on_rock, hit = np.zeros(len(boxes), dtype=bool), set()
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, float).reshape(-1, 4)):
            xi0, yi0 = max(0, int(x0)), max(0, int(y0))
            xi1, yi1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
            if xi1 <= xi0 or yi1 <= yi0:
                continue
            cx, cy = min(width - 1, int((x0 + x1) / 2)), min(height - 1, int((y0 + y1) / 2))
            on_rock[i] = rock[yi0:yi1, xi0:xi1].mean() >= 0.5 or bool(rock[cy, cx])
            if labels[cy, cx] in big:
                hit.add(int(labels[cy, cx]))
            window = labels[yi0:yi1, xi0:xi1]
            for component in np.unique(window):
                if component in big and (window == component).sum() >= 0.5 * sizes[component - 1]:
                    hit.add(int(component))
        return on_rock, len(hit), len(big)


def mask_verdicts(boxes: np.ndarray, rock: np.ndarray | RockMask, min_component_px: int = MIN_COMPONENT_PX
                  ) -> tuple[np.ndarray, int, int]:
    """(per detection: on rock pixels, mask components found, components) for one image."""
    judge = rock if isinstance(rock, RockMask) else RockMask(rock, min_component_px)
    return judge.verdicts(boxes)


@dataclass
class ImageQuality:
    """One image's detections at the operating point, judged."""

    image: str
    rocks: int
    detections: int
    right: dict[float, int]  # per IoU: detections matched to a labelled rock
    ignored: dict[float, int]  # per IoU: detections on crowd regions
    nested: int
    labels_nested: int
    on_rock: int | None = None  # mask precision numerator (None: no mask)
    components: int | None = None
    components_found: int | None = None
    detection_sides: np.ndarray = field(default_factory=lambda: np.zeros(0))
    detection_right: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # at IoU 0.5
    rock_sides: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rock_found: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # at IoU 0.5


def judge_image(image: str, boxes: np.ndarray, truth: np.ndarray, crowd: np.ndarray,
                rock_mask: np.ndarray | RockMask | None = None) -> ImageQuality:
    """Judge one image's detections (score-sorted, already at the operating point)."""
    boxes, truth = np.asarray(boxes, float).reshape(-1, 4), np.asarray(truth, float).reshape(-1, 4)
    right, ignored, found_50, verdict_50 = {}, {}, None, None
    for iou in BOX_IOUS:
        verdict, found = match_boxes(boxes, truth, crowd, iou)
        right[iou], ignored[iou] = int((verdict == 1).sum()), int((verdict == -1).sum())
        if iou == 0.5:
            found_50, verdict_50 = found, verdict
    quality = ImageQuality(image, len(truth), len(boxes), right, ignored, int(nested_flags(boxes).sum()),
                           int(nested_flags(truth).sum()), detection_sides=box_sides(boxes),
                           detection_right=verdict_50, rock_sides=box_sides(truth), rock_found=found_50)
    if rock_mask is not None:
        on_rock, found, components = mask_verdicts(boxes, rock_mask)
        quality.on_rock, quality.components_found, quality.components = int(on_rock.sum()), found, components
    return quality


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0


def summarise(images: list[ImageQuality]) -> dict:
    """Totals, by rock size and by image, of judged images."""
    detections = sum(q.detections for q in images)
    rocks = sum(q.rocks for q in images)
    totals: dict[str, float] = {"images": len(images), "rocks": rocks, "detections": detections}
    for iou in BOX_IOUS:
        right = sum(q.right[iou] for q in images)
        judged = detections - sum(q.ignored[iou] for q in images)
        precision, recall = _ratio(right, judged), _ratio(right, rocks)
        tag = f"{int(iou * 100)}"
        totals[f"box_precision_{tag}"], totals[f"box_recall_{tag}"] = precision, recall
        totals[f"box_f1_{tag}"] = _ratio(2 * precision * recall, precision + recall)
    totals["nested_share"] = _ratio(sum(q.nested for q in images), detections)
    totals["labels_nested_share"] = _ratio(sum(q.labels_nested for q in images), rocks)
    masked = [q for q in images if q.on_rock is not None]
    if masked:
        precision = _ratio(sum(q.on_rock for q in masked), sum(q.detections for q in masked))
        recall = _ratio(sum(q.components_found for q in masked), sum(q.components for q in masked))
        totals.update({"mask_images": len(masked), "mask_precision": precision, "mask_recall": recall,
                       "mask_f1": _ratio(2 * precision * recall, precision + recall)})
    return {"totals": totals, "by_size": _by_size(images), "by_image": [_image_row(q) for q in images]}


def _by_size(images: list[ImageQuality]) -> list[dict]:
    detection_sides = np.concatenate([q.detection_sides for q in images]) if images else np.zeros(0)
    detection_right = np.concatenate([q.detection_right for q in images]) if images else np.zeros(0)
    rock_sides = np.concatenate([q.rock_sides for q in images]) if images else np.zeros(0)
    rock_found = np.concatenate([q.rock_found for q in images]) if images else np.zeros(0, bool)
    rows = []
    for low, high in zip(SIZE_EDGES_PX[:-1], SIZE_EDGES_PX[1:]):
        in_bin = (detection_sides >= low) & (detection_sides < high) & (detection_right >= 0)
        rocks_in_bin = (rock_sides >= low) & (rock_sides < high)
        rows.append({"size_px": f"{low:g}-{high:g}", "rocks": int(rocks_in_bin.sum()),
                     "recall_50": _ratio(rock_found[rocks_in_bin].sum(), rocks_in_bin.sum()),
                     "detections": int(in_bin.sum()),
                     "precision_50": _ratio((detection_right[in_bin] == 1).sum(), in_bin.sum())})
    return rows


def _image_row(quality: ImageQuality) -> dict:
    row = {"image": quality.image, "rocks": quality.rocks, "detections": quality.detections,
           "box_precision_50": _ratio(quality.right[0.5], quality.detections - quality.ignored[0.5]),
           "box_recall_50": _ratio(quality.right[0.5], quality.rocks),
           "box_recall_30": _ratio(quality.right[0.3], quality.rocks), "nested": quality.nested}
    if quality.on_rock is not None:
        row["mask_precision"] = _ratio(quality.on_rock, quality.detections)
        row["mask_recall"] = _ratio(quality.components_found, quality.components)
    return row
