"""Training with sparse labels for two-stage detectors: ignore regions and a lighter background loss.

Sparse rock labels leave most rocks unboxed; taught as background they pull the detector towards
missing exactly the rocks it should find. Two remedies, both training-only:

- ignore regions: no negatives sampled (so no background loss) where a target's ``ignore_boxes``
  (float [M, 4] xyxy, same pixels as ``"boxes"``) cover an anchor or a proposal;
- a background loss weight below 1: every background sample of the RPN objectness and box-head
  classification losses counts that much, so an unlabelled rock taught as background pulls less.

The subclasses below change only how training samples are labelled and weighted; inference and
the saved weights are untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def background_weights(labels: torch.Tensor, background_weight: float) -> torch.Tensor:
    """Per-sample loss weights: ``background_weight`` for background (0), 1 for the rest."""
    return torch.where(labels == 0, torch.full_like(labels, background_weight, dtype=torch.float),
                       torch.ones_like(labels, dtype=torch.float))


class SparseLabelRPN(RegionProposalNetwork):
    #: Weight of a background anchor in the objectness loss (a plain attribute, not state).
    background_weight: float = 1.0

    def assign_targets_to_anchors(self, anchors, targets):
        labels, matched = super().assign_targets_to_anchors(anchors, targets)
        labels = [discard_background_in(label, anchor, target.get(IGNORE_KEY))
                  for label, anchor, target in zip(labels, anchors, targets)]
        return labels, matched

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        if self.background_weight == 1.0:
            return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
        # torchvision's loss, with each sampled anchor's objectness term weighted.
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        positive = torch.where(torch.cat(sampled_pos))[0]
        sampled = torch.cat([positive, torch.where(torch.cat(sampled_neg))[0]])
        labels = torch.cat(labels)[sampled]
        box_loss = F.smooth_l1_loss(pred_bbox_deltas[positive], torch.cat(regression_targets)[positive],
                                    beta=1 / 9, reduction="sum") / max(len(sampled), 1)
        per_sample = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels,
                                                        reduction="none")
        weights = background_weights(labels, self.background_weight)
        return (weights * per_sample).sum() / max(len(sampled), 1), box_loss


class SparseLabelRoIHeads(RoIHeads):
    #: Weight of a background proposal in the classification loss (a plain attribute, not state).
    background_weight: float = 1.0

    def select_training_samples(self, proposals, targets):
        # assign_targets_to_proposals is not handed the targets; keep their regions for it.
        self._ignore_regions = [target.get(IGNORE_KEY) for target in targets]
        try:
            proposals, matched, labels, regression_targets = super().select_training_samples(
                proposals, targets)
        finally:
            self._ignore_regions = None
        self._sampled_labels = labels
        return proposals, matched, labels, regression_targets

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training or self.background_weight == 1.0:
            return super().forward(features, proposals, image_shapes, targets)
        # torchvision computes the classification loss inside forward from the predictor's
        # logits; catch those and recompute the loss with per-sample weights.
        caught = []
        hook = self.box_predictor.register_forward_hook(lambda _m, _i, out: caught.append(out[0]))
        try:
            result, losses = super().forward(features, proposals, image_shapes, targets)
        finally:
            hook.remove()
        labels = torch.cat(self._sampled_labels)
        per_sample = F.cross_entropy(caught[0], labels, reduction="none")
        weights = background_weights(labels, self.background_weight)
        losses["loss_classifier"] = (weights * per_sample).sum() / max(len(labels), 1)
        return result, losses

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        matched, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        regions = getattr(self, "_ignore_regions", None) or [None] * len(labels)
        labels = [discard_background_in(label, boxes, region)
                  for label, boxes, region in zip(labels, proposals, regions)]
        return matched, labels


def enable_sparse_label_training(model: nn.Module, background_weight: float = 1.0) -> nn.Module:
    """Make a torchvision Faster/Mask R-CNN honour ``ignore_boxes`` in its training targets and
    weight its background samples by ``background_weight`` (0 < weight <= 1).

    The subclasses add no parameters or buffers, so the model's weights and its behaviour without
    ignore boxes, at weight 1 and at inference stay exactly as they were.
    """
    if not 0.0 < background_weight <= 1.0:
        raise ValueError(f"background_weight must be in (0, 1], got {background_weight}")
    model.transform.__class__ = IgnoreAwareTransform
    model.rpn.__class__ = SparseLabelRPN
    model.roi_heads.__class__ = SparseLabelRoIHeads
    model.rpn.background_weight = model.roi_heads.background_weight = float(background_weight)
    return model


def disable_sparse_label_training(model: nn.Module) -> nn.Module:
    """Give a two-stage model back torchvision's own classes (same weights, same inference), for
    export: TorchScript cannot compile the training subclasses' ``super()`` calls."""
    if isinstance(getattr(model, "rpn", None), SparseLabelRPN):
        model.transform.__class__ = GeneralizedRCNNTransform
        model.rpn.__class__ = RegionProposalNetwork
        model.roi_heads.__class__ = RoIHeads
        del model.rpn.background_weight, model.roi_heads.background_weight
    return model
