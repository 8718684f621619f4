"""Small rocks and sparse labels: the stride-4 architecture, anchors derived from the data,
and ignore regions where unlabelled rocks must not be taught as background."""

import json

import albumentations as A
import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIGS, tiny_train_overrides, write_coco, write_image

from rockdet.cli.main import main
from rockdet.data.dataset import RockDataset
from rockdet.data.formats import load_split
from rockdet.errors import ConfigError, DataError
from rockdet.models import build_detector
from rockdet.models.anchors import derive_anchor_sizes, rock_sides_in_model_input
from rockdet.training.config import SplitConfig, load_config

GT = torch.tensor([[20.0, 20.0, 30.0, 30.0]])
REGION = torch.tensor([[40.0, 40.0, 64.0, 64.0]])


def small_rock_model():
    torch.manual_seed(0)
    return build_detector("fasterrcnn_resnet18_fpn", min_size=64, max_size=64, fpn_channels=32)


def test_ignore_region_turns_rpn_negatives_into_discards():
    rpn = small_rock_model().rpn
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [48.0, 48.0, 58.0, 58.0], [20.0, 20.0, 30.0, 30.0]])]
    plain, _ = rpn.assign_targets_to_anchors(anchors, [{"boxes": GT}])
    ignored, _ = rpn.assign_targets_to_anchors(anchors, [{"boxes": GT, "ignore_boxes": REGION}])
    assert plain[0].tolist() == [0.0, 0.0, 1.0]
    assert ignored[0].tolist() == [0.0, -1.0, 1.0]  # background inside the region: not sampled


def test_ignore_region_keeps_box_head_negatives_out_of_the_sample():
    heads = small_rock_model().roi_heads
    inside = torch.tensor([[40.0 + i, 44.0, 50.0 + i, 54.0] for i in range(10)])
    outside = torch.tensor([[2.0 + i, 2.0, 12.0 + i, 12.0] for i in range(5)])
    target = {"boxes": GT, "labels": torch.tensor([1])}

    def sampled_background(extra):
        proposals, _, labels, _ = heads.select_training_samples(
            [torch.cat([inside, outside])], [{**target, **extra}])
        return proposals[0][labels[0] == 0]

    assert len(sampled_background({})) == 15  # every proposal is background without regions
    kept = sampled_background({"ignore_boxes": REGION})
    assert len(kept) == 5 and (kept[:, 2] <= 20).all()


def test_ignore_regions_are_resized_with_the_image():
    model = build_detector("fasterrcnn_resnet18_fpn", min_size=128, max_size=128, fpn_channels=32)
    model.train()
    _, targets = model.transform([torch.rand(3, 64, 64)],
                                 [{"boxes": GT, "labels": torch.tensor([1]), "ignore_boxes": REGION}])
    assert targets[0]["boxes"].tolist() == [[40.0, 40.0, 60.0, 60.0]]
    assert targets[0]["ignore_boxes"].tolist() == [[80.0, 80.0, 128.0, 128.0]]


def _coco_with_region(tmp_path):
    write_image(tmp_path / "a.png", 64, 48)
    return write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
                      [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8]},
                       {"id": 2, "image_id": 1, "category_id": 4, "bbox": [30, 10, 40, 50]}],
                      [{"id": 1, "name": "rock"}, {"id": 4, "name": "rocky region"}])


def test_coco_ignore_classes_become_ignore_regions_that_follow_augmentation(tmp_path):
    path = _coco_with_region(tmp_path)
    loaded = load_split(SplitConfig(annotations=path), ["rock"], ["rocky region"])
    record = loaded.records[0]
    assert loaded.report.ignore_regions == 1 and len(record.boxes) == 1
    assert record.ignore_boxes.tolist() == [[30.0, 10.0, 64.0, 48.0]]  # clipped to the image
    flip = A.Compose([A.HorizontalFlip(p=1.0)], bbox_params=A.BboxParams(
        format="pascal_voc", label_fields=["labels", "instance_ids"]))
    _, target = RockDataset(loaded.records, flip)[0]
    assert target["boxes"].tolist() == [[54.0, 2.0, 62.0, 10.0]]
    assert target["ignore_boxes"].tolist() == [[0.0, 10.0, 34.0, 48.0]]
    assert load_split(SplitConfig(annotations=path), ["rock"]).records[0].ignore_boxes.shape == (0, 4)
    with pytest.raises(DataError, match=r"ann.json: data.ignore_classes \['rocky regoin'\] not among"):
        load_split(SplitConfig(annotations=path), ["rock"], ["rocky regoin"])


def test_ignore_classes_need_a_two_stage_arch(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"arch": "retinanet_resnet50_fpn_v2"},
                                      "data": {"ignore_classes": ["rocky region"]}}))
    with pytest.raises(ConfigError, match="c.yaml: data.ignore_classes: ignore regions need a two-stage"):
        load_config(config)


def _training_losses(background_weight):
    torch.manual_seed(0)
    model = build_detector("fasterrcnn_resnet18_fpn", min_size=64, max_size=64, fpn_channels=32,
                           background_loss_weight=background_weight).train()
    torch.manual_seed(1)  # the same sampled anchors and proposals for every weight
    image = torch.rand(3, 64, 64)
    losses = model([image], [{"boxes": GT, "labels": torch.tensor([1])}])
    return {name: value.item() for name, value in losses.items()}


def test_background_loss_weight_scales_only_the_background_terms():
    full, half, quarter = (_training_losses(w) for w in (1.0, 0.5, 0.25))
    for name in ("loss_objectness", "loss_classifier"):
        # loss(w) = (positives + w * background) / samples: linear in w, background > 0
        background = 2 * (full[name] - half[name])
        assert background > 0 and half[name] < full[name]
        assert full[name] - half[name] == pytest.approx(2 * (half[name] - quarter[name]), rel=1e-4)
        assert full[name] - background >= -1e-6  # what is left is the positives' share
    for name in ("loss_rpn_box_reg", "loss_box_reg"):
        assert half[name] == pytest.approx(full[name], rel=1e-5)


def test_background_loss_weight_is_checked_at_load_time(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"background_loss_weight": 0}}))
    with pytest.raises(ConfigError, match=r"c.yaml: model.background_loss_weight: must be greater than 0.0, got 0"):
        load_config(config)
    config.write_text(yaml.safe_dump({"model": {"arch": "fcos_resnet50_fpn", "background_loss_weight": 0.5}}))
    with pytest.raises(ConfigError, match="c.yaml: model.background_loss_weight: fcos_resnet50_fpn has no"):
        load_config(config)


def test_rock_sides_follow_the_models_resize():
    # 432 px images upsampled to 864: a 19 px rock becomes 38 px; a 100x400 image is capped by max_size
    sides = rock_sides_in_model_input(np.array([19.0, 10.0]), np.array([[432, 432], [400, 100]]),
                                      min_size=864, max_size=1000)
    assert sides.tolist() == pytest.approx([38.0, 25.0])


def test_derived_anchors_keep_the_layout_and_put_the_smallest_at_the_small_rocks():
    rocks = np.linspace(10, 200, 1000)
    fpn = derive_anchor_sizes(rocks, [[32], [64], [128], [256], [512]])
    assert fpn[0] == [round(np.quantile(rocks, 0.05))]
    assert all(b[0] == pytest.approx(2 * a[0], abs=1) for a, b in zip(fpn, fpn[1:]))  # octaves kept
    shared = derive_anchor_sizes(rocks, [[32, 64, 128, 256, 512]] * 3)
    assert shared[0] == shared[2] and shared[0][0] == round(np.quantile(rocks, 0.05))
    with pytest.raises(ValueError):
        derive_anchor_sizes(np.array([]), [[32]])


@pytest.mark.slow
def test_small_rock_arch_trains_with_auto_anchors_then_predicts(
        synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    code = main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), *tiny_train_overrides(
        synthetic_data, run_dir, **{"model.arch": "fasterrcnn_resnet18_fpn", "model.fpn_channels": 32,
                                    "model.anchor_sizes": "auto", "trainer.max_steps": 2})])
    assert code == 0
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["anchor_sizes"]
    assert len(saved) == 5 and all(len(level) == 1 and level[0] >= 2 for level in saved)
    out = tmp_path / "out"
    images = sorted(synthetic_data["val"].parent.glob("*.png"))
    assert main(["predict", "--checkpoint", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(out),
                 *map(str, images), "--score-threshold", "0.0", "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == len(images) and summary["failed"] == 0


def test_pseudo_labels_add_only_confident_unlabelled_rocks(tmp_path):
    from oracle import DarkBlobDetector, draw_rocks, save

    from rockdet.training.pseudo_labels import write_pseudo_labels

    labelled, unlabelled = (4, 4, 14, 14), (30, 20, 40, 34)
    save(draw_rocks(64, 48, [labelled, unlabelled]), tmp_path / "images" / "a.png")
    coco = write_coco(tmp_path / "images" / "ann.json",
                      [{"id": 7, "file_name": "a.png", "width": 64, "height": 48}],
                      [{"id": 3, "image_id": 7, "category_id": 1, "bbox": [4, 4, 10, 10]},
                       {"id": 4, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5]}])
    out = tmp_path / "round1" / "train.json"
    result = write_pseudo_labels(DarkBlobDetector(), coco, out, ["rock"], min_score=0.5)
    assert (result.labelled_rocks, result.added_rocks) == (1, 1)
    document = json.loads(out.read_text())
    assert [a["id"] for a in document["annotations"]] == [3, 4, 5]  # originals kept, crater too
    new = document["annotations"][-1]
    assert new["bbox"] == [30, 20, 10, 14] and new["pseudo_label"] and new["score"] == 0.9
    boxes = load_split(SplitConfig(annotations=out, images=tmp_path / "images"), ["rock"]).records[0].boxes
    assert sorted(boxes.tolist()) == [[4, 4, 14, 14], [30, 20, 40, 34]]
    assert write_pseudo_labels(DarkBlobDetector(), coco, tmp_path / "b.json", ["rock"],
                               min_score=0.95).added_rocks == 0  # the oracle's 0.9 is not enough
    with pytest.raises(DataError, match="would overwrite"):
        write_pseudo_labels(DarkBlobDetector(), coco, coco, ["rock"], min_score=0.5)


def test_synthetic_stream_is_the_same_for_a_seed_whatever_the_workers():
    from torch.utils.data import DataLoader

    from rockdet.data.dataset import collate_detection
    from rockdet.synthetic.stream import SyntheticTerrainStream

    def scenes(workers, seed=3):
        loader = DataLoader(SyntheticTerrainStream(6, 64, seed=seed), batch_size=None,
                            num_workers=workers)
        return sorted((float(image.sum()), len(target["boxes"])) for image, target in loader)

    single = scenes(0)
    assert single == scenes(2)  # each worker takes every second scene: the same six in all
    assert single != scenes(0, seed=4)
    stream = SyntheticTerrainStream(4, 64, seed=3)
    first, second = [float(image.sum()) for image, _ in stream], [float(image.sum()) for image, _ in stream]
    assert first != second  # a new pass (epoch) draws new scenes
    fixed = SyntheticTerrainStream(4, 64, seed=3, vary=False)
    assert [float(i.sum()) for i, _ in fixed] == [float(i.sum()) for i, _ in fixed]
    images, targets = collate_detection(list(SyntheticTerrainStream(3, 64, seed=1)))
    for image, target in zip(images, targets):
        assert image.shape == (3, 64, 64) and 0 <= float(image.min()) <= float(image.max()) <= 1
        boxes = target["boxes"]
        assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
        assert (boxes >= 0).all() and (boxes <= 64).all() and len(target["labels"]) == len(boxes)


@pytest.mark.slow
def test_synthetic_pretraining_checkpoint_starts_a_fine_tune(synthetic_data, tmp_path):
    pretrain = tmp_path / "pretrain"
    overrides = {"model.min_size": 64, "model.max_size": 64, "model.fpn_channels": 32,
                 "data.train.scenes": 4, "data.train.size": 64, "data.val.scenes": 2,
                 "data.val.size": 64, "data.batch_size": 2, "data.num_workers": 0,
                 "trainer.max_epochs": 1, "trainer.enable_progress_bar": "false", "run.dir": pretrain}
    assert main(["train", "--config", str(CONFIGS / "pretrain_synthetic.yaml"),
                 *[f"{k}={v}" for k, v in overrides.items()]]) == 0
    weights = pretrain / "checkpoints" / "last.ckpt"
    fine = tmp_path / "fine"
    assert main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), *tiny_train_overrides(
        synthetic_data, fine, **{"model.arch": "fasterrcnn_resnet18_fpn", "model.fpn_channels": 32,
                                 "model.anchor_sizes": "auto", "model.weights": weights,
                                 "trainer.max_steps": 1})]) == 0
    start = torch.load(weights, weights_only=True)["state_dict"]
    tuned = torch.load(fine / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    key = "model.backbone.body.layer4.1.conv2.weight"
    # One step of fine-tuning moves the pretrained weights a little, not to a fresh start.
    assert 0 < float((tuned[key] - start[key]).abs().max()) < 0.05
