"""Faster or Mask R-CNN on a ResNet-18/34 FPN that keeps stride-4 features, for rocks of 5-30 px.

torchvision's only light detector (MobileNetV3-FPN) sees stride 16 and 32, so a 19 px rock is a
cell or two. Here the FPN starts at ResNet's first stage (P2, stride 4) and the RoI pooler sends
small boxes there. Random initialisation uses trainable batch norms; ImageNet backbone weights
keep torchvision's frozen ones. The Mask R-CNN variant's mask head is as wide as the FPN (four
3x3 convolutions, as torchvision's), not torchvision's fixed 256: its cost is per positive
proposal, and a dense Mars scene has a hundred of them.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from rockdet.errors import ConfigError

#: Stages of a torchvision ResNet, finest first, and the layers frozen from the stem upwards.
_STAGES = ("layer1", "layer2", "layer3", "layer4")
_FREEZE_ORDER = ("conv1", "layer1", "layer2", "layer3", "layer4")
#: One anchor size per level P2..P6 at three aspect ratios: rocks are 5-120 px in the model's
#: input, a decade below the 32-512 px COCO defaults.
DEFAULT_ANCHOR_SIZES = ((8,), (16,), (32,), (64,), (128,))
ASPECT_RATIOS = (0.5, 1.0, 2.0)
#: Convolutions of the mask head (torchvision's MaskRCNNHeads has four).
MASK_HEAD_LAYERS = 4


def build_resnet_fpn_detector(network: str, num_classes: int, weights_backbone: str | None,
                              trainable_backbone_layers: int | None, fpn_channels: int,
                              masks: bool = False, **detector_kwargs) -> FasterRCNN:
    """Faster R-CNN (Mask R-CNN with ``masks``) on ``network`` (``resnet18`` or ``resnet34``)
    with FPN levels P2-P6."""
    weights = _backbone_weights(network, weights_backbone)
    norm = misc_nn_ops.FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d
    body = torchvision.models.get_model(network, weights=weights, norm_layer=norm)
    trainable = len(_FREEZE_ORDER) if weights is None else (
        3 if trainable_backbone_layers is None else trainable_backbone_layers)
    if not 0 <= trainable <= len(_FREEZE_ORDER):
        raise ConfigError(f"model.trainable_backbone_layers: need 0..{len(_FREEZE_ORDER)}, "
                          f"got {trainable}")
    frozen = _FREEZE_ORDER[:len(_FREEZE_ORDER) - trainable]
    for name, parameter in body.named_parameters():
        if name.startswith(frozen) or (trainable < len(_FREEZE_ORDER) and name.startswith("bn1")):
            parameter.requires_grad_(False)
    stage_channels = [getattr(body, stage)[-1].conv2.out_channels for stage in _STAGES]
    backbone = BackboneWithFPN(body, {stage: str(i) for i, stage in enumerate(_STAGES)},
                               stage_channels, fpn_channels, extra_blocks=LastLevelMaxPool())
    anchors = AnchorGenerator(DEFAULT_ANCHOR_SIZES, (ASPECT_RATIOS,) * len(DEFAULT_ANCHOR_SIZES))
    if masks:
        model = MaskRCNN(backbone, num_classes=num_classes, rpn_anchor_generator=anchors,
                         mask_head=MaskRCNNHeads(fpn_channels, (fpn_channels,) * MASK_HEAD_LAYERS, 1),
                         **detector_kwargs)
        # torchvision sizes its default predictor for a 256-wide head and takes no other with num_classes.
        model.roi_heads.mask_predictor = MaskRCNNPredictor(fpn_channels, fpn_channels, num_classes)
        return model
    return FasterRCNN(backbone, num_classes=num_classes, rpn_anchor_generator=anchors,
                      **detector_kwargs)


def _backbone_weights(network: str, name: str | None):
    if name is None:
        return None
    enum = torchvision.models.get_model_weights(network)
    try:
        return enum[name]
    except KeyError:
        raise ConfigError(f"model.weights_backbone: unknown weights name '{name}' for {network}; "
                          f"valid names: {list(enum.__members__)}") from None
