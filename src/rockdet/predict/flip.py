"""Test-time flip (`rockdet predict --tta flip`): each tile is seen as it is and mirrored left to
right, and the two views' detections are fused into one.

A rock is a rock in a mirror; a sand ripple, a shadow's edge or a tile-sized box over texture is
often found in one view only. Fusing as weighted boxes fusion does (Solovyev et al. 2021): the
detections of the two views are paired greedily from the highest score (same class, IoU at least
``MATCH_IOU``, at most one partner from the other view), a pair's box is the score-weighted mean
of its two boxes (a Mask R-CNN's mask likewise) and its score is the mean of the two views'
scores, a view that did not find it counting 0. So agreement ranks a detection up and a one-view
detection keeps half its score. On the recipe's model this raised the best Mars mask F1 (0.754 →
0.765) and the Chang'e recall of the best 100 (0.680 → 0.691), at 2.1 times predict's time
(7.5 times for a Mask R-CNN; docs/BENCHMARKS.md, issue 17, stop 36).

A rock the catalog keeps at threshold t may score below t in one of the views, so each view is
asked for every box from ``views_floor(t)`` = 2t - 1 up (below it no box can reach a fused t, even
beside a partner scoring 1), which for the usual t < 0.5 is the detector's own floor. The fused
detections are then cut at t. An exported graph keeps the floor it was exported with, so there a
view's box below that floor counts 0 (`rockdet export --score-floor`). For a Mask R-CNN that
means a mask for every box down to the floor, several times the time of one view at t.
"""

from __future__ import annotations

import torch
from torchvision.ops import batched_nms, box_iou

#: Two views' boxes of one rock overlap at least this much (WBF's default, 0.55).
MATCH_IOU = 0.55
#: After fusing, boxes of one class overlapping more than this are one rock, as the detector's
#: own NMS has it (torchvision's ``box_nms_thresh``), since an unpaired box of one view can sit
#: beside a pair.
FUSED_NMS_IOU = 0.5
VIEWS = 2


def views_floor(threshold: float) -> float:
    """The lowest score a view's box needs to count towards a fused score of ``threshold``."""
    return max(0.0, VIEWS * threshold - (VIEWS - 1))


def mirrored(tiles: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tiles mirrored left to right ([C, H, W])."""
    return [tile.flip(-1) for tile in tiles]


def mirrored_back(prediction: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """A mirrored tile's detections in the tile's own coordinates."""
    back = dict(prediction)
    boxes = prediction["boxes"]
    back["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    if "masks" in prediction:
        back["masks"] = prediction["masks"].flip(-1)
    return back


def fuse_views(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One tile's detections from two views (same coordinates), fused (module docstring);
    sorted by score."""
    boxes = torch.cat([first["boxes"], second["boxes"]])
    scores = torch.cat([first["scores"], second["scores"]])
    labels = torch.cat([first["labels"], second["labels"]])
    masks = torch.cat([first["masks"], second["masks"]]) if "masks" in first else None
    if len(boxes) == 0:
        return first
    view = torch.arange(len(boxes)) >= len(first["boxes"])
    candidates = (box_iou(boxes, boxes) >= MATCH_IOU) & (labels[:, None] == labels[None, :]) & \
        (view[:, None] != view[None, :])
    taken = torch.zeros(len(boxes), dtype=torch.bool)
    groups = []
    for index in scores.argsort(descending=True, stable=True).tolist():
        if taken[index]:
            continue
        taken[index] = True
        open_partners = candidates[index] & ~taken
        if open_partners.any():
            partner = int(torch.where(open_partners, scores, scores.new_tensor(-1.0)).argmax())
            taken[partner] = True
            groups.append([index, partner])
        else:
            groups.append([index])
    fused_boxes, fused_scores, fused_masks = [], [], []
    for group in groups:
        weights = scores[group]
        # Scores of 0 (a catalog made at 0 keeps them) weigh alike rather than not at all.
        share = weights / weights.sum() if bool(weights.sum() > 0) else torch.full_like(weights, 1 / len(group))
        fused_boxes.append((boxes[group] * share[:, None]).sum(0))
        fused_scores.append(weights.sum() / VIEWS)
        if masks is not None:
            fused_masks.append((masks[group] * share.view(-1, 1, 1, 1)).sum(0))
    fused = {"boxes": torch.stack(fused_boxes), "scores": torch.stack(fused_scores),
             "labels": labels[[group[0] for group in groups]]}
    if masks is not None:
        fused["masks"] = torch.stack(fused_masks)
    keep = batched_nms(fused["boxes"], fused["scores"], fused["labels"], FUSED_NMS_IOU)
    return {key: value[keep] for key, value in fused.items()}


def fuse_flipped(tiles: list[torch.Tensor], outputs: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Each tile's fused detections, from a run over ``tiles + mirrored(tiles)`` (``outputs``)."""
    count = len(tiles)
    return [fuse_views(_on_host(outputs[i]), mirrored_back(_on_host(outputs[count + i]), tile.shape[-1]))
            for i, tile in enumerate(tiles)]


def _on_host(prediction: dict) -> dict:
    return {key: value.detach().cpu() if torch.is_tensor(value) else value for key, value in prediction.items()}
