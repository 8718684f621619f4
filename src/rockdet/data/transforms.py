"""Augmentation presets, chosen by name in YAML. Resizing and normalising happen in the model."""

from __future__ import annotations

from typing import Callable

import albumentations as A

#: Share of training images turned grey by the terrain_colour preset.
COLOUR_TO_GREY = 0.15


def _photometric() -> list[A.BasicTransform]:
    """Low sun angles, exposure changes and sensor noise of terrain cameras."""
    return [
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.6),
        A.RandomGamma(gamma_limit=(70, 150), p=0.5),
        A.OneOf([A.GaussNoise(std_range=(0.01, 0.05)), A.ISONoise()], p=0.3),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.2),
    ]


def _none() -> list[A.BasicTransform]:
    return []


def _terrain_default() -> list[A.BasicTransform]:
    # No vertical flip or rotation: a terrain camera looks at the horizon, with sky up and
    # shadows cast by a sun in the sky; turning the scene upside down teaches false shading.
    return [A.HorizontalFlip(p=0.5), *_photometric()]


def _terrain_colour() -> list[A.BasicTransform]:
    # Cameras differ in colour more than in anything else the detector sees: Mastcam's Bayer
    # colour under a dusty sky, Chang'e PCAM's grey-brown, Navcam's and TCAM's grey. Hue and
    # saturation shifts and some grey frames ask the detector for rocks by shape and shading.
    return [*_terrain_default(), A.HueSaturationValue(hue_shift_limit=(-10, 10), sat_shift_limit=(-40, 30),
                                                      val_shift_limit=(0, 0), p=0.5),
            A.ToGray(num_output_channels=3, p=COLOUR_TO_GREY)]


def _nadir() -> list[A.BasicTransform]:
    # Descent and orbital views have no up: every flip and right-angle turn is realistic.
    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5), *_photometric()]


PRESETS: dict[str, Callable[[], list[A.BasicTransform]]] = {
    "none": _none,
    "terrain_default": _terrain_default,
    "nadir": _nadir,
    "terrain_colour": _terrain_colour,
}


def build_transforms(preset: str, crop_size: int | None = None, min_visibility: float = 0.3,
                     seed: int | None = None) -> A.Compose:
    """Compose the named preset; a crop (no rescale) comes first so small rocks keep their size."""
    steps = []
    if crop_size:
        steps.append(A.RandomCrop(height=crop_size, width=crop_size, pad_if_needed=True, p=1.0))
    steps += PRESETS[preset]()
    return A.Compose(
        steps,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "instance_ids"],
                                 min_visibility=min_visibility, clip=True,
                                 filter_invalid_bboxes=True),
        seed=seed,
    )
