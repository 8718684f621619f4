"""Ignore regions for two-stage detectors: no negatives sampled and no background loss taken
where a target's ``ignore_boxes`` cover an anchor or a proposal.

Sparse rock labels leave most rocks in a "rocky region" unboxed; taught as background they pull
the detector towards missing exactly the rocks it should find. Targets carry the regions as
``"ignore_boxes"`` (float [M, 4] xyxy, same pixels as ``"boxes"``). The subclasses below change
only how training samples are labelled; inference and the saved weights are untouched.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import box_area

from rockdet.data.records import IGNORE_BOXES_KEY as IGNORE_KEY

#: An anchor or proposal with at least this fraction of its area inside an ignore region is
#: left out of the background samples.
MIN_FRACTION_INSIDE = 0.5
#: torchvision's label for samples that are neither positive nor negative.
_DISCARD = -1


def fraction_inside(boxes: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """For each box [N, 4], the largest fraction of its area inside one of ``regions`` [M, 4]."""
    if not len(regions) or not len(boxes):
        return boxes.new_zeros(len(boxes))
    top_left = torch.maximum(boxes[:, None, :2], regions[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], regions[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return (overlap / box_area(boxes).clamp(min=1e-6)[:, None]).amax(dim=1)


def discard_background_in(labels: torch.Tensor, boxes: torch.Tensor,
                          regions: torch.Tensor | None) -> torch.Tensor:
    """``labels`` with background (0) samples inside ``regions`` set to discard (-1)."""
    if regions is None or not len(regions):
        return labels
    inside = fraction_inside(boxes, regions.to(boxes)) >= MIN_FRACTION_INSIDE
    return torch.where((labels == 0) & inside, torch.full_like(labels, _DISCARD), labels)


class IgnoreAwareTransform(GeneralizedRCNNTransform):
    """Resizes ``ignore_boxes`` along with the image, as torchvision does ``boxes``."""

    def resize(self, image, target=None):
        original_size = image.shape[-2:]
        image, target = super().resize(image, target)
        if target is not None and IGNORE_KEY in target:
            target[IGNORE_KEY] = resize_boxes(target[IGNORE_KEY], original_size, image.shape[-2:])
        return image, target


class IgnoreAwareRPN(RegionProposalNetwork):
    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        labels = [discard_background_in(label, anchor, target.get(IGNORE_KEY))
                  for label, anchor, target in zip(labels, anchors, targets)]
        return labels, matched


class IgnoreAwareRoIHeads(RoIHeads):
    def select_training_samples(self, proposals, targets):
        # assign_targets_to_proposals is not handed the targets; keep their regions for it.
        self._ignore_regions = [target.get(IGNORE_KEY) for target in targets]
        try:
            return super().select_training_samples(proposals, targets)
        finally:
            self._ignore_regions = None

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        matched, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        regions = getattr(self, "_ignore_regions", None) or [None] * len(labels)
        labels = [discard_background_in(label, boxes, region)
                  for label, boxes, region in zip(labels, proposals, regions)]
        return matched, labels


def enable_ignore_regions(model: nn.Module) -> nn.Module:
    """Make a torchvision Faster/Mask R-CNN honour ``ignore_boxes`` in its training targets.

    The subclasses add no state, so the model's weights and its behaviour without ignore boxes
    (and at inference) stay exactly as they were.
    """
    model.transform.__class__ = IgnoreAwareTransform
    model.rpn.__class__ = IgnoreAwareRPN
    model.roi_heads.__class__ = IgnoreAwareRoIHeads
    return model
