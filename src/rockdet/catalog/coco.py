"""A predict batch's rocks as one COCO file, for labelling tools to import as pre-annotations.

CVAT ("COCO 1.0" import) and Label Studio (COCO import via its converter) read boxes from
``bbox`` [x, y, width, height] and match images by ``file_name``, here each image's path
relative to the folder it was found in (its catalog key). Scores are kept on every annotation,
so a reviewer can sort by them; the corrected export is read back by ``rockdet train`` as any
COCO file (data/coco.py also finds images Label Studio renamed on upload).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rockdet.atomic import write_json_atomic

ROCK_CATEGORY = {"id": 1, "name": "rock", "supercategory": "terrain"}


def predictions_as_coco(catalogs: Iterable) -> dict[str, Any]:
    """COCO document from catalogs (anything with key, width, height and rock rows, such as a
    batch's digests), images and annotations numbered from 1."""
    images, annotations = [], []
    for image_id, catalog in enumerate(catalogs, start=1):
        images.append({"id": image_id, "file_name": catalog.key, "width": catalog.width, "height": catalog.height})
        for rock in catalog.rows:
            width, height = rock["x_max"] - rock["x_min"], rock["y_max"] - rock["y_min"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": ROCK_CATEGORY["id"],
                                "bbox": [rock["x_min"], rock["y_min"], width, height], "area": width * height,
                                "iscrowd": 0, "segmentation": [], "score": rock["score"],
                                "attributes": {"rock_id": rock["rock_id"], "score": rock["score"]}})
    return {"info": {"description": "rockdet predictions (pre-annotations)"},
            "images": images, "annotations": annotations, "categories": [ROCK_CATEGORY]}


def write_predictions_coco(catalogs: Iterable, path: Path) -> Path:
    write_json_atomic(path, predictions_as_coco(catalogs))
    return path
