"""COCO JSON (bbox + polygon or RLE segmentation), e.g. Roboflow exports."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
from pycocotools import mask as coco_mask

from rockdet.data.paths import within
from rockdet.data.records import (
    HARDWARE_LABEL,
    ROCK_LABEL,
    AnnotatedImage,
    AnnotationSet,
    LoadReport,
    clip_regions,
    sanitize_boxes,
)
from rockdet.errors import DataError


def read_coco(path: Path, images_dir: Path | None, rock_classes: list[str], ignore_classes: list[str] = (),
              hardware_classes: list[str] = (), allow_outside: bool = False) -> AnnotationSet:
    """Read a COCO file, keeping annotations whose category name is in ``rock_classes`` as rocks
    and those in ``ignore_classes`` as ignore regions. Images are read only from inside
    ``images_dir`` (default: the file's folder) unless ``allow_outside`` (see ``find_image``)."""
    path = Path(path)
    images_dir = Path(images_dir) if images_dir else path.parent
    data = _load_json(path)
    report = LoadReport(source=path)
    categories = {c.get("id"): str(c.get("name")) for c in data.get("categories", [])}
    wanted = {name.lower() for name in rock_classes}
    rock_ids = {cid for cid, name in categories.items() if name.lower() in wanted}
    ignore_ids = _category_ids(path, categories, ignore_classes, "ignore_classes")
    hardware_names = {name.lower() for name in hardware_classes}
    hardware_ids = {cid for cid, name in categories.items() if name.lower() in hardware_names}
    if categories and not rock_ids:
        raise DataError(f"{path}: none of rock_classes {rock_classes} is a category here; "
                        f"categories are {sorted(set(categories.values()))}")
    by_image, ignore_by_image, crowd_by_image = defaultdict(list), defaultdict(list), defaultdict(list)
    unknown_categories: Counter = Counter()
    for index, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(f"{path}: annotations[{index}] has no image_id")
        if ann.get("category_id") in rock_ids:
            (crowd_by_image if ann.get("iscrowd") else by_image)[ann["image_id"]].append(ann)
        elif ann.get("category_id") in hardware_ids:
            by_image[ann["image_id"]].append({**ann, "_rockdet_label": HARDWARE_LABEL})
        elif ann.get("category_id") in ignore_ids:
            ignore_by_image[ann["image_id"]].append(ann)
        elif categories and ann.get("category_id") not in categories:
            unknown_categories[ann.get("category_id")] += 1
        else:
            report.ignored_categories[categories.get(ann.get("category_id"), "?")] += 1
    for category_id, count in sorted(unknown_categories.items(), key=lambda item: str(item[0])):
        report.problems.append(f"category_id {category_id!r} ({count} annotation{'s' * (count > 1)}) is not "
                               f"among the categories {sorted(categories, key=str)}: not read")
    records, listed = [], Counter()
    for index, image in enumerate(data["images"]):
        try:
            file_name, width, height = image["file_name"], int(image["width"]), int(image["height"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: images[{index}] needs file_name, width and height") from None
        image_path = find_image(path, images_dir, str(file_name), f"images[{index}] ", allow_outside)
        listed[image_path.resolve()] += 1
        if listed[image_path.resolve()] == 2:
            report.duplicate_images.append(str(file_name))
        anns = by_image.get(image.get("id"), [])
        regions = [_xyxy(path, ann) for ann in ignore_by_image.get(image.get("id"), [])]
        records.append(_record(path, image_path, width, height, anns, report))
        crowd = clip_regions(np.asarray([_xyxy(path, ann) for ann in crowd_by_image.get(image.get("id"), [])]),
                             width, height)
        records[-1].crowd_boxes = crowd
        records[-1].ignore_boxes = np.concatenate([clip_regions(np.asarray(regions), width, height), crowd])
        report.add(records[-1])
    for file_name in report.duplicate_images:
        times = listed[find_image(path, images_dir, file_name, allow_outside=allow_outside).resolve()]
        report.problems.append(f"image {file_name} is listed {times} times: its rocks would count {times} times")
    return AnnotationSet(records, report)


#: Label Studio stores uploads as "<8 hex digits>-<original name>" and exports that name.
_LABEL_STUDIO_UPLOAD = re.compile(r"^[0-9a-f]{8}-(.+)$")


def find_image(path: Path, images_dir: Path, file_name: str, entry: str = "",
               allow_outside: bool = False) -> Path:
    """The image a COCO ``file_name`` names: as given under ``images_dir``, else by its base
    name (CVAT and Label Studio exports prefix folders such as ``images/``, some exports carry
    the labeller's absolute paths), else by its name before Label Studio's upload prefix.

    Only files inside ``images_dir`` are read: a ``file_name`` that leads out of it (an
    absolute path or ``..``) is found by its base name there or refused (data/paths.py), unless
    ``allow_outside`` (the split's ``allow_paths_outside``, for a file the user trusts)."""
    name = file_name.replace("\\", "/")
    base = PurePosixPath(name).name
    candidates = [images_dir / name if allow_outside else within(images_dir, name)]
    if base not in ("", ".", ".."):
        candidates.append(images_dir / base)
        upload = _LABEL_STUDIO_UPLOAD.match(base)
        if upload:
            candidates.append(images_dir / upload.group(1))
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    if candidates[0] is None:
        raise DataError(f"{path}: {entry}file_name {file_name!r} leads outside the image folder {images_dir} "
                        f"(absolute or '..') and no file {base!r} is in it: set the split's `images` to the "
                        f"folder holding the images (or allow_paths_outside: true for a file you trust)")
    raise DataError(f"{path}: image file not found: {images_dir / name}")


def _record(path: Path, image_path: Path, width: int, height: int, anns: list[dict],
            report: LoadReport) -> AnnotatedImage:
    boxes = np.asarray([_xyxy(path, ann) for ann in anns], dtype=np.float32).reshape(-1, 4)
    keep = sanitize_boxes(boxes, width, height, report, f"{image_path.name}")
    kept = [anns[i] for i in keep]
    loader = None
    if kept and all(ann.get("segmentation") for ann in kept):
        segmentations = [ann["segmentation"] for ann in kept]
        loader = lambda: decode_segmentations(segmentations, width, height)  # noqa: E731
    labels = np.asarray([ann.get("_rockdet_label", ROCK_LABEL) for ann in kept], dtype=np.int64)
    return AnnotatedImage(image_path, width, height, boxes[keep], loader,
                          box_labels=labels if (labels != ROCK_LABEL).any() else None)


def _category_ids(path: Path, categories: dict, names: list[str], key: str) -> set:
    wanted = {name.lower() for name in names}
    missing = wanted - {name.lower() for name in categories.values()}
    if categories and missing:
        raise DataError(f"{path}: data.{key} {sorted(missing)} not among the categories "
                        f"{sorted(set(categories.values()))}")
    return {cid for cid, name in categories.items() if name.lower() in wanted}


def _xyxy(path: Path, ann: dict) -> tuple[float, float, float, float]:
    bbox = ann.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise DataError(f"{path}: annotation {ann.get('id')} has a malformed bbox {bbox!r}") from None
    return x, y, x + w, y + h


def decode_segmentations(segmentations: list, width: int, height: int) -> np.ndarray:
    """Polygons or RLE (COCO style) to uint8 [N, H, W]."""
    masks = np.zeros((len(segmentations), height, width), dtype=np.uint8)
    for i, seg in enumerate(segmentations):
        if isinstance(seg, list):
            polygons = [p for p in seg if len(p) >= 6]
            if not polygons:
                continue
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = coco_mask.frPyObjects(seg, height, width)
        else:
            rle = seg
        masks[i] = coco_mask.decode(rle)
    return masks


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO file (no 'images' list)")
    return data
