"""Build torchvision detectors for rocks, with weights from enums, the TORCH_HOME cache or files."""

from __future__ import annotations

import inspect
import logging
import urllib.error
from functools import partial
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.fcos import FCOSClassificationHead
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetClassificationHead

from rockdet.errors import CheckpointError, ConfigError, did_you_mean
from rockdet.models.archs import ARCHS, SMALL_ROCK_ARCHS, backbone_name, has_masks, is_two_stage
from rockdet.models.info import ROCK_CLASSES_WITH_BACKGROUND
from rockdet.models.resnet_fpn import build_resnet_fpn_detector
from rockdet.models.sparse_labels import enable_sparse_label_training

log = logging.getLogger(__name__)

NUM_CLASSES = ROCK_CLASSES_WITH_BACKGROUND
#: FPN width of torchvision's detectors; rockdet's own small-rock archs may be narrower.
TORCHVISION_FPN_CHANNELS = 256
_FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


def build_detector(arch: str = "fasterrcnn_mobilenet_v3_large_fpn", num_classes: int = NUM_CLASSES,
                   weights: str | None = None, weights_backbone: str | None = None,
                   min_size: int = 800, max_size: int = 1333,
                   anchor_sizes: list[list[int]] | None = None,
                   trainable_backbone_layers: int | None = None,
                   detections_per_image: int = 300, options: dict | None = None,
                   fpn_channels: int = TORCHVISION_FPN_CHANNELS,
                   background_loss_weight: float = 1.0) -> nn.Module:
    """A torchvision detector with its class head sized for ``num_classes``.

    ``background_loss_weight`` (two-stage archs only) weights background samples in training,
    for sparse labels where unlabelled rocks are taught as background.

    ``weights`` and ``weights_backbone`` take None, a torchvision enum name (``DEFAULT``,
    ``COCO_V1``, ``IMAGENET1K_V1`` ...; fetched into ``$TORCH_HOME/hub/checkpoints`` on first
    use, read from there afterwards) or a local file (a state dict or a rockdet checkpoint).
    """
    if arch not in ARCHS:
        raise ConfigError(f"unknown arch '{arch}'; choose one of {list(ARCHS)}")
    if background_loss_weight != 1.0 and not is_two_stage(arch):
        raise ConfigError(f"model.background_loss_weight: {arch} has no sampled background loss "
                          f"to weight; use a two-stage arch (Faster/Mask R-CNN)")
    weights_file, weights_enum = _split_source(weights, "weights")
    backbone_file, backbone_enum = _split_source(weights_backbone, "weights_backbone")
    kwargs = {**check_detector_options(arch, options or {}), "min_size": min_size, "max_size": max_size,
              ("box_detections_per_img" if is_two_stage(arch) else "detections_per_img"):
                  detections_per_image}
    if arch in SMALL_ROCK_ARCHS:
        if weights_enum:
            raise ConfigError(f"model.weights: {arch} has no published detector weights; give a "
                              f"local file (e.g. a synthetic-pretraining checkpoint) or null, and "
                              f"ImageNet weights through model.weights_backbone")
        build = partial(build_resnet_fpn_detector, backbone_name(arch), num_classes, backbone_enum,
                        trainable_backbone_layers, fpn_channels, has_masks(arch))
    else:
        if fpn_channels != TORCHVISION_FPN_CHANNELS:
            raise ConfigError(f"model.fpn_channels: {arch} is built by torchvision with "
                              f"{TORCHVISION_FPN_CHANNELS} channels; only {list(SMALL_ROCK_ARCHS)} "
                              f"take another width")
        if weights_enum or backbone_enum:
            kwargs["trainable_backbone_layers"] = trainable_backbone_layers
        if not weights_enum:
            kwargs["num_classes"] = num_classes
        build = partial(torchvision.models.get_model, arch, weights=weights_enum,
                        weights_backbone=None if weights_enum else backbone_enum)
    try:
        model = build(**kwargs)
    except KeyError as exc:
        raise ConfigError(f"{arch}: unknown weights name {exc}; valid names: "
                          f"{_enum_names(arch, weights_enum, backbone_enum)}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CheckpointError(f"{arch}: could not fetch weights '{weights_enum or backbone_enum}' "
                              f"({exc}); without internet, place the file in "
                              f"{torch.hub.get_dir()}/checkpoints or give a local path") from None
    if weights_enum:
        replace_class_head(model, arch, num_classes)
    if is_two_stage(arch):
        enable_sparse_label_training(model, background_loss_weight)
    return _load_files_and_anchors(model, arch, weights_file, backbone_file, anchor_sizes)


def _load_files_and_anchors(model: nn.Module, arch: str, weights_file: Path | None, backbone_file: Path | None,
            anchor_sizes: list[list[int]] | None) -> nn.Module:
    """Steps every architecture shares once built: local weight files, then anchors."""
    if weights_file:
        load_weights_file(model, weights_file)
    if backbone_file:
        load_backbone_file(model, backbone_file)
    if anchor_sizes:
        set_anchor_sizes(model, arch, anchor_sizes)
    return model


def check_detector_options(arch: str, options: dict) -> dict:
    """Reject keyword arguments the torchvision detector class does not take."""
    detection = torchvision.models.detection
    cls = {"fasterrcnn": detection.FasterRCNN, "maskrcnn": detection.MaskRCNN,
           "retinanet": detection.RetinaNet, "fcos": detection.FCOS}[arch.split("_")[0]]
    allowed = set(inspect.signature(cls.__init__).parameters) - {
        "self", "backbone", "num_classes", "min_size", "max_size", "kwargs"}
    for key in options:
        if key not in allowed:
            raise ConfigError(f"model.options.{key}: not an argument of {cls.__name__}"
                              f"{did_you_mean(key, allowed)}")
    return dict(options)


def replace_class_head(model: nn.Module, arch: str, num_classes: int) -> None:
    """Swap the pretrained class-specific layers for fresh ones sized for our classes."""
    if is_two_stage(arch):
        predictor = model.roi_heads.box_predictor
        model.roi_heads.box_predictor = FastRCNNPredictor(predictor.cls_score.in_features, num_classes)
        if has_masks(arch):
            mask_predictor = model.roi_heads.mask_predictor
            model.roi_heads.mask_predictor = MaskRCNNPredictor(
                mask_predictor.conv5_mask.in_channels, mask_predictor.conv5_mask.out_channels,
                num_classes)
    elif arch.startswith("retinanet"):
        old = model.head.classification_head
        model.head.classification_head = RetinaNetClassificationHead(
            model.backbone.out_channels, old.num_anchors, num_classes,
            norm_layer=partial(nn.GroupNorm, 32))
    else:
        old = model.head.classification_head
        model.head.classification_head = FCOSClassificationHead(
            model.backbone.out_channels, old.num_anchors, num_classes)


def set_anchor_sizes(model: nn.Module, arch: str, anchor_sizes: list[list[int]]) -> None:
    """Replace anchor sizes (one list per feature level), keeping the anchors per location."""
    owner = model.rpn if is_two_stage(arch) else model
    current = owner.anchor_generator
    if len(anchor_sizes) != len(current.sizes) or any(
            len(new) != len(old) for new, old in zip(anchor_sizes, current.sizes)):
        raise ConfigError(f"model.anchor_sizes: {arch} needs {len(current.sizes)} levels of "
                          f"{[len(s) for s in current.sizes]} sizes each, got "
                          f"{[len(s) for s in anchor_sizes]}")
    owner.anchor_generator = AnchorGenerator(tuple(tuple(s) for s in anchor_sizes),
                                             current.aspect_ratios)


def default_anchor_sizes(arch: str) -> list[list[float]]:
    """The anchor sizes ``arch`` is built with, one list per feature level."""
    model = build_detector(arch, min_size=64, max_size=64)
    owner = model.rpn if is_two_stage(arch) else model
    return [list(level) for level in owner.anchor_generator.sizes]


#: Per-class layers of the two-stage heads (rows grouped by class: 1 row per class, or 4 for box
#: deltas): a detector given more classes than the file keeps the rows of the classes they share.
CLASS_ROWS = {"roi_heads.box_predictor.cls_score.weight": 1, "roi_heads.box_predictor.cls_score.bias": 1,
              "roi_heads.box_predictor.bbox_pred.weight": 4, "roi_heads.box_predictor.bbox_pred.bias": 4,
              "roi_heads.mask_predictor.mask_fcn_logits.weight": 1, "roi_heads.mask_predictor.mask_fcn_logits.bias": 1}


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load every parameter whose name and shape match. A two-stage class head with more classes
    than the file's (a hardware class added to a rock detector) keeps the file's rows for the
    classes they share, background and rock, so the added class is the only new one; other class
    heads of other sizes are skipped."""
    state = _read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise CheckpointError(f"{path}: no parameter matches this architecture "
                              f"({len(state)} tensors in file, none with matching name and shape)")
    extended = {}
    for key, rows in CLASS_ROWS.items():
        if key in state and key in own and key not in matched and state[key].shape[1:] == own[key].shape[1:] \
                and state[key].shape[0] < own[key].shape[0] and state[key].shape[0] % rows == 0:
            grown = own[key].clone()
            grown[:state[key].shape[0]] = state[key]
            extended[key] = grown
    skipped = sorted(set(state) - set(matched) - set(extended))
    model.load_state_dict({**matched, **extended}, strict=False)
    log.info("%s: loaded %d tensors, extended %d class heads, skipped %d (%s)", path, len(matched), len(extended),
             len(skipped), ", ".join(skipped[:4]) + (" ..." if len(skipped) > 4 else ""))


def load_backbone_file(model: nn.Module, path: Path) -> None:
    """Load a classification-network state dict (e.g. ImageNet) into the detector's backbone."""
    state = _read_state_dict(path)
    body = model.backbone.body
    own = body.state_dict()
    matched = {}
    for key, value in state.items():
        # torchvision's detection bodies keep ResNet names but drop MobileNet's 'features.' level
        for candidate in (key, key.split(".", 1)[-1]):
            if candidate in own and own[candidate].shape == value.shape:
                matched[candidate] = value
                break
    if not matched:
        raise CheckpointError(f"{path}: no tensor matches the backbone of this architecture")
    body.load_state_dict(matched, strict=False)
    log.info("%s: loaded %d of %d backbone tensors", path, len(matched), len(own))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from rockdet.models.files import read_torch_file

    checkpoint = read_torch_file(Path(path))
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], dict):
        return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        return checkpoint["model"]
    return {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def _split_source(value: str | None, key: str) -> tuple[Path | None, str | None]:
    """Tell a local file from a torchvision enum name."""
    if value is None or str(value).lower() in ("", "none", "null"):
        return None, None
    text = str(value)
    if "/" in text or "\\" in text or text.endswith(_FILE_SUFFIXES) or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise CheckpointError(f"{path}: {key} file not found")
        return path, None
    return None, text


def _enum_names(arch: str, weights_enum: str | None, backbone_name: str | None) -> list[str]:
    if weights_enum:
        return list(torchvision.models.get_model_weights(arch).__members__)
    builder = torchvision.models.get_model_builder(arch)
    annotation = builder.__wrapped__.__annotations__.get("weights_backbone") \
        if hasattr(builder, "__wrapped__") else None
    for option in getattr(annotation, "__args__", ()):
        if hasattr(option, "__members__"):
            return list(option.__members__)
    return []
