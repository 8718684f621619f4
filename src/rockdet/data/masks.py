"""Mask folders: instance-id PNGs, or binary rock masks split into connected components."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rockdet.data.paths import absolute
from rockdet.data.records import AnnotatedImage, AnnotationSet, LoadReport, boxes_from_masks, sanitize_boxes
from rockdet.errors import DataError, ImageReadError
from rockdet.io.images import IMAGE_SUFFIXES, image_size

#: Binary-mode connectivity: 8 joins diagonal pixels, as a person drawing a rock would expect.
CONNECTIVITY = 8


def read_mask_folder(images_dir: Path, masks_dir: Path, mode: str = "instance") -> AnnotationSet:
    """Pair every image with ``masks_dir/<same stem>.png``; every instance is a rock."""
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder, what in ((images_dir, "image"), (masks_dir, "mask")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {what} folder not found")
    if absolute(masks_dir) == absolute(images_dir):
        raise DataError(f"{masks_dir}: the mask folder is the image folder; each image would be "
                        f"read as its own mask: give the masks a folder of their own")
    report = LoadReport(source=masks_dir)
    records = []
    for image_path in _images(images_dir, masks_dir):
        mask_path = masks_dir / image_path.relative_to(images_dir).with_suffix(".png")
        if not mask_path.is_file():
            raise DataError(f"{mask_path}: mask file not found for image {image_path.name}")
        try:
            width, height = image_size(image_path)
        except ImageReadError as exc:
            raise DataError(str(exc)) from None
        masks = read_instance_masks(mask_path, mode)
        if masks.shape[1:] != (height, width):
            raise DataError(f"{mask_path}: mask is {masks.shape[2]}x{masks.shape[1]} but image is "
                            f"{width}x{height}")
        boxes = boxes_from_masks(masks)
        keep = sanitize_boxes(boxes, width, height, report, mask_path.name)
        # Re-read on demand so a large mask folder is not held in memory.
        loader = (lambda p=mask_path, k=keep: read_instance_masks(p, mode)[k]) if len(keep) else None
        records.append(AnnotatedImage(image_path, width, height, boxes[keep], loader))
        report.add(records[-1])
    if not records:
        raise DataError(f"{images_dir}: no images found")
    return AnnotationSet(records, report)


def _images(images_dir: Path, masks_dir: Path) -> list[Path]:
    """Image files under ``images_dir``; a mask folder inside it (dataset/ and dataset/masks/)
    holds masks, not images."""
    masks = absolute(masks_dir)
    return sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not absolute(p).is_relative_to(masks))


def read_instance_masks(mask_path: Path, mode: str) -> np.ndarray:
    """uint8 [N, H, W]: one mask per instance id (mode instance) or connected component (binary)."""
    label_image = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if label_image is None:
        raise DataError(f"{mask_path}: cannot decode mask image")
    if label_image.ndim == 3:
        if mode == "instance":
            raise DataError(f"{mask_path}: instance masks must be single-channel id images")
        label_image = label_image.max(axis=2)
    if mode == "binary":
        _, label_image = cv2.connectedComponents((label_image > 0).astype(np.uint8), connectivity=CONNECTIVITY)
    ids = [i for i in np.unique(label_image) if i != 0]
    return np.stack([(label_image == i) for i in ids]).astype(np.uint8) if ids else \
        np.zeros((0, *label_image.shape[:2]), dtype=np.uint8)
