"""Put a trained detector into the form that runs fastest for inference, with the same outputs.

Two rewrites, both exact up to float rounding:
- Batch norm folded into the convolution before it. In eval mode a batch norm is a fixed
  per-channel scale and shift, so it can live in the convolution's weights and bias; that removes a
  full pass over every activation map (MobileNetV3 has 46 of them, ResNet-50 53).
- Channels-last memory layout. oneDNN (CPU) and cuDNN (GPU) run convolutions, depthwise ones
  above all, much faster on NHWC tensors; the first convolution converts the input and later
  layers keep the layout.

Measured on the project's 2-core CPU: the demo detector's tiles run 1.4-1.9x faster
(docs/BENCHMARKS.md). Training never uses this form: folding freezes the batch-norm statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops.misc import FrozenBatchNorm2d

log = logging.getLogger(__name__)

_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
#: torchvision's ResNet blocks call conv1 → bn1, conv2 → bn2, conv3 → bn3 by attribute.
_RESNET_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


@dataclass
class InferenceForm:
    folded_norms: int
    channels_last: bool

    def describe(self) -> str:
        layout = "channels-last layout" if self.channels_last else "default layout"
        return f"{self.folded_norms} batch norms folded into convolutions, {layout}"


def to_inference_form(model: nn.Module, channels_last: bool = True) -> InferenceForm:
    """Rewrite ``model`` in place (it is put in eval mode) and say what was done."""
    model.eval()
    with torch.no_grad():
        folded = _fold_norms(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    form = InferenceForm(folded, channels_last)
    log.info("model in inference form: %s", form.describe())
    return form


def _fold_norms(module: nn.Module) -> int:
    folded = 0
    # Both run their children in order; the backbone body also hands some outputs on by name,
    # and a convolution whose output leaves that way keeps its batch norm apart.
    if isinstance(module, (nn.Sequential, IntermediateLayerGetter)):
        handed_on = getattr(module, "return_layers", {})
        children = list(module._modules.items())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if conv_name not in handed_on and _foldable(conv, norm):
                _fold_pair(module, conv_name, norm_name)
                folded += 1
    elif isinstance(module, (BasicBlock, Bottleneck)):
        for conv_name, norm_name in _RESNET_PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if _foldable(conv, norm):
                _fold_pair(module, conv_name, norm_name)
                folded += 1
    for child in module.children():
        folded += _fold_norms(child)
    return folded


def _foldable(conv, norm) -> bool:
    # A batch norm without running statistics normalises with the batch's own, even in eval.
    return (isinstance(conv, nn.Conv2d) and isinstance(norm, _NORMS)
            and getattr(norm, "running_mean", None) is not None
            and norm.running_mean.numel() == conv.out_channels)


def _fold_pair(parent: nn.Module, conv_name: str, norm_name: str) -> None:
    conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_mean)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    fused_weight, fused_bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean,
                                                    norm.running_var, norm.eps, weight, bias)
    conv.weight, conv.bias = fused_weight, fused_bias
    setattr(parent, norm_name, nn.Identity())
