"""Tiling as pure functions: windows over an image, boxes shifted back, detections merged.

A rock cut by a tile border is seen whole by a neighbouring tile (windows overlap) and partly by
this one; the partial box lies mostly inside the whole one, so duplicates are matched by
intersection over the smaller box (IoS) rather than IoU, which a half rock would fail.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torchvision.ops import batched_nms, box_area, box_iou

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
                     method: Literal["nms", "nmm"] = "nmm") -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Greedy merge of duplicate detections from overlapping tiles.

    Highest score first (ties: the larger box, i.e. the whole rock before its slivers); every
    remaining box overlapping it by more than ``threshold`` (IoS or IoU) joins its group. ``nms``
    keeps the top box of each group; ``nmm`` (non-maximum merging) replaces it by the union box
    and repeats until nothing merges, so a union that grew to the whole rock absorbs the slivers
    left over. Returns boxes, scores (the group's best) and, per kept detection, the input
    indices merged into it (for stitching masks).
    """
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores.reshape(0), []
    if metric == "iou" and method == "nms":
        keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), threshold)
        return boxes[keep], scores[keep], [[int(i)] for i in keep]
    groups = [[i] for i in range(len(boxes))]
    while True:
        merged = _greedy_pass(boxes, scores, groups, threshold, metric, method)
        if method == "nms" or len(merged[0]) == len(boxes):
            return merged
        boxes, scores, groups = merged


def _greedy_pass(boxes, scores, groups, threshold, metric, method):
    order = sorted(range(len(boxes)), key=lambda i: (-float(scores[i]), -float(box_area(boxes[i:i + 1]))))
    order = torch.tensor(order)
    boxes, scores = boxes[order], scores[order]
    overlap = (box_ios if metric == "ios" else box_iou)(boxes, boxes) > threshold
    free = torch.ones(len(boxes), dtype=torch.bool)
    kept_boxes, kept_scores, kept_groups = [], [], []
    for i in range(len(boxes)):
        if not free[i]:
            continue
        members = torch.nonzero(overlap[i] & free, as_tuple=True)[0]
        free[members] = False
        group = boxes[members]
        kept_boxes.append(boxes[i] if method == "nms" else torch.cat([group[:, :2].min(0).values,
                                                                      group[:, 2:].max(0).values]))
        kept_scores.append(scores[i])
        kept_groups.append([index for m in members.tolist() for index in groups[int(order[m])]])
    return torch.stack(kept_boxes), torch.stack(kept_scores), kept_groups
