"""Augmentation keeps boxes valid and masks aligned, and empty images are valid samples."""

import numpy as np
import pytest
import torch

from rockdet.data.dataset import RockDataset
from rockdet.data.formats import load_split
from rockdet.data.transforms import PRESETS, build_transforms
from rockdet.training.config import SplitConfig


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_augmented_boxes_stay_valid_and_match_masks(synthetic_data, preset):
    records = load_split(SplitConfig(annotations=synthetic_data["train"]), ["rock"]).records
    dataset = RockDataset(records, build_transforms(preset, crop_size=64, seed=3), with_masks=True)
    seen = 0
    for _ in range(3):
        for image, target in dataset:
            assert image.shape == (3, 64, 64) and image.dtype == torch.float32
            assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
            boxes, masks = target["boxes"], target["masks"]
            assert boxes.shape[1] == 4 and len(masks) == len(boxes) == len(target["labels"])
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 64).all() and (boxes[:, [1, 3]] <= 64).all()
            for box, mask in zip(boxes, masks):
                ys, xs = torch.nonzero(mask, as_tuple=True)
                # The box encloses its mask (crop keeps the part of the rock that is visible).
                assert len(xs) and xs.min() >= box[0] - 1 and xs.max() + 1 <= box[2] + 1
            seen += len(boxes)
    assert seen > 0


def test_image_without_rocks_is_a_valid_sample(tmp_path):
    from conftest import write_coco, write_image

    write_image(tmp_path / "blank.png", 40, 40)
    path = write_coco(tmp_path / "a.json", [{"id": 1, "file_name": "blank.png", "width": 40, "height": 40}], [])
    records = load_split(SplitConfig(annotations=path), ["rock"]).records
    image, target = RockDataset(records, build_transforms("terrain_default", crop_size=32))[0]
    assert image.shape == (3, 32, 32)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_crop_keeps_rock_pixel_size(synthetic_data):
    records = load_split(SplitConfig(annotations=synthetic_data["val"]), ["rock"]).records
    dataset = RockDataset(records, build_transforms("none", crop_size=96))
    _, target = dataset[0]
    np.testing.assert_allclose(target["boxes"].numpy(), records[0].boxes, atol=1e-4)


def _grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def test_the_colour_preset_turns_some_frames_grey_and_the_default_none():
    rng = np.random.default_rng(0)
    reddish = np.clip(rng.normal((170, 110, 80), 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
    box = {"bboxes": [(4, 4, 20, 20)], "labels": [1], "instance_ids": [0]}
    colour = build_transforms("terrain_colour", seed=0)
    default = build_transforms("terrain_default", seed=0)
    greyed = sum(_grey(colour(image=reddish, **box)["image"]) for _ in range(200))
    assert 10 <= greyed <= 60  # about 15 % of 200
    assert not any(_grey(default(image=reddish, **box)["image"]) for _ in range(50))
