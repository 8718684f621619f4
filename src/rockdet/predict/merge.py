"""One image's rocks from its tiles' detections: each tile's confident rocks in image coordinates,
then duplicates merged across tile borders and the catalog's rules applied (one rock, one row).

A rock cut by a tile border is seen whole by a neighbouring tile (windows overlap) and partly by
this one; the partial box lies mostly inside the whole one, so duplicates are matched by
intersection over the smaller box (IoS) rather than IoU, which a half rock would fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torchvision.ops import batched_nms, box_area

from rockdet.catalog.rock import Rock
from rockdet.predict.hardware import on_hardware
from rockdet.predict.masks import describe_mask, stitch_mask
from rockdet.predict.settings import PredictSettings
from rockdet.predict.tiling import Window, shift_boxes

#: Mask probability above which a pixel belongs to the rock (torchvision's convention).
MASK_THRESHOLD = 0.5


@dataclass
class TileDetections:
    """One tile's detections, already in image coordinates."""

    boxes: torch.Tensor  # [N, 4]
    scores: torch.Tensor  # [N]
    masks: list[tuple[np.ndarray, int, int]] | None  # per box: (bool crop, x0, y0) in the image
    #: The tile's window in the image (None: unknown, no box taken as cut by a tile border).
    window: Window | None = None


def to_image_coordinates(prediction: dict[str, torch.Tensor], window: Window,
                         score_threshold: float) -> TileDetections:
    """Keep confident rocks, drop any in the padding or on hardware, shift to image coordinates."""
    x0, y0, x1, y1 = window
    keep = (prediction["scores"] >= score_threshold) & ~on_hardware(prediction, score_threshold)
    boxes = prediction["boxes"][keep].detach().float().cpu()
    if len(boxes):
        centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (centre_x < x1 - x0) & (centre_y < y1 - y0)
        keep_idx = torch.nonzero(keep, as_tuple=True)[0][inside]
        boxes = boxes[inside]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, x1 - x0)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, y1 - y0)
    else:
        keep_idx = torch.zeros(0, dtype=torch.int64)
    masks = None
    if "masks" in prediction:
        masks = []
        probabilities = prediction["masks"][keep_idx, 0].detach().cpu()
        for box, probability in zip(boxes, probabilities):
            bx0, by0 = int(box[0]), int(box[1])
            bx1, by1 = max(bx0 + 1, math.ceil(box[2])), max(by0 + 1, math.ceil(box[3]))
            crop = (probability[by0:by1, bx0:bx1] > MASK_THRESHOLD).numpy()
            masks.append((crop, bx0 + x0, by0 + y0))
    return TileDetections(shift_boxes(boxes, (x0, y0)), prediction["scores"][keep_idx].detach().float().cpu(),
                          masks, window)


def cut_sides(parts: list[TileDetections]) -> np.ndarray | None:
    """Per box, bool [N, 4]: its left, top, right or bottom side lies on a tile border inside
    the image (the rock may go on in the neighbouring tile)."""
    if any(p.window is None for p in parts):
        return None
    width, height = max(p.window[2] for p in parts), max(p.window[3] for p in parts)
    sides = []
    for part in parts:
        x0, y0, x1, y1 = part.window
        edges = np.array([x0, y0, x1, y1], dtype=np.float64)
        inner = np.array([x0 > 0, y0 > 0, x1 < width, y1 < height])
        boxes = part.boxes.numpy().astype(np.float64).reshape(-1, 4)
        sides.append((np.abs(boxes - edges) <= CUT_TOLERANCE_PX) & inner)
    return np.concatenate(sides) if sides else np.zeros((0, 4), dtype=bool)


def merge_tiles(parts: list[TileDetections], settings: PredictSettings) -> list[Rock]:
    """All tiles of one image → one list of rocks, duplicates across tile borders merged."""
    boxes = torch.cat([p.boxes for p in parts]) if parts else torch.zeros((0, 4))
    scores = torch.cat([p.scores for p in parts]) if parts else torch.zeros(0)
    has_masks = bool(parts) and all(p.masks is not None for p in parts)
    all_masks = [m for p in parts for m in (p.masks or [])]
    cut = cut_sides(parts) if len(parts) > 1 else None
    limit = settings.min_diameter_px
    detections = torch.arange(len(boxes))  # positions in the tiles' detections (and all_masks)
    if limit is not None and len(boxes):
        # Before anything merges: a small part that outscored its whole rock would otherwise stand
        # for the rock (the merge keeps the higher score) and then be left out with it. A part cut
        # by a tile border stays, since it may grow into its rock in the merge.
        large = diameter_at_most(boxes, has_masks) >= limit
        if cut is not None:
            large |= torch.as_tensor(cut.any(axis=1))
        detections, boxes, scores = detections[large], boxes[large], scores[large]
        cut = None if cut is None else cut[large.numpy()]
    if len(parts) > 1:
        boxes, scores, groups = merge_detections(boxes, scores, settings.merge_threshold,
                                                 settings.merge_metric, settings.merge_method, cut)
    else:
        order = scores.argsort(descending=True)
        boxes, scores, groups = boxes[order], scores[order], [[int(i)] for i in order]
    groups = [[int(detections[member]) for member in group] for group in groups]
    if limit is not None and len(boxes):
        large = diameter_at_most(boxes, has_masks) >= limit  # a cut part that grew into no rock
        boxes, scores = boxes[large], scores[large]
        groups = [group for group, kept in zip(groups, large.tolist()) if kept]
    if settings.nested_threshold is not None and len(boxes) > 1:
        # Inside a tile as well as across: torchvision's per-tile NMS (IoU) keeps a box nested
        # in a larger one, since their IoU is small.
        boxes, scores, nested = merge_detections(boxes, scores, settings.nested_threshold, "ios", "nms")
        groups = [[member for index in group for member in groups[index]] for group in nested]
    rocks = [Rock.detected(rock_id, score, box,
                           describe_mask(stitch_mask(box, [all_masks[i] for i in group])) if has_masks else None)
             for rock_id, (box, score, group) in enumerate(zip(boxes.tolist(), scores.tolist(), groups), start=1)]
    if limit is not None and has_masks:
        # The boxes were judged by the most their masks could measure; the catalog's column decides.
        rocks = [rock.numbered(number) for number, rock in
                 enumerate((r for r in rocks if r.diameter_px >= limit), start=1)]
    return rocks


def diameter_at_most(boxes: torch.Tensor, has_masks: bool) -> torch.Tensor:
    """Per box, the largest diameter_px its catalog row can have: the mean of its sides, or with
    masks also the equivalent-circle diameter of a mask filling the whole stitched crop (whole
    pixels from the box's floor to its ceiling, so up to 2 px wider and taller than the box)."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    mean_side = (width + height) / 2
    if not has_masks:
        return mean_side
    return torch.maximum(mean_side, 2 * torch.sqrt((width + 2) * (height + 2) / math.pi))


def drop_rocks_on_no_data(rocks: list[Rock], valid: np.ndarray | None) -> list[Rock]:
    """Rocks whose box centre lies on a pixel the product marks as no data are not rocks; the
    rest, numbered again from 1."""
    if valid is None or not rocks:
        return list(rocks)
    height, width = valid.shape
    kept = [rock for rock in rocks
            if valid[min(int((rock.y_min + rock.y_max) / 2), height - 1), min(int((rock.x_min + rock.x_max) / 2), width - 1)]]
    return [rock.numbered(number) for number, rock in enumerate(kept, start=1)]


def box_ios(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over the smaller of the two boxes, pairwise [N, M]."""
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    smaller = torch.min(box_area(boxes1)[:, None], box_area(boxes2)[None, :])
    return inter / smaller.clamp(min=1e-9)


def merge_detections(boxes: torch.Tensor, scores: torch.Tensor, threshold: float = 0.5,
                     metric: Literal["ios", "iou"] = "ios",
                     method: Literal["nms", "nmm"] = "nmm",
                     cut_sides: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Greedy merge of duplicate detections from overlapping tiles.

    Highest score first (ties: the larger box, i.e. the whole rock before its slivers); every
    remaining box overlapping it by more than ``threshold`` (IoS or IoU) joins its group. ``nms``
    keeps the top box of each group; ``nmm`` (non-maximum merging) replaces it by the union box.
    With ``cut_sides`` (bool [N, 4]: left, top, right, bottom lie on an inner tile border) the
    union takes only members that are the same rock cut by a border: one of the pair is cut on a
    side that the other reaches across. Other members are dropped, not unioned, so a small rock
    never grows into a tile-sized box that happens to contain it.
    One pass: repeating until nothing merges chained neighbouring rocks into growing unions and
    cost recall (docs/BENCHMARKS.md). Returns boxes, scores (the group's best) and, per kept
    detection, the input indices it is made of (for stitching masks): the joined members for
    ``nmm``, the kept box alone for ``nms`` (a dropped duplicate's mask is not the rock's).
    """
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores.reshape(0), []
    if metric == "iou" and method == "nms":
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), threshold)
        return boxes[keep], scores[keep], [[int(i)] for i in keep]
    kept_boxes, kept_scores, kept_groups = _greedy_pass(
        boxes.detach().cpu().numpy().astype(np.float64), scores.detach().cpu().numpy(), threshold, metric, method,
        cut_sides)
    return (torch.as_tensor(kept_boxes, dtype=boxes.dtype), torch.as_tensor(kept_scores, dtype=scores.dtype),
            kept_groups)


def _overlaps(boxes: np.ndarray, threshold: float, metric: str) -> list[np.ndarray]:
    """For each box, the boxes overlapping it by more than ``threshold`` (itself included).

    A sweep over boxes sorted by left edge compares only boxes whose x-ranges meet, so memory
    and time follow the number of touching pairs, not N² (a huge image can hold 10⁵ rocks).
    """
    count = len(boxes)
    by_left = np.argsort(boxes[:, 0], kind="stable")
    lefts = boxes[by_left, 0]
    ends = np.searchsorted(lefts, boxes[by_left, 2], side="left")  # first box starting right of me
    lengths = ends - np.arange(count)
    first = np.repeat(np.arange(count), lengths)
    second = np.arange(len(first)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + first
    a, b = boxes[by_left[first]], boxes[by_left[second]]
    width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    denominator = np.minimum(area_a, area_b) if metric == "ios" else area_a + area_b - inter
    hit = inter > threshold * np.maximum(denominator, 1e-9)
    i, j = by_left[first[hit]], by_left[second[hit]]
    rows = np.concatenate([i, j, np.arange(count)])
    cols = np.concatenate([j, i, np.arange(count)])
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    return np.split(cols, np.searchsorted(rows, np.arange(1, count)))


#: A box side within this many pixels of a tile border is taken as cut by it.
CUT_TOLERANCE_PX = 1.0


#: Two parts of one rock cut by a tile border span about the same extent along that border:
#: their extents across the cut (y for a vertical border, x for a horizontal one) overlap by at
#: least this intersection over union. A small rock beside a tile-sized box fails it.
CUT_AGREEMENT_IOU = 0.5


def _same_rock_cut(keeper: np.ndarray, member: np.ndarray, keeper_cut: np.ndarray, member_cut: np.ndarray) -> bool:
    """One box is cut on a side (left, top, right, bottom) that the other reaches across, and
    the two agree in extent along that side."""
    across = (member_cut & _reaches_beyond(keeper, member)) | (keeper_cut & _reaches_beyond(member, keeper))
    agree_y, agree_x = (_interval_iou(keeper[[1, 3]], member[[1, 3]]) >= CUT_AGREEMENT_IOU,
                        _interval_iou(keeper[[0, 2]], member[[0, 2]]) >= CUT_AGREEMENT_IOU)
    # Left and right cuts are vertical borders (compare y extents); top and bottom horizontal ones.
    return bool(((across[0] | across[2]) & agree_y) or ((across[1] | across[3]) & agree_x))


def _interval_iou(first: np.ndarray, second: np.ndarray) -> float:
    inter = max(0.0, min(first[1], second[1]) - max(first[0], second[0]))
    union = max(first[1], second[1]) - min(first[0], second[0])
    return inter / union if union > 0 else 0.0


def _reaches_beyond(box: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per side (left, top, right, bottom): ``box`` extends past ``other`` there."""
    tolerance = CUT_TOLERANCE_PX
    return np.array([box[0] < other[0] - tolerance, box[1] < other[1] - tolerance,
                     box[2] > other[2] + tolerance, box[3] > other[3] + tolerance])


def _greedy_pass(boxes: np.ndarray, scores: np.ndarray, threshold: float, metric: str, method: str,
                 cut_sides: np.ndarray | None = None):
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.lexsort((-areas, -scores))  # by score, ties by size
    boxes, scores = boxes[order], scores[order]
    cut = None if cut_sides is None else np.asarray(cut_sides, dtype=bool)[order]
    neighbours = _overlaps(boxes, threshold, metric)
    free = np.ones(len(boxes), dtype=bool)
    kept_boxes, kept_scores, kept_groups = [], [], []
    for i in range(len(boxes)):
        if not free[i]:
            continue
        members = np.unique(neighbours[i][free[neighbours[i]]])
        free[members] = False
        if method == "nms":
            kept_boxes.append(boxes[i])
        else:
            if cut is not None:
                members_to_join = [m for m in members if m == i or _same_rock_cut(boxes[i], boxes[m], cut[i], cut[m])]
            else:
                members_to_join = members
            group = boxes[members_to_join]
            kept_boxes.append(np.concatenate([group[:, :2].min(axis=0), group[:, 2:].max(axis=0)]))
            members = members_to_join
        kept_scores.append(scores[i])
        kept_groups.append([int(order[m]) for m in members] if method != "nms" else [int(order[i])])
    return np.stack(kept_boxes), np.asarray(kept_scores), kept_groups
