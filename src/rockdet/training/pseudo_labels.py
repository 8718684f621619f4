"""One pseudo-label round for sparse labels: a trained detector's confident rocks that no label
covers are added to a copy of the training COCO file, and the next training run learns them.

Rocks the labeller skipped are otherwise taught as background. The added annotations keep their
score and ``"pseudo_label": true``, so a labelling tool, or a later round, can tell them apart.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rockdet.atomic import write_json_atomic
from rockdet.data.coco import read_coco
from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.errors import DataError
from rockdet.io.output_guard import check_output_file
from rockdet.predict.hardware import on_hardware
from rockdet.predict.merge import box_ios

log = logging.getLogger(__name__)

#: A detection covering a labelled rock this much (intersection over the smaller box) is that
#: rock, not a new one.
SAME_ROCK_IOS = 0.5


@dataclass(frozen=True)
class PseudoLabelResult:
    out_path: Path
    images: int
    labelled_rocks: int
    added_rocks: int


@torch.inference_mode()
def write_pseudo_labels(model: nn.Module, coco_path: Path, out_path: Path, rock_classes: list[str],
                        min_score: float, batch_size: int = 4,
                        device: str | torch.device = "cpu") -> PseudoLabelResult:
    """Copy ``coco_path`` to ``out_path`` with the model's unlabelled rocks of score >= ``min_score``
    added under the first rock category. Image names are kept relative to the source's image
    folder (the folder of ``coco_path``): train on the result with ``images`` set to it, since
    a COCO file reads images only inside its image folder."""
    coco_path, out_path = Path(coco_path), Path(out_path)
    if out_path.resolve() == coco_path.resolve():
        raise DataError(f"{out_path}: would overwrite the labels it is made from; choose another --out")
    check_output_file(out_path)
    records = read_coco(coco_path, None, rock_classes).records  # one record per image, in order
    document = json.loads(coco_path.read_text())
    rock_category = _rock_category(coco_path, document, rock_classes)
    if not records:
        raise DataError(f"{coco_path}: lists no images, so there is nothing to pseudo-label")
    for index, entry in enumerate(document["images"]):
        if not isinstance(entry, dict) or "id" not in entry:
            raise DataError(f"{coco_path}: images[{index}] has no id, so no annotation can name it")
    model = model.to(device).eval()
    loader = DataLoader(RockDataset(records), batch_size=batch_size, collate_fn=collate_detection)
    document["annotations"] = document.get("annotations") or []
    next_id = max((a["id"] for a in document["annotations"] if isinstance(a.get("id"), int)), default=0) + 1
    added, starts = [], range(0, len(records), batch_size)
    for start, (images, targets) in zip(starts, tqdm(loader, desc="pseudo-label", unit="batch")):
        predictions = model([image.to(device) for image in images])
        for offset, (prediction, target) in enumerate(zip(predictions, targets)):
            image_entry = document["images"][start + offset]
            for box, score in _new_rocks(prediction, target["boxes"], min_score):
                x0, y0, x1, y1 = (round(float(v), 2) for v in box)
                added.append({"id": next_id, "image_id": image_entry["id"], "category_id": rock_category,
                              "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)],
                              "area": round((x1 - x0) * (y1 - y0), 2), "iscrowd": 0, "segmentation": [],
                              "score": round(float(score), 4), "pseudo_label": True})
                next_id += 1
    for entry, record in zip(document["images"], records):
        entry["file_name"] = Path(os.path.relpath(record.path, coco_path.parent)).as_posix()
    document["annotations"] = document["annotations"] + added
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_path, document)
    labelled = sum(len(r.boxes) for r in records)
    log.info("%s: %d images, %d labelled rocks, %d pseudo-labelled rocks added (score >= %.2f)",
             out_path, len(records), labelled, len(added), min_score)
    return PseudoLabelResult(out_path, len(records), labelled, len(added))


def _rock_category(path: Path, document: dict, rock_classes: list[str]):
    """Id of the first category named like a rock class: the added rocks go under it."""
    categories = document.get("categories")
    if not isinstance(categories, list):
        raise DataError(f"{path}: has no 'categories' list; pseudo-labels need a rock category to go under")
    wanted = {name.lower() for name in rock_classes}
    for category in categories:
        if isinstance(category, dict) and str(category.get("name")).lower() in wanted and "id" in category:
            return category["id"]
    names = sorted(str(c.get("name")) for c in categories if isinstance(c, dict))
    raise DataError(f"{path}: no category named one of {rock_classes} (categories: {names}); "
                    f"pseudo-labels need a rock category to go under (--rock-classes)")


def _new_rocks(prediction: dict, labelled: torch.Tensor, min_score: float):
    confident = (prediction["scores"] >= min_score) & ~on_hardware(prediction, min_score)
    boxes, scores = prediction["boxes"][confident].cpu(), prediction["scores"][confident].cpu()
    if len(labelled) and len(boxes):
        covered = (box_ios(boxes, labelled.to(boxes)) >= SAME_ROCK_IOS).any(dim=1)
        boxes, scores = boxes[~covered], scores[~covered]
    return zip(boxes, scores)
