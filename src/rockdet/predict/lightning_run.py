"""`rockdet predict` as a Lightning prediction run: one catalog per image, resumable, any devices.

Images are decoded in DataLoader workers and cut into tiles that are batched across images;
`Trainer.predict` runs the model on one or many devices (DDP shards the images by rank); a
prediction-writer callback merges each image's tiles and writes its catalog atomically as soon as
its last tile is back. A broken image is recorded and the batch goes on.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from rockdet.catalog.files import ImageCatalog, write_catalog
from rockdet.console import progress_interval
from rockdet.errors import RockdetError, failure_reason
from rockdet.io.images import read_image
from rockdet.io.inputs import InputImage, file_sha256
from rockdet.io.windowed import WindowedTiff, is_windowed_tiff
from rockdet.predict.detect import (
    PredictSettings,
    TileBatch,
    TileDetections,
    merge_tiles,
    run_model,
    tile_batches,
    to_image_coordinates,
)
from rockdet.predict.featureless import drop_featureless
from rockdet.predict.job import PredictRun
from rockdet.report.overlays import shrink_for_thumbnail, write_thumbnail

log = logging.getLogger(__name__)


@dataclass
class ImageMeta:
    job: InputImage
    width: int
    height: int
    sha256: str
    notes: list[str]
    #: From PDS products: pixels marked no data (never rocks), and the label's camera model.
    valid: np.ndarray | None = None
    geometry: Any = None
    geometry_problem: str | None = None
    #: Read window by window (huge tiled TIFFs): never decoded whole, so no overlay is drawn.
    windowed: bool = False
    #: The image shrunk for the report's thumbnail, and the scale applied (None: no thumbnail).
    thumbnail: np.ndarray | None = None
    thumbnail_scale: float = 1.0
    #: Why reading the image failed after its first tiles were cut (windowed frames), else None.
    failure: str | None = None


@dataclass
class Outcome:
    """What happened to one image, for summary.json."""

    image: str
    status: str  # done | skipped | failed
    reason: str | None = None
    rocks: int = 0
    notes: list[str] = field(default_factory=list)


class TileStream(IterableDataset):
    """Decodes this worker's share of the images and yields their tile batches
    (``inference.tile_batches``); images that cannot be read travel as ``failed`` outcomes."""

    def __init__(self, jobs: list[InputImage], settings: PredictSettings, input_size: int,
                 rank: int = 0, world_size: int = 1):
        self.jobs, self.settings, self.input_size = jobs, settings, input_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[TileBatch]:
        worker = get_worker_info()
        shard, shards = _shard(self.rank, self.world_size, worker.id if worker else 0,
                               worker.num_workers if worker else 0)
        failed: list[Outcome] = []
        for batch in tile_batches(self._decoded(self.jobs[shard::shards], failed), self.settings,
                                  self.input_size):
            batch.failed = failed.copy()
            failed.clear()  # in place: the decoding generator appends to this very list
            yield batch
        if failed:
            yield TileBatch(failed=failed)

    @staticmethod
    def _decoded(jobs: list[InputImage], failed: list[Outcome]) -> Iterator[tuple[ImageMeta, Any]]:
        for job in jobs:
            if is_windowed_tiff(job.path):
                yield from _windowed(job, failed)
                continue
            try:
                image = read_image(job.path)
                small, scale = shrink_for_thumbnail(image.pixels)
            except Exception as exc:  # one image, one outcome: whatever it raises is its reason
                failed.append(Outcome(job.key, "failed", failure_reason(exc)))
                continue
            yield ImageMeta(job, image.width, image.height, image.sha256, image.notes, image.valid,
                            image.geometry, image.geometry_problem, thumbnail=small,
                            thumbnail_scale=scale), image.pixels


def _windowed(job: InputImage, failed: list[Outcome]) -> Iterator[tuple[ImageMeta, WindowedTiff]]:
    """A tiled TIFF as windows: its tiles are cut (and decoded) while this generator waits at
    the yield, so the file is closed as soon as the image's last tile is out."""
    try:
        frame = WindowedTiff(job.path)
        meta = ImageMeta(job, frame.width, frame.height, file_sha256(job.path) or "", frame.notes, windowed=True)
    except Exception as exc:  # one image, one outcome
        failed.append(Outcome(job.key, "failed", failure_reason(exc)))
        return
    try:
        yield meta, GuardedWindows(frame, meta)
    finally:
        frame.close()


class GuardedWindows:
    """A windowed frame whose read errors fail its own image (``meta.failure``), not the stream:
    the tiles still to cut come back blank and its catalog is never written."""

    def __init__(self, frame: WindowedTiff, meta: ImageMeta):
        self.frame, self.meta, self.shape = frame, meta, frame.shape

    def __getitem__(self, key) -> np.ndarray:
        if self.meta.failure is None:
            try:
                return self.frame[key]
            except Exception as exc:
                self.meta.failure = failure_reason(exc)
        rows, columns = key
        y0, y1, _ = rows.indices(self.shape[0])
        x0, x1, _ = columns.indices(self.shape[1])
        return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), dtype=np.uint8)


def _shard(rank: int, world_size: int, worker: int, workers: int) -> tuple[int, int]:
    """(first index, step) of the images one decoding worker of one process takes."""
    per_process = max(1, workers)
    return rank * per_process + worker, world_size * per_process


def images_in_share(images: int, rank: int, world_size: int, workers: int) -> int:
    """How many of ``images`` one process handles, over all its decoding workers."""
    total = 0
    for worker in range(max(1, workers)):
        first, step = _shard(rank, world_size, worker, workers)
        total += len(range(first, images, step))
    return total


class PredictModule(pl.LightningModule):
    def __init__(self, model: torch.nn.Module, images: list[InputImage], run: PredictRun):
        super().__init__()
        self.model = model.eval()
        self.images, self.run = images, run

    def predict_dataloader(self) -> DataLoader:
        stream = TileStream(self.images, self.run.settings, self.run.input_size,
                            self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(stream, batch_size=None, num_workers=self.run.job.workers,
                          collate_fn=lambda batch: batch)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # tiles move to the device in run_model, metadata stays on the host

    def predict_step(self, batch: TileBatch, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        if not batch.tiles:
            return []
        settings = self.run.settings
        return drop_featureless(run_model(self.model, batch.tiles, self.device), batch.tiles,
                                [window for _, window in batch.owners], settings.sky_level, settings.sky_fraction)


class CatalogWriter(BasePredictionWriter):
    """Merges each image's tiles when the last one is back, and writes its catalog."""

    def __init__(self, run: PredictRun, images: int):
        super().__init__(write_interval="batch")
        self.run, self.images = run, images
        self.parts: dict[str, list[TileDetections]] = {}
        self.outcomes: list[Outcome] = []
        self.progress: tqdm | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        # Counted in images, not tile batches, so a long run shows how many are left and when it
        # ends. In a multi-device run the first process shows its own share.
        share = images_in_share(self.images, trainer.global_rank, trainer.world_size, self.run.job.workers)
        self.progress = tqdm(total=share, unit="image", desc="Predicting", dynamic_ncols=True,
                             disable=not trainer.is_global_zero, mininterval=progress_interval())

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.progress is not None:
            self.progress.close()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        self.outcomes += batch.failed
        for outcome in batch.failed:
            log.warning("%s: %s", outcome.image, outcome.reason)
        for (meta, window), output in zip(batch.owners, prediction):
            self.parts.setdefault(meta.job.key, []).append(
                to_image_coordinates(output, window, self.run.settings.score_threshold))
        for meta, tiles in batch.finished:
            if meta.failure is not None:  # its pixels stopped coming mid-image
                self.parts.pop(meta.job.key, None)
                log.warning("%s: %s", meta.job.key, meta.failure)
                self.outcomes.append(Outcome(meta.job.key, "failed", meta.failure))
                continue
            try:
                self._finish(meta, tiles)
            except Exception as exc:  # sizing, catalog, overlay: this image fails, the batch goes on
                self.parts.pop(meta.job.key, None)
                reason = f"writing outputs failed: {exc}" if isinstance(exc, (OSError, RockdetError)) \
                    else failure_reason(exc)
                log.warning("%s: %s", meta.job.key, reason)
                self.outcomes.append(Outcome(meta.job.key, "failed", reason))
        if self.progress is not None:
            self.progress.set_postfix(rocks=sum(o.rocks for o in self.outcomes),
                                      failed=sum(o.status == "failed" for o in self.outcomes), refresh=False)
            self.progress.update(len(batch.failed) + len(batch.finished))

    def _finish(self, meta: ImageMeta, tiles: int) -> None:
        parts = self.parts.pop(meta.job.key, [])
        run = self.run
        rocks = drop_rocks_on_no_data(merge_tiles(parts, run.settings), meta.valid)
        geometry = run.sizer(rocks, meta) if run.sizer is not None else None
        notes = meta.notes + ([geometry["geometry_note"]] if geometry and geometry.get("geometry_note") else [])
        if run.job.overlay and meta.windowed:
            notes.append("no overlay for a windowed frame (it would need the whole image in memory)")
        catalog = ImageCatalog(str(meta.job.path), meta.width, meta.height, meta.sha256, rocks,
                               with_masks=run.with_masks, with_geometry=geometry is not None,
                               context={**run.context, "source": str(meta.job.path.resolve()),
                                        "tiles": tiles, "image_notes": notes, **(geometry or {})})
        if run.job.overlay and not meta.windowed:
            from rockdet.report.overlays import write_overlay

            write_overlay(meta.job.path, rocks, run.layout.overlay_file(meta.job.key))
        if meta.thumbnail is not None:
            write_thumbnail(meta.thumbnail, meta.thumbnail_scale, rocks, run.layout.thumbnail_file(meta.job.key))
        write_catalog(catalog, partial(run.layout.catalog_file, meta.job.key), run.job.formats)
        self.outcomes.append(Outcome(meta.job.key, "done", rocks=len(rocks), notes=notes))


def drop_rocks_on_no_data(rocks: list, valid: np.ndarray | None) -> list:
    """Rocks whose box centre lies on a pixel the product marks as no data are not rocks;
    the rest are numbered again from 1."""
    if valid is None or not rocks:
        return rocks
    height, width = valid.shape
    kept = [rock for rock in rocks
            if valid[min(int((rock.y_min + rock.y_max) / 2), height - 1), min(int((rock.x_min + rock.x_max) / 2), width - 1)]]
    for number, rock in enumerate(kept, start=1):
        rock.rock_id = number
    return kept


def run_prediction(model: torch.nn.Module, images: list[InputImage], run: PredictRun
                   ) -> tuple[list[Outcome], bool]:
    """Run the model over ``images`` with Lightning; returns every process's outcomes and
    whether this is the first process (the one that writes the batch summary)."""
    writer = CatalogWriter(run, len(images))
    module = PredictModule(model, images, run)
    devices = run.job.devices
    strategy = "ddp" if isinstance(devices, int) and devices > 1 else "auto"
    # The writer's bar counts images; Lightning's would count tile batches of unknown number.
    trainer = pl.Trainer(accelerator=run.job.accelerator, devices=devices, strategy=strategy, logger=False,
                        callbacks=[writer], enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=False)
    trainer.predict(module, return_predictions=False)
    return _gather(writer.outcomes), trainer.is_global_zero


def _gather(outcomes: list[Outcome]) -> list[Outcome]:
    """Outcomes of all DDP processes (rocks stay in the catalog files, not in memory)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return outcomes
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, outcomes)
    return [outcome for part in gathered for outcome in part]


def environment() -> dict[str, str]:
    import torchvision

    from rockdet import __version__

    return {"rockdet": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pytorch_lightning": pl.__version__, "python": platform.python_version(), "numpy": np.__version__}
