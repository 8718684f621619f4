"""A split made of several sources (COCO, YOLO, masks, synthetic), each read by its own reader.

One model across cameras trains on, say, the Chang'e COCO export plus half of a Mars mask set:
each source keeps its own format and settings, an optional ``image_list`` that picks some of its
images, and a sampling ``weight``; the datasets they give are joined into one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, WeightedRandomSampler

from rockdet.data.formats import load_split
from rockdet.data.records import AnnotatedImage, AnnotationSet
from rockdet.data.settings import SplitConfig
from rockdet.errors import DataError


def source_name(source: SplitConfig) -> str:
    """How logs and errors name a source: its annotation file or folder."""
    if source.format == "synthetic":
        return f"synthetic scenes ({source.scenes})"
    return str(source.annotations or source.images)


def read_listed_images(path: Path) -> list[str]:
    """File names of an ``image_list`` file: one a line; blank lines and # comments skipped."""
    if not Path(path).is_file():
        raise DataError(f"{path}: image_list file not found")
    try:
        lines = Path(path).read_text().splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: image_list is not a text file") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def load_source(source: SplitConfig, rock_classes: list[str], ignore_classes: list[str] = (),
                hardware_classes: list[str] = ()) -> AnnotationSet:
    """One source's records, narrowed to its ``image_list`` when it has one."""
    loaded = load_split(source, rock_classes, ignore_classes, hardware_classes)
    if source.image_list is None:
        return loaded
    wanted = read_listed_images(source.image_list)
    by_name = {record.path.name: record for record in loaded.records}
    missing = [name for name in wanted if Path(name).name not in by_name]
    if missing:
        raise DataError(f"{source.image_list}: {len(missing)} listed image(s) are not in "
                        f"{source_name(source)}, e.g. {missing[0]}")
    records = [by_name[Path(name).name] for name in dict.fromkeys(wanted)]
    report = loaded.report
    report.images = len(records)
    report.rocks = sum(r.rock_count for r in records)
    report.hardware = sum(len(r.boxes) - r.rock_count for r in records)
    report.empty_images = sum(not r.rock_count for r in records)
    return AnnotationSet(records, report)


@dataclass
class WeightedSources(Dataset):
    """Several sources' datasets as one, each image drawn ``weight`` times as often as an image
    of weight 1 (``sampler``); ``records`` lists every annotated image (anchors, image sizes)."""

    parts: list[Dataset]
    weights: list[float]

    def __post_init__(self) -> None:
        self.joined = ConcatDataset(self.parts)

    def __len__(self) -> int:
        return len(self.joined)

    def __getitem__(self, index: int):
        return self.joined[index]

    @property
    def records(self) -> list[AnnotatedImage]:
        return [record for part in self.parts for record in getattr(part, "records", [])]

    @property
    def transforms(self) -> list:
        return [part.transform for part in self.parts if getattr(part, "transform", None) is not None]

    def sampler(self, seed: int) -> WeightedRandomSampler | None:
        """None when every weight is 1: a plain shuffle then draws each image once per epoch."""
        if all(weight == 1.0 for weight in self.weights):
            return None
        per_image = np.concatenate([np.full(len(part), weight) for part, weight in zip(self.parts, self.weights)])
        generator = torch.Generator().manual_seed(seed)
        return WeightedRandomSampler(torch.as_tensor(per_image, dtype=torch.double), num_samples=len(per_image),
                                     replacement=True, generator=generator)
