"""Tiled detection as library code: images → tiles → the detector → each image's rocks.

Tiles are cut at native resolution (the model's own resize then scales them exactly as it scaled
the training images), batched across images, and merged so a rock cut by a tile border is one
rock. The raw tile outputs of an image can be merged at any threshold (RawTiles): validation,
evaluate and the operating point judge exactly the catalogs predict writes.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from rockdet.catalog.rock import Rock
from rockdet.data.records import ROCK_LABEL
from rockdet.models.info import PROVISIONAL_THRESHOLD
from rockdet.predict.featureless import drop_featureless
from rockdet.predict.flip import fuse_flipped, mirrored, views_floor
from rockdet.predict.merge import merge_tiles, to_image_coordinates
from rockdet.predict.settings import PredictSettings
from rockdet.predict.tiling import Window, tile_batches


@torch.inference_mode()
def run_model(model: nn.Module, tiles: list[torch.Tensor], device: torch.device | str,
              min_score: float = 0.0, tta: str = "none") -> list[dict]:
    """The model's detections of each tile; with ``min_score``, a PyTorch detector is asked for
    none below it (see scoring_from). ``tta="flip"`` runs each tile mirrored as well, in the same
    forward pass, and fuses the two views (rockdet.predict.flip)."""
    if tta == "flip":
        on_device = [tile.to(device, non_blocking=True) for tile in tiles]
        with scoring_from(model, views_floor(min_score)):
            outputs = model(on_device + mirrored(on_device))
        return scoring_at_least(fuse_flipped(tiles, outputs), min_score)
    with scoring_from(model, min_score):
        return model([tile.to(device, non_blocking=True) for tile in tiles])


#: Threads sharing a detector take turns at it (one lock per detector): another thread's raised
#: floor must not cut the boxes this one keeps, nor be taken for the floor the model was built with.
#: Re-entrant, since a boxes-only run (boxes_only) raises the floor inside.
_FLOOR_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_FLOOR_LOCKS_GUARD = threading.Lock()


def score_floor_holder(model: nn.Module) -> nn.Module | None:
    """The part of a torchvision detector that holds its score floor (``score_thresh``): the RoI
    heads of a two-stage detector, RetinaNet or FCOS itself; None for anything else."""
    inner = getattr(model, "model", model)
    holder = getattr(inner, "roi_heads", inner)
    return holder if isinstance(getattr(holder, "score_thresh", None), float) else None


def keeping_from(min_score: float) -> float:
    """The ``score_thresh`` that keeps every score from ``min_score`` up: torchvision keeps scores
    above its floor, a catalog those at or above its threshold (float32)."""
    return float(np.nextafter(np.float32(min_score), np.float32(-np.inf)))


@contextmanager
def scoring_from(model: nn.Module, min_score: float) -> Iterator[None]:
    """A torchvision detector's own score floor raised to ``min_score`` while it runs.

    The recipe's detectors are built to keep every box down to 0.001 so that validation can rank
    them all; a catalog made at a threshold never holds the others, yet a Mask R-CNN pastes a
    tile-sized mask for each of its up to 300 detections a tile. The boxes it returns from
    ``min_score`` up are the same either way, up to float rounding: NMS only lets a higher-scoring
    box remove a lower one, and the top-k cut keeps the highest. An exported graph keeps the floor
    it was exported with (``rockdet export --score-floor``)."""
    holder = score_floor_holder(model)
    if holder is None:
        yield
        return
    with _lock_of(holder):
        built = holder.score_thresh
        if min_score <= built:
            yield
            return
        holder.score_thresh = keeping_from(min_score)
        try:
            yield
        finally:
            holder.score_thresh = built


def _lock_of(holder: nn.Module) -> threading.RLock:
    with _FLOOR_LOCKS_GUARD:
        return _FLOOR_LOCKS.setdefault(holder, threading.RLock())


#: The parts of torchvision's RoIHeads that make a Mask R-CNN's masks; with any of them None,
#: ``RoIHeads.has_mask()`` is false and the heads return boxes alone.
MASK_BRANCH = ("mask_roi_pool", "mask_head", "mask_predictor")


@contextmanager
def boxes_only(model: nn.Module) -> Iterator[None]:
    """A Mask R-CNN without its mask branch while it runs; other detectors as they are.

    Validation, `rockdet evaluate` and the operating point judge boxes, yet a Mask R-CNN built to
    rank every box (floor 0.001) pastes a tile-sized mask for each of its up to 300 detections a
    tile: 4.4 times the detection time of a Mars validation scene (docs/BENCHMARKS.md). The
    branch runs after the boxes are final, so the boxes are the same without it. Callers that
    share the model across threads take turns (the detector's lock)."""
    holder = score_floor_holder(model)
    if holder is None:
        yield
        return
    with _lock_of(holder):
        if any(getattr(holder, part, None) is None for part in MASK_BRANCH):
            yield
            return
        branch = {part: getattr(holder, part) for part in MASK_BRANCH}
        for part in MASK_BRANCH:
            setattr(holder, part, None)
        try:
            yield
        finally:
            for part, module in branch.items():
                setattr(holder, part, module)


def scoring_at_least(predictions: list[dict], min_score: float) -> list[dict]:
    """Each tile's detections scoring at least ``min_score``. A catalog made at a threshold never
    holds the others, and the per-box rules after the model (featureless black above all) cost
    time per box: a sparse-label model keeps ~300 boxes a tile down to 0.001, ~15 of them above
    its operating point."""
    if min_score <= 0:
        return predictions
    kept = []
    for prediction in predictions:
        keep = prediction["scores"] >= min_score
        kept.append(prediction if bool(keep.all()) else
                    {key: value[keep] if torch.is_tensor(value) and len(value) == len(keep) else value
                     for key, value in prediction.items()})
    return kept


@dataclass
class RawTiles:
    """One image's tile outputs before any threshold or merge: the detector's boxes (tile
    coordinates) with their tile windows. Merged at a threshold they are the image's catalog, so
    one forward pass serves every threshold (validation ranks, the operating point judges)."""

    predictions: list[dict[str, torch.Tensor]]
    windows: list[Window]

    def rocks(self, settings: PredictSettings, score_threshold: float | None = None) -> list[Rock]:
        """The rocks predict writes at ``score_threshold`` (default: the settings')."""
        threshold = settings.score_threshold if score_threshold is None else score_threshold
        return merge_tiles([to_image_coordinates(prediction, window, threshold)
                            for prediction, window in zip(self.predictions, self.windows)], settings)


def detect_raw(model: nn.Module, images: Iterable[np.ndarray], settings: PredictSettings, input_size: int,
               device: torch.device | str = "cpu", tiles_per_batch: int | None = None,
               min_score: float = 0.0, masks: bool = True) -> Iterator[RawTiles]:
    """Each image's tile outputs, in order; tiles of consecutive images share forward passes
    (``tiles_per_batch``, default the settings' for ``device``). Featureless black is dropped per
    tile here, where the tile's pixels are at hand. Detections below ``min_score`` are left out:
    the raw tiles then serve thresholds from it up. ``masks=False``: boxes alone (boxes_only)."""
    parts: dict[int, RawTiles] = {}
    per_batch = tiles_per_batch or settings.tiles_per_batch(on_gpu=str(device).startswith("cuda"))
    for batch in tile_batches(enumerate(images), settings, input_size, per_batch):
        windows = [window for _, window in batch.owners]
        with nullcontext() if masks else boxes_only(model):
            outputs = run_model(model, batch.tiles, device, min_score, settings.tta)
        outputs = scoring_at_least(outputs, min_score)
        predictions = drop_featureless(outputs, batch.tiles, windows, settings.sky_level, settings.sky_fraction)
        for (index, window), prediction in zip(batch.owners, predictions):
            raw = parts.setdefault(index, RawTiles([], []))
            raw.predictions.append({k: v.detach().cpu() for k, v in prediction.items()})
            raw.windows.append(window)
        for index, _ in batch.finished:
            yield parts.pop(index)


def detect_images(model: nn.Module, images: Iterable[np.ndarray], settings: PredictSettings,
                  input_size: int, device: torch.device | str = "cpu") -> Iterator[list[Rock]]:
    """Rocks for each 8-bit RGB image, in order, at the settings' threshold (without one, the
    provisional 0.5: a Predictor fills in the model's own)."""
    threshold = PROVISIONAL_THRESHOLD if settings.score_threshold is None else settings.score_threshold
    for raw in detect_raw(model, images, settings, input_size, device, min_score=threshold):
        yield raw.rocks(settings, threshold)


def detect_image(model: nn.Module, pixels: np.ndarray, settings: PredictSettings, input_size: int,
                 device: torch.device | str = "cpu") -> list[Rock]:
    """Rocks in one 8-bit RGB image."""
    return next(iter(detect_images(model, [pixels], settings, input_size, device)))


def as_detections(rocks: list[Rock], max_detections: int | None = None) -> dict[str, torch.Tensor]:
    """Rocks (score-sorted) in torchvision's output format, at most ``max_detections``."""
    rocks = rocks[:max_detections] if max_detections else rocks
    return {"boxes": torch.tensor([[r.x_min, r.y_min, r.x_max, r.y_max] for r in rocks],
                                  dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor([r.score for r in rocks], dtype=torch.float32),
            "labels": torch.full((len(rocks),), ROCK_LABEL, dtype=torch.int64)}


#: Settings with which validation, evaluate and the operating point merge tiles: predict's,
#: with every detection kept (metrics rank them; a catalog is merged at its own threshold).
EVALUATION_SETTINGS = PredictSettings(score_threshold=0.0)


def detect_raw_tensors(model: nn.Module, images: list[torch.Tensor], input_size: int,
                       device: torch.device | str = "cpu",
                       settings: PredictSettings = EVALUATION_SETTINGS) -> list[RawTiles]:
    """``detect_raw`` over float [3, H, W] images in 0..1 (a validation batch: its tiles share
    one forward pass per image batch). Boxes alone: validation, evaluate and the operating point
    judge boxes, so a Mask R-CNN's masks are not made."""
    pixels = [image.mul(255).round().byte().permute(1, 2, 0).cpu().numpy() for image in images]
    return list(detect_raw(model, pixels, settings, input_size, device,
                           tiles_per_batch=max(1, len(images)), masks=False))


def detect_as_predict_does(model: nn.Module, images: list[torch.Tensor], input_size: int,
                           max_detections: int, device: torch.device | str = "cpu"
                           ) -> list[dict[str, torch.Tensor]]:
    """Detections in torchvision's output format, made the way `rockdet predict` makes them:
    an image larger than ``input_size`` is cut into tiles at the training scale and merged
    across tile borders. Validation and `rockdet evaluate` use it, so their metrics describe
    the catalogs predict writes. Every detection is kept (threshold 0): metrics rank them."""
    return [as_detections(raw.rocks(EVALUATION_SETTINGS, 0.0), max_detections)
            for raw in detect_raw_tensors(model, images, input_size, device)]
