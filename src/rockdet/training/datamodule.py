"""LightningDataModule: config → train/val dataloaders."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from rockdet.data.dataset import RockDataset, check_instance_masks, collate_detection
from rockdet.data.records import AnnotatedImage
from rockdet.data.settings import DataConfig, Sources, SplitConfig, source_list
from rockdet.data.sources import WeightedSources, load_source, source_name
from rockdet.data.transforms import build_transforms
from rockdet.errors import ConfigError, DataError
from rockdet.synthetic.stream import SyntheticScenes, SyntheticTerrainStream

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
        self.train_set = self._split(self.data.train, "train")
        self.val_set = self._split(self.data.val, "val")

    def _split(self, sources: Sources, name: str) -> Dataset:
        """One source as its dataset; several joined, synthetic scenes then indexable."""
        sources = source_list(sources)
        if len(sources) == 1:
            return self._dataset(sources[0], name, mixed=False)
        parts = [self._dataset(source, name, mixed=True) for source in sources]
        return WeightedSources(parts, [source.weight for source in sources])

    def _dataset(self, split: SplitConfig, name: str, mixed: bool) -> Dataset:
        if split.format == "synthetic":
            # Validation repeats one fixed set of scenes; training draws new ones every epoch
            # (in a mixed split: one fixed set, drawn by index beside the files).
            seed = self.seed + (name == "val")
            if mixed:
                return SyntheticScenes(split.scenes, split.size, seed=seed)
            return SyntheticTerrainStream(split.scenes, split.size, seed=seed, vary=name == "train")
        # Ignore regions and hardware shape training only; validation scores the labelled rocks.
        training = name == "train"
        loaded = load_source(split, self.data.rock_classes, self.data.ignore_classes if training else (),
                             self.data.hardware_classes if training else ())
        report = loaded.report
        if report.duplicate_images:
            raise DataError(f"{source_name(split)}: image {report.duplicate_images[0]} is listed more "
                            f"than once ({len(report.duplicate_images)} such image(s)); its rocks would be "
                            f"trained on twice. List each image once (rockdet data-report shows them all)")
        log.info("%s (%s): %d images, %d rocks, %d empty, %d boxes clipped, dropped %s, "
                 "%d ignore regions, %d hardware boxes", name, source_name(split), report.images, report.rocks,
                 report.empty_images, report.clipped_boxes, dict(report.dropped) or "none", report.ignore_regions,
                 report.hardware)
        if name == "val":
            # Validation scores boxes: a mask architecture needs no masks of its validation images.
            return RockDataset(loaded.records, None)
        if not report.rocks:
            raise ConfigError(f"{source_name(split)}: the training split has no rock of "
                              f"{self.data.rock_classes}; nothing to learn from")
        records = loaded.records
        if self.data.skip_unlabelled_images:
            records = [r for r in records if r.rock_count]
            log.info("train: data.skip_unlabelled_images leaves out %d images without a labelled "
                     "rock", len(loaded.records) - len(records))
        if self.with_masks:
            check_instance_masks(records)
        augment = build_transforms(self.data.augment, self.data.crop_size, self.data.min_visibility,
                                   seed=self.seed)
        return RockDataset(records, augment, self.with_masks)

    @property
    def train_records(self) -> list[AnnotatedImage]:
        """The training images and their labels; none for generated scenes."""
        return getattr(self.train_set, "records", [])

    def typical_image_side(self) -> int:
        """Median short side of the training images, in pixels."""
        if isinstance(self.train_set, (SyntheticTerrainStream, SyntheticScenes)):
            return self.train_set.size
        sides = sorted(min(r.width, r.height) for r in self.train_records)
        return int(sides[len(sides) // 2]) if sides else 0

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_set.sampler(self.seed) if isinstance(self.train_set, WeightedSources) else None
        shuffle = sampler is None and not isinstance(self.train_set, IterableDataset)
        return self._loader(self.train_set, shuffle=shuffle, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.data.batch_size, shuffle=shuffle, sampler=sampler,
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
    dataset = get_worker_info().dataset
    transforms = getattr(dataset, "transforms", None) or [getattr(dataset, "transform", None)]
    for number, transform in enumerate(t for t in transforms if t is not None):
        transform.set_random_seed((torch.initial_seed() + number) % 2**32)
