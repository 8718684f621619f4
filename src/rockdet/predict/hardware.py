"""Lander and rover hardware in a detector's output (a model trained with ``data.hardware_classes``):
never a rock, and rocks lying mostly inside a confident hardware detection are part of it."""

from __future__ import annotations

import torch

from rockdet.data.records import HARDWARE_LABEL

#: A rock detection lying this much inside a confident hardware detection is part of the hardware.
HARDWARE_INSIDE = 0.5
#: A hardware detection removes rocks only when it scores at least this (and above them). The
#: mixed CPU recipe's hardware head scores the Yutu rover and the Chang'e 3 lander at 0.1-0.3:
#: at 0.1 instead of 0.5, 22 % fewer rock rows lie on labelled hardware in the Chang'e
#: validation split at the same recall at the operating point (recall@0.5 of the top 100:
#: 0.586 -> 0.575; Mars unchanged), docs/BENCHMARKS.md.
HARDWARE_CONFIDENCE = 0.1


def on_hardware(prediction: dict[str, torch.Tensor], score_threshold: float) -> torch.Tensor:
    """Per detection: not a rock. A model trained with ``data.hardware_classes`` calls lander and
    rover hardware by its own label; those boxes, and rocks lying mostly inside one, are left out."""
    labels = prediction.get("labels")
    if labels is None or not len(labels):
        return torch.zeros(len(prediction["scores"]), dtype=torch.bool)
    scores = prediction["scores"].detach().cpu()
    hardware = labels.cpu() == HARDWARE_LABEL
    # Its own confidence, not the catalog's threshold: at threshold 0 (validation ranks every
    # box) each rock's weak hardware twin would otherwise take the rock with it.
    confident = hardware & (scores >= max(score_threshold, HARDWARE_CONFIDENCE))
    if not confident.any():
        return hardware.to(prediction["scores"].device)
    boxes = prediction["boxes"].detach().float().cpu()
    overlap = box_inside(boxes, boxes[confident])
    outscored = scores[:, None] < scores[confident][None, :]  # a rock scoring above the hardware stays
    inside = ((overlap >= HARDWARE_INSIDE) & outscored).any(dim=1)
    return (hardware | inside).to(prediction["scores"].device)


def box_inside(boxes: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """[N, M]: the share of each box's area that lies inside each region."""
    lt = torch.max(boxes[:, None, :2], regions[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], regions[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-9)
    return inter / area[:, None]
