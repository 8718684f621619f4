"""A torch Dataset over annotation records, in torchvision's detection target format."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from rockdet.data.records import CROWD_BOXES_KEY, IGNORE_BOXES_KEY, IGNORE_LABEL, AnnotatedImage
from rockdet.errors import DataError, ImageReadError, exception_reason
from rockdet.io.images import read_image

#: Why an image cannot train a mask architecture, after its path.
MASKS_NEEDED = ("a mask architecture needs instance masks, and this image's boxes have none (no segmentation "
                "in its annotations, no dense rock mask for it in its source's `masks` folder): give the "
                "source a `masks` folder of dense rock masks, or train a box-only arch")


def check_instance_masks(records: list[AnnotatedImage]) -> None:
    """Before training a mask architecture: every image with boxes has instance masks."""
    missing = [record for record in records if record.mask_loader is None and len(record.boxes)]
    if missing:
        raise DataError(f"{missing[0].path}: {MASKS_NEEDED} ({len(missing)} such image(s))")


class RockDataset(Dataset):
    """Yields ``(image float[3,H,W] in 0..1, {"boxes", "labels", "ignore_boxes"[, "crowd_boxes"][, "masks"]})``;
    ``crowd_boxes`` (COCO ``iscrowd`` regions) without augmentation, i.e. for evaluation."""

    def __init__(self, records: list[AnnotatedImage], transform: A.Compose | None = None,
                 with_masks: bool = False):
        self.records = records
        self.transform = transform
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        record = self.records[index]
        try:
            pixels = read_image(record.path).pixels
        except ImageReadError as exc:
            raise DataError(str(exc)) from None
        except Exception as exc:  # one broken image is one line naming it, not a worker traceback
            raise DataError(f"{record.path}: cannot decode ({exception_reason(exc, with_type=True)})") from None
        if pixels.shape[:2] != (record.height, record.width):
            raise DataError(f"{record.path}: image is {pixels.shape[1]}x{pixels.shape[0]} but the "
                            f"annotations say {record.width}x{record.height}")
        boxes = record.boxes.astype(np.float32)
        labels = record.labels
        ignore = record.ignore_boxes.astype(np.float32)
        masks = record.instance_masks() if self.with_masks else None
        if self.with_masks and masks is None and len(boxes):
            raise DataError(f"{record.path}: {MASKS_NEEDED}")
        if self.transform is not None:
            pixels, boxes, labels, masks, ignore = self._augment(pixels, boxes, labels, masks, ignore)
        target = {
            "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.as_tensor(labels, dtype=torch.int64).reshape(-1),
            IGNORE_BOXES_KEY: torch.as_tensor(ignore, dtype=torch.float32).reshape(-1, 4),
        }
        if self.transform is None:
            # COCO crowd regions, for evaluation to honour (training has them among ignore_boxes).
            target[CROWD_BOXES_KEY] = torch.as_tensor(record.crowd_boxes, dtype=torch.float32).reshape(-1, 4)
        if self.with_masks:
            height, width = pixels.shape[:2]
            target["masks"] = (torch.as_tensor(masks, dtype=torch.uint8) if masks is not None and len(masks)
                               else torch.zeros((0, height, width), dtype=torch.uint8))
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
        return image, target

    def _augment(self, pixels: np.ndarray, boxes: np.ndarray, labels: np.ndarray, masks: np.ndarray | None,
                 ignore: np.ndarray):
        # Ignore regions ride along as boxes of their own label, so flips and crops move them too.
        kwargs = {"image": pixels, "bboxes": np.concatenate([boxes, ignore]),
                  "labels": np.r_[labels, np.full(len(ignore), IGNORE_LABEL)],
                  "instance_ids": np.r_[np.arange(len(boxes)), np.full(len(ignore), -1)]}
        if masks is not None and len(masks):
            kwargs["masks"] = masks
        out = self.transform(**kwargs)
        out_labels = np.asarray(out["labels"], dtype=np.int64)
        is_rock = out_labels != IGNORE_LABEL  # rocks and hardware: the objects the model learns
        all_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        kept = np.asarray(out["instance_ids"], dtype=np.int64)[is_rock]
        new_boxes = all_boxes[is_rock]
        new_masks = None
        if masks is not None:
            height, width = out["image"].shape[:2]
            new_masks = (np.asarray(out["masks"])[kept] if len(kept)
                         else np.zeros((0, height, width), dtype=np.uint8))
        return out["image"], new_boxes, out_labels[is_rock], new_masks, all_boxes[~is_rock]


def collate_detection(batch):
    """Detection batches are lists: images differ in size and rock count."""
    images, targets = zip(*batch)
    return list(images), list(targets)
