"""Tiling as pure functions: windows over an image, boxes shifted back, detections merged.

A rock cut by a tile border is seen whole by a neighbouring tile (windows overlap) and partly by
this one; the partial box lies mostly inside the whole one, so duplicates are matched by
intersection over the smaller box (IoS) rather than IoU, which a half rock would fail.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torchvision.ops import batched_nms, box_area

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets along one axis: evenly spread, first at 0, last flush with the edge."""
    if length <= tile:
        return [0]
    stride = tile * (1.0 - overlap)
    count = math.ceil((length - tile) / stride) + 1
    # Spread the windows evenly so that every overlap is at least the requested one.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_windows(height: int, width: int, tile: int, overlap: float) -> list[Window]:
    """Windows of at most ``tile`` px covering the image, neighbours overlapping by ``overlap``."""
    if tile <= 0 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"need tile > 0 and 0 <= overlap < 1, got tile={tile}, overlap={overlap}")
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


def shift_boxes(boxes: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """Tile coordinates → image coordinates."""
    x, y = offset
    return boxes + torch.tensor([x, y, x, y], dtype=boxes.dtype, device=boxes.device)


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
