"""Lander and rover hardware is learnt as a class of its own (``data.hardware_classes``) and kept
out of rock catalogs: a hardware box, and a rock box lying mostly inside one, give no row."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_train_overrides, write_coco
from oracle import FixedBoxes, draw_rocks, save

from rockdet.cli.main import main
from rockdet.predict.detect import detect_image
from rockdet.predict.settings import PredictSettings
from rockdet.training.config import load_config
from rockdet.training.datamodule import RockDataModule

ROOT = Path(__file__).resolve().parents[2]
CATEGORIES = [{"id": 1, "name": "artifact"}, {"id": 2, "name": "rock"}]


def write_scenes(folder: Path, count: int) -> Path:
    images, annotations = [], []
    for number in range(count):
        pixels = draw_rocks(96, 96, [(10, 60, 22, 72), (40, 70, 50, 80)])
        pixels[0:30, 50:96] = 120  # a grey mast in the corner
        save(pixels, folder / f"s{number}.png")
        images.append({"id": number + 1, "file_name": f"s{number}.png", "width": 96, "height": 96})
        for category, (x0, y0, x1, y1) in ((2, (10, 60, 22, 72)), (2, (40, 70, 50, 80)), (1, (50, 0, 96, 30))):
            annotations.append({"id": len(annotations) + 1, "image_id": number + 1, "category_id": category,
                                "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return write_coco(folder / "_annotations.coco.json", images, annotations, CATEGORIES)


def test_hardware_boxes_train_as_their_own_class_and_never_count_as_rocks(tmp_path):
    coco = write_scenes(tmp_path / "train", 2)
    data = load_config(ROOT / "configs" / "tiny_cpu.yaml",
                       [f"data.train.annotations={coco}", f"data.val.annotations={coco}",
                        "data.hardware_classes=[artifact]", "data.rock_classes=[rock]", "data.augment=none"]).data
    module = RockDataModule(data)
    module.setup("fit")
    _, target = module.train_set[0]
    assert sorted(target["labels"].tolist()) == [1, 1, 2]
    _, val_target = module.val_set[0]
    assert val_target["labels"].tolist() == [1, 1]  # validation scores the rocks only


def test_a_hardware_detection_and_the_rocks_on_it_give_no_row():
    pixels = draw_rocks(96, 96, [(10, 60, 22, 72)])
    model = FixedBoxes([(50, 0, 96, 30), (60, 5, 70, 15), (10, 60, 22, 72)], [0.9, 0.8, 0.7])
    model_labels = torch.tensor([2, 1, 1])
    forward = model.forward
    model.forward = lambda images: [{**out, "labels": model_labels} for out in forward(images)]
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.1), 96)
    assert [(r.x_min, r.y_min) for r in rocks] == [(10.0, 60.0)]


@pytest.mark.slow
def test_training_with_hardware_classes_saves_a_three_class_detector(tmp_path, capsys):
    coco = write_scenes(tmp_path / "train", 3)
    run = tmp_path / "run"
    overrides = tiny_train_overrides({"train": coco, "val": coco}, run,
                                     **{"trainer.max_steps": 1, "data.hardware_classes": "[artifact]",
                                        "data.rock_classes": "[rock]"})
    assert main(["train", "--config", str(ROOT / "configs" / "tiny_cpu.yaml"), *overrides]) == 0
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert saved["model"]["num_classes"] == 3
    from rockdet.models import load_model

    model, _ = load_model(run / "checkpoints" / "last.ckpt")
    assert model.roi_heads.box_predictor.cls_score.out_features == 3



def test_a_weak_hardware_twin_never_takes_a_confident_rock():
    # torchvision scores every box for every class: a rock at 0.9 has a hardware twin at 0.06,
    # and validation ranks every box (threshold 0).
    pixels = draw_rocks(96, 96, [(10, 60, 22, 72)])
    model = FixedBoxes([(10, 60, 22, 72), (10, 60, 22, 72)], [0.9, 0.06])
    model_labels = torch.tensor([1, 2])
    forward = model.forward
    model.forward = lambda images: [{**out, "labels": model_labels} for out in forward(images)]
    rocks = detect_image(model, pixels, PredictSettings(score_threshold=0.0), 96)
    assert len(rocks) == 1 and rocks[0].score == pytest.approx(0.9)
