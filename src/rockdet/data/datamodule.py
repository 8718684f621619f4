"""LightningDataModule: config → train/val dataloaders."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.data.formats import load_split
from rockdet.data.records import AnnotatedImage
from rockdet.data.settings import DataConfig, SplitConfig
from rockdet.data.synthetic_stream import SyntheticTerrainStream
from rockdet.data.transforms import build_transforms
from rockdet.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class RockDataModule(pl.LightningDataModule):
    def __init__(self, data: DataConfig, with_masks: bool = False, seed: int = 0):
        super().__init__()
        if data.train is None or data.val is None:
            raise ConfigError("data.train and data.val must both be set to train")
        self.data = data
        self.with_masks = with_masks
        self.seed = seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set = self._dataset(self.data.train, "train")
        self.val_set = self._dataset(self.data.val, "val")

    def _dataset(self, split: SplitConfig, name: str) -> Dataset:
        if split.format == "synthetic":
            # Validation repeats one fixed set of scenes; training draws new ones every epoch.
            return SyntheticTerrainStream(split.scenes, split.size, seed=self.seed + (name == "val"),
                                          vary=name == "train")
        # Ignore regions shape training only; validation scores every labelled rock as usual.
        loaded = load_split(split, self.data.rock_classes,
                            self.data.ignore_classes if name == "train" else ())
        report = loaded.report
        if report.duplicate_images:
            raise DataError(f"{split.annotations or split.images}: image {report.duplicate_images[0]} is listed more "
                            f"than once ({len(report.duplicate_images)} such image(s)); its rocks would be "
                            f"trained on twice. List each image once (rockdet data-report shows them all)")
        log.info("%s: %d images, %d rocks, %d empty, %d boxes clipped, dropped %s, "
                 "%d ignore regions", name, report.images, report.rocks, report.empty_images,
                 report.clipped_boxes, dict(report.dropped) or "none", report.ignore_regions)
        if name == "val":
            return RockDataset(loaded.records, None, self.with_masks)
        if not report.rocks:
            raise ConfigError(f"{split.annotations}: the training split has no rock of "
                              f"{self.data.rock_classes}; nothing to learn from")
        records = loaded.records
        if self.data.skip_unlabelled_images:
            records = [r for r in records if len(r.boxes)]
            log.info("train: data.skip_unlabelled_images leaves out %d images without a labelled "
                     "rock", len(loaded.records) - len(records))
        augment = build_transforms(self.data.augment, self.data.crop_size, self.data.min_visibility,
                                   seed=self.seed)
        return RockDataset(records, augment, self.with_masks)

    @property
    def train_records(self) -> list[AnnotatedImage]:
        """The training images and their labels; none for generated scenes."""
        return getattr(self.train_set, "records", [])

    def typical_image_side(self) -> int:
        """Median short side of the training images, in pixels."""
        if isinstance(self.train_set, SyntheticTerrainStream):
            return self.train_set.size
        sides = sorted(min(r.width, r.height) for r in self.train_records)
        return int(sides[len(sides) // 2]) if sides else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=not isinstance(self.train_set, IterableDataset))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.data.batch_size, shuffle=shuffle,
                          num_workers=self.data.num_workers, collate_fn=collate_detection,
                          persistent_workers=self.data.num_workers > 0,
                          worker_init_fn=seed_augmentation_worker)


def seed_augmentation_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream.

    Every worker receives a copy of the pipeline with the same seeded random state, so N workers
    would otherwise repeat one stream N times. torch seeds each worker differently (base seed +
    worker id, the base drawn from the seeded main process), so the streams are distinct and a
    run stays reproducible for a given seed and worker count.
    """
    pl_worker_init_function(worker_id)  # what Lightning does when it adds its own hook
    transform = getattr(get_worker_info().dataset, "transform", None)
    if transform is not None:
        transform.set_random_seed(torch.initial_seed() % 2**32)
