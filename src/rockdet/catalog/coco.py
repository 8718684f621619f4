"""A predict batch's rocks as one COCO file, for labelling tools to import as pre-annotations.

CVAT ("COCO 1.0" import) and Label Studio (COCO import via its converter) read boxes from
``bbox`` [x, y, width, height] and match images by ``file_name``, here each image's path
relative to the folder it was found in (its catalog key). Scores are kept on every annotation,
so a reviewer can sort by them; the corrected export is read back by ``rockdet train`` as any
COCO file (data/coco.py also finds images Label Studio renamed on upload).
"""

from __future__ import annotations

from typing import Any

ROCK_CATEGORY = {"id": 1, "name": "rock", "supercategory": "terrain"}


def coco_annotation(annotation_id: int, image_id: int, rock: dict[str, Any]) -> dict[str, Any]:
    """One rock row of a catalog as a COCO annotation (its score kept, for reviewers to sort by)."""
    width, height = rock["x_max"] - rock["x_min"], rock["y_max"] - rock["y_min"]
    return {"id": annotation_id, "image_id": image_id, "category_id": ROCK_CATEGORY["id"],
            "bbox": [rock["x_min"], rock["y_min"], width, height], "area": width * height,
            "iscrowd": 0, "segmentation": [], "score": rock["score"],
            "attributes": {"rock_id": rock["rock_id"], "score": rock["score"]}}
