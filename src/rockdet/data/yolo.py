"""YOLO txt labels (detect and segment variants) with class names from the data YAML."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from rockdet.data.coco import decode_segmentations
from rockdet.data.paths import within
from rockdet.data.records import AnnotatedImage, AnnotationSet, LoadReport, sanitize_boxes
from rockdet.errors import DataError, ImageReadError, exception_reason
from rockdet.io.images import IMAGE_SUFFIXES, image_size


def read_yolo(data_yaml: Path, split: str, rock_classes: list[str], allow_outside: bool = False) -> AnnotationSet:
    """Read split ``split`` (train/val/test) of an Ultralytics-style data YAML; images only from
    inside its ``path`` root unless ``allow_outside``."""
    data_yaml = Path(data_yaml)
    spec = _load_spec(data_yaml)
    names = _class_names(spec, data_yaml)
    wanted = {name.lower() for name in rock_classes}
    rock_ids = {i for i, name in names.items() if name.lower() in wanted}
    if not rock_ids:
        raise DataError(f"{data_yaml}: none of rock_classes {rock_classes} is in names "
                        f"{sorted(names.values())}")
    report = LoadReport(source=data_yaml)
    records = []
    for image_path in _split_images(spec, data_yaml, split, allow_outside):
        try:
            width, height = image_size(image_path)
        except ImageReadError as exc:
            raise DataError(str(exc)) from None
        record = _read_labels(image_path, width, height, rock_ids, names, report)
        records.append(record)
        report.add(record)
    return AnnotationSet(records, report)


def label_path_for(image_path: Path) -> Path:
    """YOLO convention: the last 'images' folder in the path becomes 'labels', suffix .txt."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_labels(image_path: Path, width: int, height: int, rock_ids: set[int],
                 names: dict[int, str], report: LoadReport) -> AnnotatedImage:
    label_path = label_path_for(image_path)
    boxes, polygons = [], []
    lines = _read_text(label_path).splitlines() if label_path.is_file() else []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise DataError(f"{label_path}:{number}: non-numeric value in '{line.strip()}'") from None
        if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0) or len(values) in (6, 7):
            raise DataError(f"{label_path}:{number}: expected 'class cx cy w h' or "
                            f"'class x1 y1 x2 y2 x3 y3 ...', got {len(values)} values")
        if not (math.isfinite(values[0]) and values[0] == int(values[0])):
            raise DataError(f"{label_path}:{number}: class {line.split()[0]!r} is not an integer")
        class_id = int(values[0])
        if class_id not in names:
            raise DataError(f"{label_path}:{number}: class {class_id} is not in the data YAML names")
        if class_id not in rock_ids:
            report.ignored_categories[names[class_id]] += 1
            continue
        if len(values) == 5:
            cx, cy, w, h = values[1] * width, values[2] * height, values[3] * width, values[4] * height
            boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            polygons.append(None)
        else:
            xy = np.asarray(values[1:], dtype=np.float64).reshape(-1, 2) * (width, height)
            boxes.append((*xy.min(axis=0), *xy.max(axis=0)))
            polygons.append([xy.ravel().tolist()])
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    keep = sanitize_boxes(boxes, width, height, report, label_path.name)
    kept_polygons = [polygons[i] for i in keep]
    loader = None
    if kept_polygons and all(p is not None for p in kept_polygons):
        loader = lambda: decode_segmentations(kept_polygons, width, height)  # noqa: E731
    return AnnotatedImage(image_path, width, height, boxes[keep], loader)


def _load_spec(data_yaml: Path) -> dict:
    if not data_yaml.is_file():
        raise DataError(f"{data_yaml}: YOLO data YAML not found")
    try:
        spec = yaml.safe_load(_read_text(data_yaml))
    except yaml.YAMLError as exc:
        raise DataError(f"{data_yaml}: not valid YAML ({exception_reason(exc)})") from None
    if not isinstance(spec, dict) or "names" not in spec:
        raise DataError(f"{data_yaml}: not a YOLO data YAML (no 'names')")
    return spec


def _class_names(spec: dict, data_yaml: Path) -> dict[int, str]:
    names = spec["names"]
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        ids = {i: int(i) for i in names if isinstance(i, int) and not isinstance(i, bool)
               or isinstance(i, str) and i.strip().isdigit()}  # Ultralytics reads '0' as 0 too
        if len(ids) == len(names):
            return {ids[i]: str(n) for i, n in names.items()}
    raise DataError(f"{data_yaml}: 'names' must be a list or a mapping of class ids (integers) to names, "
                    f"got {names!r}"[:300])


def _split_images(spec: dict, data_yaml: Path, split: str, allow_outside: bool) -> list[Path]:
    """The images of one split: folders, .txt lists, or lists of those, all inside the YAML's
    ``path`` root (data/paths.py) unless ``allow_outside``."""
    if split not in spec:
        raise DataError(f"{data_yaml}: no '{split}' split; it has "
                        f"{[k for k in ('train', 'val', 'test') if k in spec]}")
    if not isinstance(spec.get("path") or "", str):
        raise DataError(f"{data_yaml}: 'path' must be a folder name, got {spec['path']!r}")
    root = Path(spec.get("path") or ".")
    root = root if root.is_absolute() else data_yaml.parent / root
    entries = spec[split] if isinstance(spec[split], list) else [spec[split]]
    if not entries or not all(isinstance(entry, str) and entry.strip() for entry in entries):
        raise DataError(f"{data_yaml}: split '{split}' must name image folders or .txt lists, got {spec[split]!r}")
    images = []
    for entry in entries:
        location = _inside_root(root, entry, allow_outside)
        if location is None:
            raise DataError(f"{data_yaml}: split '{split}' entry {entry!r} leads outside the dataset root "
                            f"{root} (absolute or '..'): set `path:` to the folder holding the data")
        if location.is_dir():
            images += sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif location.is_file() and location.suffix == ".txt":
            images += _listed_images(location, root, allow_outside)
        else:
            raise DataError(f"{data_yaml}: split '{split}' points to {location}, which is neither a "
                            f"folder nor a .txt list" if location.exists() else
                            f"{data_yaml}: split '{split}' points to {location}, which does not exist")
    for image in images:
        if not image.is_file():
            raise DataError(f"{data_yaml}: image file not found: {image}")
    return images


def _inside_root(root: Path, entry: str, allow_outside: bool) -> Path | None:
    """``root / entry`` if inside the root; Roboflow's exports write ``../train/images`` for
    ``train/images`` beside the YAML, which Ultralytics also reads that way."""
    location = root / entry if allow_outside else within(root, entry)
    if (location is None or not location.exists()) and entry.startswith("../"):
        beside = within(root, entry[3:])
        if beside is not None and beside.exists():
            return beside
    return location


def _listed_images(list_file: Path, root: Path, allow_outside: bool) -> list[Path]:
    images = []
    for number, line in enumerate(_read_text(list_file).splitlines(), start=1):
        if not line.strip():
            continue
        image = root / line.strip() if allow_outside else within(root, line.strip())
        if image is None:
            raise DataError(f"{list_file}:{number}: image {line.strip()!r} leads outside the dataset root "
                            f"{root} (absolute or '..')")
        images.append(image)
    return images


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
