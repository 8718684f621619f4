"""Every architecture builds and runs; weights load from enums (TORCH_HOME cache) and files."""

import pytest
import torch
import torchvision

from rockdet.errors import CheckpointError, ConfigError
from rockdet.models import build_detector
from rockdet.training.config import ARCHS


def targets_for(arch: str):
    target = {"boxes": torch.tensor([[8.0, 8.0, 30.0, 28.0]]), "labels": torch.tensor([1])}
    if arch.startswith("maskrcnn"):
        target["masks"] = torch.zeros((1, 64, 64), dtype=torch.uint8)
        target["masks"][0, 8:28, 8:30] = 1
    return [target]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_trains_and_predicts_on_tiny_input(arch):
    torch.manual_seed(0)
    model = build_detector(arch, min_size=64, max_size=64)
    model.train()
    losses = model([torch.rand(3, 64, 64)], targets_for(arch))
    loss = sum(losses.values())
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    model.eval()
    with torch.no_grad():
        (prediction,) = model([torch.rand(3, 64, 64)])
    assert prediction["boxes"].shape[1] == 4
    assert set(prediction["labels"].tolist()) <= {1}
    if arch.startswith("maskrcnn"):
        assert prediction["masks"].shape[-2:] == (64, 64)


def cached_weights(tmp_path, monkeypatch, arch):
    """Put a (random) COCO-shaped state dict where torchvision looks before downloading."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    enum = torchvision.models.get_model_weights(arch).DEFAULT
    coco_model = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=91)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(coco_model.state_dict(), cache / enum.url.rsplit("/", 1)[1])
    return coco_model


@pytest.mark.parametrize("arch", ["fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn_v2"])
def test_enum_weights_load_from_torch_home_and_head_is_replaced(tmp_path, monkeypatch, arch):
    coco_model = cached_weights(tmp_path, monkeypatch, arch)
    model = build_detector(arch, weights="DEFAULT", min_size=64, max_size=64)
    ours, theirs = model.state_dict(), coco_model.state_dict()
    first_conv = next(k for k in theirs if k.startswith("backbone.body") and k.endswith("weight"))
    assert torch.equal(ours[first_conv], theirs[first_conv])
    if arch.startswith("fasterrcnn"):
        assert model.roi_heads.box_predictor.cls_score.out_features == 2
    else:
        assert model.head.classification_head.num_classes == 2
    model.eval()
    with torch.no_grad():
        model([torch.rand(3, 64, 64)])


def test_local_state_dict_and_rockdet_checkpoint_files(tmp_path):
    source = build_detector(min_size=64, max_size=64)
    state_file = tmp_path / "weights.pth"
    torch.save(source.state_dict(), state_file)
    loaded = build_detector(weights=str(state_file), min_size=64, max_size=64)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    checkpoint = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, checkpoint)
    from_checkpoint = build_detector(weights=str(checkpoint), min_size=64, max_size=64)
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.equal(from_checkpoint.state_dict()[key], source.state_dict()[key])


def test_local_backbone_file(tmp_path):
    classifier = torchvision.models.mobilenet_v3_large()
    path = tmp_path / "imagenet.pth"
    torch.save(classifier.state_dict(), path)
    model = build_detector(weights_backbone=str(path), min_size=64, max_size=64)
    assert torch.equal(model.backbone.body.state_dict()["0.0.weight"], classifier.features[0][0].weight)


def test_weight_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown weights name 'IMAGENET1K_V9'; valid names: \['IMAGENET1K_V1'"):
        build_detector(weights_backbone="IMAGENET1K_V9")
    with pytest.raises(CheckpointError, match=r"nothing.pth: weights file not found"):
        build_detector(weights=str(tmp_path / "nothing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk.pth: not a readable PyTorch checkpoint"):
        build_detector(weights=str(junk))
    other = tmp_path / "other.pth"
    torch.save({"x.weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match=r"other.pth: no parameter matches this architecture"):
        build_detector(weights=str(other))


def test_anchor_sizes_and_detector_options():
    model = build_detector(anchor_sizes=[[8, 16, 32, 64, 128]] * 3,
                           options={"rpn_post_nms_top_n_test": 50})
    assert model.rpn.anchor_generator.sizes[0] == (8, 16, 32, 64, 128)
    assert model.rpn._post_nms_top_n["testing"] == 50
    with pytest.raises(ConfigError, match=r"anchor_sizes: fasterrcnn_mobilenet_v3_large_fpn needs 3 levels"):
        build_detector(anchor_sizes=[[8]])
    with pytest.raises(ConfigError, match=r"options.rpn_post_nms_topn_test: not an argument of FasterRCNN "
                                          r"\(did you mean 'rpn_post_nms_top_n_test'\?\)"):
        build_detector(options={"rpn_post_nms_topn_test": 5})


def with_trained_looking_norms(model, frozen: bool):
    """Random batch-norm statistics (a fresh model's are 0/1, which any fold leaves unchanged);
    ``frozen`` swaps in torchvision's FrozenBatchNorm2d, as pretrained backbones use."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    generator = torch.Generator().manual_seed(3)
    for parent in list(model.modules()):
        for name, norm in list(parent.named_children()):
            if not isinstance(norm, torch.nn.BatchNorm2d):
                continue
            if frozen:
                parent._modules[name] = norm = FrozenBatchNorm2d(norm.num_features, eps=norm.eps)
            channels = norm.running_mean.numel()
            norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.2)
            norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            norm.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
            norm.bias.data.copy_(torch.randn(channels, generator=generator) * 0.1)
    return model


@pytest.mark.parametrize("arch,frozen", [("fasterrcnn_mobilenet_v3_large_fpn", False),
                                         ("fasterrcnn_resnet50_fpn_v2", True),
                                         ("fcos_resnet50_fpn", False)])
def test_inference_form_gives_the_same_detections(arch, frozen):
    import copy

    from rockdet.models import to_inference_form

    torch.manual_seed(0)
    model = with_trained_looking_norms(build_detector(arch, min_size=96, max_size=96), frozen).eval()
    norms = sum(type(m).__name__ in ("BatchNorm2d", "FrozenBatchNorm2d") for m in model.modules())
    # Keep every candidate so the comparison covers many boxes, not the few above 0.05.
    for holder in (model, getattr(model, "roi_heads", None)):
        if holder is not None and hasattr(holder, "score_thresh"):
            holder.score_thresh = 0.0
    fast = copy.deepcopy(model)
    form = to_inference_form(fast)
    assert form.folded_norms == norms > 0 and form.channels_last
    assert not any(type(m).__name__ in ("BatchNorm2d", "FrozenBatchNorm2d") for m in fast.modules())
    images = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        features, fast_features = model.backbone(torch.stack(images)), fast.backbone(torch.stack(images))
        expected, got = model(images), fast(images)
    for level in features:  # float rounding only: a millionth of the features' range
        scale = features[level].abs().max()
        assert (features[level] - fast_features[level]).abs().max() <= 1e-5 * scale
    for want, have in zip(expected, got):
        assert len(want["boxes"]) == len(have["boxes"]) > 0
        assert torch.allclose(want["scores"], have["scores"], atol=1e-4)
        assert torch.allclose(want["boxes"], have["boxes"], atol=0.05)  # pixels


def test_a_rock_detector_extended_with_a_hardware_class_keeps_its_rock_head(tmp_path):
    import torch

    from rockdet.models import build_detector

    torch.manual_seed(0)
    rocks_only = build_detector("fasterrcnn_resnet18_fpn", num_classes=2, fpn_channels=32, min_size=64, max_size=64)
    torch.save(rocks_only.state_dict(), tmp_path / "rocks.pth")
    with_hardware = build_detector("fasterrcnn_resnet18_fpn", num_classes=3, fpn_channels=32, min_size=64,
                                   max_size=64, weights=str(tmp_path / "rocks.pth"))
    old, new = rocks_only.roi_heads.box_predictor, with_hardware.roi_heads.box_predictor
    assert torch.equal(new.cls_score.weight[:2], old.cls_score.weight) and new.cls_score.weight.shape[0] == 3
    assert torch.equal(new.bbox_pred.bias[:8], old.bbox_pred.bias) and new.bbox_pred.bias.shape[0] == 12


def test_a_box_detector_starts_its_mask_rcnn_twin_and_the_mask_head_is_as_wide_as_the_fpn(tmp_path):
    torch.manual_seed(0)
    boxes_only = build_detector("fasterrcnn_resnet18_fpn", num_classes=3, fpn_channels=32, min_size=64, max_size=64)
    torch.save(boxes_only.state_dict(), tmp_path / "boxes.pth")
    with_masks = build_detector("maskrcnn_resnet18_fpn", num_classes=3, fpn_channels=32, min_size=64, max_size=64,
                                weights=str(tmp_path / "boxes.pth"))
    old, new = boxes_only.state_dict(), with_masks.state_dict()
    assert set(old) <= set(new) and all(torch.equal(new[key], value) for key, value in old.items())
    assert {key.split(".")[1] for key in set(new) - set(old)} == {"mask_head", "mask_predictor"}
    assert with_masks.roi_heads.mask_head[0][0].in_channels == 32
    assert with_masks.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    with_masks.train()
    losses = with_masks([torch.rand(3, 64, 64)], targets_for("maskrcnn_resnet18_fpn"))
    assert torch.isfinite(losses["loss_mask"]) and losses["loss_mask"] > 0
