"""The detector architectures rockdet builds, and what kind each one is."""

from __future__ import annotations

#: torchvision's detectors, built by name with torchvision.models.get_model.
TORCHVISION_ARCHS = (
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)
#: Faster and Mask R-CNN on a ResNet-18/34 FPN with stride-4 features (P2), built by rockdet from
#: torchvision parts for small rocks: torchvision ships no detector on these backbones.
SMALL_ROCK_ARCHS = (
    "fasterrcnn_resnet18_fpn",
    "fasterrcnn_resnet34_fpn",
    "maskrcnn_resnet18_fpn",
    "maskrcnn_resnet34_fpn",
)
ARCHS = TORCHVISION_ARCHS + SMALL_ROCK_ARCHS


def is_two_stage(arch: str) -> bool:
    """Region-proposal detectors (RPN + RoI heads): Faster and Mask R-CNN."""
    return arch.startswith(("fasterrcnn", "maskrcnn"))


def has_masks(arch: str) -> bool:
    """Architectures that predict instance masks and need them for training."""
    return arch.startswith("maskrcnn")


def backbone_name(arch: str) -> str:
    """The torchvision classification network under one of rockdet's own architectures."""
    return arch.split("_")[1]
