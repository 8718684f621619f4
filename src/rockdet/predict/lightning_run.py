"""A batch of images as a Lightning prediction run: one catalog per image, any devices.

Images are decoded in DataLoader workers and cut into tiles that are batched across images;
`Trainer.predict` runs the detector on one or many devices (DDP shards the images by rank); a
prediction-writer callback merges each image's tiles and writes its catalog atomically as soon as
its last tile is back. A broken image is recorded and the batch goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Iterable, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rockdet.catalog.catalog import write_catalog
from rockdet.errors import RockdetError, failure_reason
from rockdet.io.images import read_image
from rockdet.io.input_list import InputImage, InputList
from rockdet.io.inputs import file_sha256
from rockdet.io.layout import OutputLayout, journal_file
from rockdet.io.windowed import WindowedTiff, is_windowed_tiff
from rockdet.predict.detect import run_model, scoring_at_least
from rockdet.predict.featureless import drop_featureless
from rockdet.predict.journal import Journal, catalog_record, entry, file_stamps, now_ns
from rockdet.predict.merge import TileDetections, merge_tiles, to_image_coordinates
from rockdet.predict.predictor import Predictor, lightning_devices
from rockdet.predict.prefetch import prefetched
from rockdet.predict.resume import made_with, made_with_digest
from rockdet.predict.settings import PredictSettings
from rockdet.predict.summary import Outcome
from rockdet.predict.tiling import TileBatch, tile_batches
from rockdet.progress import ProgressBar, ProgressLines, progress
from rockdet.report.overlays import shrink_for_thumbnail, write_overlay, write_thumbnail

log = logging.getLogger(__name__)


@dataclass
class ImageMeta:
    """One input image as decoded for the run: what its catalog needs besides its rocks."""

    image: InputImage
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
    #: Its files' sizes and times, taken before it was read, and when (predict.journal).
    stamps: dict[str, list[int]] | None = None
    stamped_at: int | None = None

    @property
    def path(self):
        return self.image.path


class TileStream(IterableDataset):
    """Decodes this worker's share of the images and yields their tile batches (tiling.tile_batches);
    images that cannot be read travel as ``failed`` outcomes."""

    def __init__(self, images: InputList, settings: PredictSettings, input_size: int, tiles_per_batch: int,
                 rank: int = 0, world_size: int = 1):
        self.images, self.settings, self.input_size = images, settings, input_size
        self.tiles_per_batch, self.rank, self.world_size = tiles_per_batch, rank, world_size

    def __iter__(self) -> Iterator[TileBatch]:
        # In the main process the next batches are decoded in a thread while the model runs;
        # DataLoader workers (--workers N) are processes of their own already.
        return self._batches() if get_worker_info() is not None else prefetched(self._batches())

    def _batches(self) -> Iterator[TileBatch]:
        worker = get_worker_info()
        shard, shards = _shard(self.rank, self.world_size, worker.id if worker else 0,
                               worker.num_workers if worker else 0)
        failed: list[Outcome] = []
        # With overlays, an image's decoded pixels travel once, beside its last tile: the overlay is
        # drawn from them, not from a second decode.
        for batch in tile_batches(self._decoded(self.images[shard::shards], failed), self.settings,
                                  self.input_size, self.tiles_per_batch,
                                  keep_pixels=self.settings.overlay):
            batch.failed = failed.copy()
            failed.clear()  # in place: the decoding generator appends to this very list
            yield batch
        if failed:
            yield TileBatch(failed=failed)

    def _decoded(self, images: Iterable[InputImage], failed: list[Outcome]) -> Iterator[tuple[ImageMeta, Any]]:
        for image in images:
            stamped_at, stamps = now_ns(), file_stamps(image.path)  # before reading: a later change shows
            if is_windowed_tiff(image.path):
                yield from _windowed(image, failed, stamps, stamped_at)
                continue
            try:
                loaded = read_image(image.path)
                small, scale = shrink_for_thumbnail(loaded.pixels)
            except Exception as exc:  # one image, one outcome: whatever it raises is its reason
                failed.append(Outcome(image.key, "failed", failure_reason(exc)))
                continue
            yield ImageMeta(image, loaded.width, loaded.height, loaded.sha256, loaded.notes, loaded.valid,
                            loaded.geometry, loaded.geometry_problem, thumbnail=small,
                            thumbnail_scale=scale, stamps=stamps, stamped_at=stamped_at), loaded.pixels


def _windowed(image: InputImage, failed: list[Outcome], stamps: dict[str, list[int]], stamped_at: int
              ) -> Iterator[tuple[ImageMeta, WindowedTiff]]:
    """A tiled TIFF as windows: its tiles are cut (and decoded) while this generator waits at
    the yield, so the file is closed as soon as the image's last tile is out."""
    try:
        frame = WindowedTiff(image.path)
        meta = ImageMeta(image, frame.width, frame.height, file_sha256(image.path) or "", frame.notes, windowed=True,
                         stamps=stamps, stamped_at=stamped_at)
    except Exception as exc:  # one image, one outcome
        failed.append(Outcome(image.key, "failed", failure_reason(exc)))
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
    def __init__(self, predictor: Predictor, images: InputList):
        super().__init__()
        self.model = predictor.detector.eval()
        self.predictor, self.images = predictor, images

    def predict_dataloader(self) -> DataLoader:
        predictor = self.predictor
        on_gpu = self.device.type == "cuda"
        stream = TileStream(self.images, predictor.settings, predictor.input_size,
                            predictor.settings.tiles_per_batch(on_gpu), self.trainer.global_rank,
                            self.trainer.world_size)
        return DataLoader(stream, batch_size=None, num_workers=predictor.settings.workers,
                          collate_fn=lambda batch: batch)

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # tiles move to the device in run_model, metadata stays on the host

    def predict_step(self, batch: TileBatch, batch_idx: int) -> list[dict[str, torch.Tensor]]:
        if not batch.tiles:
            return []
        settings = self.predictor.settings
        threshold = settings.score_threshold
        predictions = scoring_at_least(run_model(self.model, batch.tiles, self.device, threshold, settings.tta),
                                       threshold)
        return drop_featureless(predictions, batch.tiles,
                                [window for _, window in batch.owners], settings.sky_level, settings.sky_fraction)


class CatalogWriter(BasePredictionWriter):
    """Merges each image's tiles when the last one is back, and writes its catalog."""

    def __init__(self, predictor: Predictor, layout: OutputLayout, images: int):
        super().__init__(write_interval="batch")
        self.predictor, self.layout, self.images = predictor, layout, images
        self.parts: dict[str, list[TileDetections]] = {}
        self.outcomes: list[Outcome] = []
        self.progress: ProgressBar | ProgressLines | None = None
        self.rocks = self.failed = 0  # running counts for the progress line
        self.journal = Journal(layout.batch_file(journal_file(predictor.settings.shard_of)))
        #: How this run makes catalogs, as journal lines record it (a resume keeps what matches).
        self.made_with = made_with_digest(made_with(predictor.context))

    def on_predict_start(self, trainer, pl_module) -> None:
        # Counted in images, not tile batches, so a long run shows how many are left and when it
        # ends. In a multi-device run the first process shows its own share.
        share = images_in_share(self.images, trainer.global_rank, trainer.world_size, self.predictor.settings.workers)
        # Machines append to journals of their own (appends from two machines to one file on a
        # network file system can interleave).
        node = trainer.node_rank if trainer.num_nodes > 1 else None
        self.journal = Journal(self.layout.batch_file(journal_file(self.predictor.settings.shard_of, node)))
        if trainer.is_global_zero:
            self.progress = progress("Predicting", share, "image")

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.progress is not None:
            self.progress.close()
        self.journal.close()

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        first = len(self.outcomes)
        self.outcomes += batch.failed
        for outcome in batch.failed:
            log.warning("%s: %s", outcome.image, outcome.reason)
        threshold = self.predictor.settings.score_threshold
        for (meta, window), output in zip(batch.owners, prediction):
            self.parts.setdefault(meta.image.key, []).append(to_image_coordinates(output, window, threshold))
        for number, (meta, tiles) in enumerate(batch.finished):
            key = meta.image.key
            if meta.failure is None and meta.stamps is not None and file_stamps(meta.path) != meta.stamps:
                # Its catalog would record bytes other than those detected on, and a resume keep it.
                meta.failure = "the input changed while it was being read; run again to catalogue it"
            if meta.failure is not None:  # its pixels stopped coming mid-image, or changed
                self.parts.pop(key, None)
                log.warning("%s: %s", key, meta.failure)
                self.outcomes.append(Outcome(key, "failed", meta.failure))
                continue
            try:
                pixels = batch.pixels[number] if batch.pixels else None
                self.outcomes.append(self._finish(meta, tiles, pixels))
            except Exception as exc:  # sizing, catalog, overlay: this image fails, the batch goes on
                self.parts.pop(key, None)
                reason = f"writing outputs failed: {exc}" if isinstance(exc, (OSError, RockdetError)) \
                    else failure_reason(exc)
                log.warning("%s: %s", key, reason)
                self.outcomes.append(Outcome(key, "failed", reason))
        finished = self.outcomes[first:]
        for outcome in finished:
            if outcome.status == "failed":
                self.journal.record(entry(outcome.image, "failed", reason=outcome.reason))
        self.rocks += sum(o.rocks for o in finished)
        self.failed += sum(o.status == "failed" for o in finished)
        if self.progress is not None:
            self.progress.update(len(batch.failed) + len(batch.finished), rocks=self.rocks, failed=self.failed)

    def _finish(self, meta: ImageMeta, tiles: int, pixels: np.ndarray | None) -> Outcome:
        key, settings = meta.image.key, self.predictor.settings
        catalog = self.predictor.catalog_of(meta, merge_tiles(self.parts.pop(key, []), settings), tiles)
        if settings.overlay and meta.windowed:
            notes = [*catalog.context["image_notes"],
                     "no overlay for a windowed frame (it would need the whole image in memory)"]
            catalog = replace(catalog, context={**catalog.context, "image_notes": notes})
        if settings.overlay and pixels is not None and not meta.windowed:
            write_overlay(pixels, catalog.rocks, self.layout.overlay_file(key))
        if meta.thumbnail is not None:
            write_thumbnail(meta.thumbnail, meta.thumbnail_scale, catalog.rocks, self.layout.thumbnail_file(key))
        write_catalog(catalog, partial(self.layout.catalog_file, key), settings.formats)
        sized = "size_flag" in catalog.columns()
        # After the catalog's files: a journal line always names a catalog that is all there.
        self.journal.record(entry(key, "done", source=meta.path, sha256=meta.sha256, stamps=meta.stamps,
                                  stamped_at=meta.stamped_at, rocks=len(catalog.rocks),
                                  catalog=catalog_record(self.made_with, self.layout.catalog_file(key, "json"), sized)))
        return Outcome(key, "done", rocks=len(catalog.rocks), notes=list(catalog.context["image_notes"]), sized=sized)


def run_prediction(predictor: Predictor, images: InputList, layout: OutputLayout) -> tuple[list[Outcome], bool]:
    """Run the detector over ``images`` with Lightning; returns every process's outcomes and
    whether this is the first process (the one that writes the batch files)."""
    writer = CatalogWriter(predictor, layout, len(images))
    module = PredictModule(predictor, images)
    accelerator, devices = lightning_devices(predictor.settings)
    nodes = predictor.settings.num_nodes
    strategy = "ddp" if (isinstance(devices, int) and devices > 1) or nodes > 1 else "auto"
    # The writer's bar counts images; Lightning's would count tile batches of unknown number.
    trainer = pl.Trainer(accelerator=accelerator, devices=devices, num_nodes=nodes, strategy=strategy, logger=False,
                         callbacks=[writer], enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=False)
    trainer.predict(module, return_predictions=False)
    outcomes, is_main = _gather(writer.outcomes), trainer.is_global_zero
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every rank has what it needs: leave the group together, so no rank exits with the
        # group's threads still running (gloo then aborts that process at exit).
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return outcomes, is_main


def _gather(outcomes: list[Outcome]) -> list[Outcome]:
    """Outcomes (with their catalogs' digests) of all DDP processes."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return outcomes
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, outcomes)
    return [outcome for part in gathered for outcome in part]
