"""Settings of the data layer: where each split's annotations are and how training reads them.

They live with the data code that uses them, so the data layer needs nothing from the training
config above it; rockdet.training.config composes them into the whole run's config.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from rockdet.typed_yaml import ConfigPath, Settings


class SplitConfig(Settings):
    #: COCO JSON file, YOLO data YAML, or (format masks) the images folder.
    annotations: ConfigPath | None = None
    #: "synthetic": terrain scenes generated on the fly (pretraining), no files.
    format: Literal["coco", "yolo", "masks", "synthetic"] = "coco"
    #: Image folder; COCO defaults to the annotation file's folder.
    images: ConfigPath | None = None
    #: Mask folder for format masks. Beside a COCO file: its dense binary rock masks, to choose the
    #: operating point by on a ``dense`` source (default: a ``masks/`` folder found beside it), and
    #: for a mask architecture the instance masks of boxes without a segmentation (the rock pixels
    #: inside each box).
    masks: ConfigPath | None = None
    mask_mode: Literal["instance", "binary"] = "instance"
    #: YOLO split name inside the data YAML.
    split: str = "train"
    #: Read images an annotation file names outside its root (COCO: ``images``, else the file's
    #: folder; YOLO: the data YAML's ``path``) by an absolute path or ``..``. Off: such a name is
    #: found by its base name inside the root or refused, so a file from elsewhere cannot make
    #: rockdet read any file on the machine. For files you made or trust.
    allow_paths_outside: bool = False
    #: format synthetic: scenes per epoch (each epoch draws new ones; validation repeats one set)
    #: and their side in pixels.
    scenes: int = Field(2000, ge=1)
    size: int = Field(432, ge=32)
    #: A text file of image file names (one a line, as the annotations name them): only these
    #: images of the source are read, e.g. one half of a data set kept for validation.
    image_list: ConfigPath | None = None
    #: In a list of training sources: how often each image of this source is drawn, relative
    #: to an image of weight 1 (the epoch keeps the total number of images).
    weight: float = Field(1.0, gt=0)
    #: Labels are dense (every visible rock from a small size up is labelled), so precision on
    #: this source means something: ``eval.score_threshold: auto`` picks its best F1 (of mask
    #: precision and recall when the source has dense masks, else of box precision and recall).
    dense: bool = False


#: One source, or a list of sources read together (each with its own format and settings).
Sources = SplitConfig | Annotated[list[SplitConfig], Field(min_length=1)]


def source_list(sources: Sources | None) -> list[SplitConfig]:
    """The sources of a split as a list (one source is a list of one)."""
    if sources is None:
        return []
    return list(sources) if isinstance(sources, list) else [sources]


class DataConfig(Settings):
    train: Sources | None = None
    val: Sources | None = None
    rock_classes: list[str] = Field(default_factory=lambda: ["rock", "boulder"])
    #: Categories whose boxes mark ground where rocks go unlabelled (e.g. "rocky region", or a
    #: category of hand-drawn ignore boxes): training samples no background there. Two-stage
    #: archs (Faster/Mask R-CNN) only; COCO annotations.
    ignore_classes: list[str] = Field(default_factory=list)
    #: Categories of lander and rover hardware (the Chang'e ``artifact``): learnt as a class of
    #: their own, so the detector stops calling hardware rocks; predict keeps them out of the
    #: catalogs. COCO annotations; sources without such a category simply have none.
    hardware_classes: list[str] = Field(default_factory=list)
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
