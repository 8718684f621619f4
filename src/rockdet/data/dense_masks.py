"""Dense binary rock masks beside a labelled split (255 = rock, read as above 127), for mask precision and
recall: one mask per image, named as the image or by its stem with ``.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from rockdet.data.records import ROCK_LABEL, pixel_corners
from rockdet.errors import DataError

#: Where a split's dense masks are looked for when no folder is given: beside the annotation
#: file, or beside the folder holding it (e.g. ``images/_annotations.coco.json`` + ``masks/``).
MASK_FOLDER_NAME = "masks"
#: A mask pixel above this grey level (of 255) is rock: masks are 0/255, and an anti-aliased
#: edge counts where it is mostly rock, as the independent checker reads it.
MASK_ROCK_ABOVE = 127


def masks_beside(annotations: Path) -> Path | None:
    """The ``masks`` folder beside a COCO file or its folder, if there is one."""
    for folder in (annotations.parent / MASK_FOLDER_NAME, annotations.parent.parent / MASK_FOLDER_NAME):
        if folder.is_dir():
            return folder
    return None


class RockMasks:
    """Reads the dense mask of an image from one folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: mask folder not found")

    def path_for(self, image: Path) -> Path | None:
        for candidate in (self.folder / image.name, self.folder / f"{image.stem}.png"):
            if candidate.is_file():
                return candidate
        return None

    def __call__(self, image: Path, width: int, height: int) -> np.ndarray | None:
        """The image's rock pixels (bool [H, W]), or None when the folder has no mask for it."""
        path = self.path_for(Path(image))
        if path is None:
            return None
        try:
            with Image.open(path) as mask:
                rock = np.asarray(mask.convert("L")) > MASK_ROCK_ABOVE
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read mask ({exc})") from None
        if rock.shape != (height, width):
            raise DataError(f"{path}: mask is {rock.shape[1]}x{rock.shape[0]}, its image {width}x{height}")
        return rock


def dense_masks_of(source) -> RockMasks | None:
    """The dense rock masks of a validation source marked ``dense``: its ``masks`` folder (a
    binary mask folder, or one given beside a COCO file), else a ``masks/`` folder beside its
    COCO file. None for sparse sources and sources without masks."""
    if not source.dense:
        return None
    if source.masks is not None and (source.format != "masks" or source.mask_mode == "binary"):
        return RockMasks(source.masks)
    if source.format == "coco" and source.annotations is not None:
        folder = masks_beside(Path(source.annotations))
        return RockMasks(folder) if folder else None
    return None


def instance_masks_from_dense(rock_masks: RockMasks, record) -> Callable[[], np.ndarray]:
    """A loader of ``record``'s instance masks (uint8 [N, H, W]) cut from its dense rock mask,
    for a mask architecture trained on boxes that come without a segmentation: a rock's mask
    is the rock pixels inside its box (touching neighbours' pixels in the box's corners
    included), a hardware box's mask the whole box. Raises DataError naming the image when
    the folder holds no mask for it."""
    def load() -> np.ndarray:
        rock = rock_masks(record.path, record.width, record.height)
        if rock is None:
            raise DataError(f"{record.path}: no dense rock mask in {rock_masks.folder} to give its "
                            f"boxes instance masks (the annotations have no segmentation)")
        masks = np.zeros((len(record.boxes), record.height, record.width), dtype=np.uint8)
        corners = pixel_corners(np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4), record.width, record.height)
        for i, ((x0, y0, x1, y1), label) in enumerate(zip(corners, record.labels)):
            masks[i, y0:y1, x0:x1] = rock[y0:y1, x0:x1] if label == ROCK_LABEL else 1
        return masks
    return load

