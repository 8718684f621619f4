"""Settings of the data layer: where each split's annotations are and how training reads them.

They live with the data code that uses them, so the data layer needs nothing from the training
config above it; rockdet.config composes them into the whole run's config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rockdet.typed_yaml import ConfigPath, Settings


class SplitConfig(Settings):
    #: COCO JSON file, YOLO data YAML, or (format masks) the images folder.
    annotations: ConfigPath | None = None
    #: "synthetic": terrain scenes generated on the fly (pretraining), no files.
    format: Literal["coco", "yolo", "masks", "synthetic"] = "coco"
    #: Image folder; COCO defaults to the annotation file's folder.
    images: ConfigPath | None = None
    #: Mask folder for format masks.
    masks: ConfigPath | None = None
    mask_mode: Literal["instance", "binary"] = "instance"
    #: YOLO split name inside the data YAML.
    split: str = "train"
    #: format synthetic: scenes per epoch (each epoch draws new ones; validation repeats one set)
    #: and their side in pixels.
    scenes: int = Field(2000, ge=1)
    size: int = Field(432, ge=32)


class DataConfig(Settings):
    train: SplitConfig | None = None
    val: SplitConfig | None = None
    rock_classes: list[str] = Field(default_factory=lambda: ["rock", "boulder"])
    #: Categories whose boxes mark ground where rocks go unlabelled (e.g. "rocky region", or a
    #: category of hand-drawn ignore boxes): training samples no background there. Two-stage
    #: archs (Faster/Mask R-CNN) only; COCO annotations.
    ignore_classes: list[str] = Field(default_factory=list)
    #: Train only on images with at least one labelled rock. With sparse labels an image without
    #: a single box rarely lacks rocks, and teaching all of it as background suppresses them.
    skip_unlabelled_images: bool = False
    augment: str = "terrain_default"
    #: Random crop size in pixels (no rescaling, so small rocks keep their size); None: no crop.
    crop_size: int | None = Field(None, ge=1)
    #: Boxes keeping less than this fraction of their area after a crop are dropped.
    min_visibility: float = Field(0.3, ge=0.0, le=1.0)
    batch_size: int = Field(4, ge=1)
    num_workers: int = Field(0, ge=0)
