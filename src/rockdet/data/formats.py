"""One entry point for every annotation format."""

from __future__ import annotations

from pathlib import Path

from rockdet.data.coco import read_coco
from rockdet.data.dense_masks import RockMasks, instance_masks_from_dense, masks_beside
from rockdet.data.masks import read_mask_folder
from rockdet.data.records import AnnotationSet
from rockdet.data.settings import SplitConfig
from rockdet.data.yolo import read_yolo
from rockdet.errors import DataError


def load_split(split: SplitConfig, rock_classes: list[str],
               ignore_classes: list[str] = (), hardware_classes: list[str] = ()) -> AnnotationSet:
    """Read one split in any supported format into the internal record format. Hardware boxes
    come from COCO categories; a source without such a category (or another format) has none."""
    if split.format == "coco":
        if split.annotations is None:
            raise DataError("coco split needs 'annotations' (the COCO JSON file)")
        loaded = read_coco(split.annotations, split.images, rock_classes, ignore_classes, hardware_classes,
                           allow_outside=split.allow_paths_outside)
        rock_masks = _coco_rock_masks(split)
        if rock_masks is not None:
            for record in loaded.records:
                if record.mask_loader is None and len(record.boxes) and rock_masks.path_for(record.path):
                    record.mask_loader = instance_masks_from_dense(rock_masks, record)
        return loaded
    if split.format == "synthetic":
        raise DataError("synthetic scenes are generated while training; there is no file to read")
    if ignore_classes:
        raise DataError(f"{split.annotations or split.images}: data.ignore_classes is read from "
                        f"COCO categories; {split.format} annotations carry no ignore regions")
    if split.format == "yolo":
        if split.annotations is None:
            raise DataError("yolo split needs 'annotations' (the data YAML)")
        return read_yolo(split.annotations, split.split, rock_classes, allow_outside=split.allow_paths_outside)
    images = split.images or split.annotations
    if images is None or split.masks is None:
        raise DataError("masks split needs 'images' and 'masks' folders")
    return read_mask_folder(images, split.masks, split.mask_mode)


def _coco_rock_masks(split: SplitConfig) -> RockMasks | None:
    """Dense rock masks of a COCO source (its ``masks`` folder, or for a ``dense`` source one
    found beside the file): they give instance masks to boxes without a segmentation."""
    if split.masks is not None:
        return RockMasks(split.masks)
    folder = masks_beside(Path(split.annotations)) if split.dense else None
    return RockMasks(folder) if folder else None


def split_from_path(path: Path, split: str = "val", masks: Path | None = None,
                    mask_mode: str = "instance", images: Path | None = None) -> SplitConfig:
    """Guess the format from a path given on the command line."""
    path = Path(path)
    if masks is not None:
        return SplitConfig(format="masks", images=path, masks=Path(masks), mask_mode=mask_mode)
    if path.suffix.lower() == ".json":
        return SplitConfig(format="coco", annotations=path, images=images)
    if path.suffix.lower() in (".yaml", ".yml"):
        return SplitConfig(format="yolo", annotations=path, split=split)
    if path.is_dir():
        candidates = sorted(path.glob("*.json"))
        if len(candidates) == 1:
            return SplitConfig(format="coco", annotations=candidates[0], images=images)
    raise DataError(f"{path}: cannot tell the annotation format; give a COCO .json, a YOLO data "
                    ".yaml, or an image folder with --masks MASK_FOLDER")
