"""Tiled inference as library code: tiles from one or many images → model → merged rocks.

Tiles are cut at native resolution (the model's own resize then scales them exactly as it scaled
the training images), batched across images, and merged so a rock cut by a tile border is one rock.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
from torch import nn

from rockdet.catalog.files import Rock
from rockdet.data.records import ROCK_LABEL
from rockdet.predict.featureless import drop_featureless
from rockdet.predict.hardware import on_hardware
from rockdet.predict.tiling import CUT_TOLERANCE_PX, Window, merge_detections, shift_boxes, tile_windows

log = logging.getLogger(__name__)

#: Mask probability above which a pixel belongs to the rock (torchvision's convention).
MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class PredictSettings:
    score_threshold: float | None = 0.5
    #: Tile size in pixels; None tiles automatically at the model's input size.
    tile: int | None = None
    overlap: float = 0.2
    #: Tiles per forward pass.
    batch_size: int = 8
    merge_threshold: float = 0.5
    merge_metric: Literal["ios", "iou"] = "ios"
    merge_method: Literal["nms", "nmm"] = "nmm"
    #: Also run the whole (downscaled) image once, for rocks larger than a tile.
    full_image_pass: bool = False
    #: One rock, one row: of two detections one of which lies at least this much inside the
    #: other (intersection over the smaller box), only the higher-scoring stays, whichever is
    #: larger (a part of a rock, or a box around a rock and its surroundings). None keeps both.
    nested_threshold: float | None = 0.8
    #: Featureless black (sky, no-data borders) holds no rocks: a detection whose box has at
    #: least ``sky_fraction`` of its pixels darker than ``sky_level`` (of 255) is dropped.
    sky_level: int = 12
    sky_fraction: float | None = 0.9


@dataclass
class TileDetections:
    """One tile's detections, already in image coordinates."""

    boxes: torch.Tensor  # [N, 4]
    scores: torch.Tensor  # [N]
    masks: list[tuple[np.ndarray, int, int]] | None  # per box: (bool crop, x0, y0) in the image
    #: The tile's window in the image (None: unknown, no box taken as cut by a tile border).
    window: Window | None = None


def training_image_size(hparams: dict) -> int:
    """Side of the images a checkpoint was trained on (crops included): the tile size that
    keeps rocks at the scale the model learned."""
    return int(hparams.get("input_size") or hparams["model"]["min_size"])


#: The operating point of a checkpoint whose ``score_threshold: auto`` was never chosen (a run
#: stopped before the end of training): the value validation reported at.
UNCHOSEN_THRESHOLD = 0.5


def stored_threshold(hparams: dict) -> float:
    """A checkpoint's operating point; an unchosen ``auto`` falls back, with a warning."""
    value = hparams.get("evaluation", {}).get("score_threshold", UNCHOSEN_THRESHOLD)
    if value == "auto":
        log.warning("the checkpoint's score_threshold: auto was never chosen (training did not finish); "
                    "using %s", UNCHOSEN_THRESHOLD)
        return UNCHOSEN_THRESHOLD
    return float(value)


def plan_windows(height: int, width: int, settings: PredictSettings, input_size: int) -> list[Window]:
    """Tiles for one image; the whole image as one window when it fits the model's input."""
    tile = settings.tile or input_size
    if settings.tile is None and max(height, width) <= input_size:
        return [(0, 0, width, height)]
    windows = tile_windows(height, width, tile, settings.overlap)
    if settings.full_image_pass and len(windows) > 1:
        windows.append((0, 0, width, height))
    return windows


def tile_padding(windows: list[Window], settings: PredictSettings, input_size: int) -> int | None:
    """Size edge tiles are padded to: only when tiling, so a small image is not enlarged."""
    return (settings.tile or input_size) if len(windows) > 1 else None


def cut_tile(pixels: np.ndarray, window: Window, pad_to: int | None) -> torch.Tensor:
    """Float [3, h, w] tile in 0..1, zero-padded to ``pad_to`` so edge tiles keep the scale."""
    x0, y0, x1, y1 = window
    crop = torch.from_numpy(np.ascontiguousarray(pixels[y0:y1, x0:x1])).permute(2, 0, 1)
    tile = crop.float().div_(255.0)
    if pad_to and (tile.shape[1] < pad_to or tile.shape[2] < pad_to) and \
            (x1 - x0, y1 - y0) != (pixels.shape[1], pixels.shape[0]):
        tile = nn.functional.pad(tile, (0, pad_to - tile.shape[2], 0, pad_to - tile.shape[1]))
    return tile


def to_image_coordinates(prediction: dict[str, torch.Tensor], window: Window,
                         score_threshold: float) -> TileDetections:
    """Keep confident rocks, drop any in the padding or on hardware, shift to image coordinates."""
    x0, y0, x1, y1 = window
    keep = (prediction["scores"] >= score_threshold) & ~on_hardware(prediction, score_threshold)
    boxes = prediction["boxes"][keep].detach().float().cpu()
    if len(boxes):
        centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (centre_x < x1 - x0) & (centre_y < y1 - y0)
        keep_idx = torch.nonzero(keep, as_tuple=True)[0][inside]
        boxes = boxes[inside]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(0, x1 - x0)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(0, y1 - y0)
    else:
        keep_idx = torch.zeros(0, dtype=torch.int64)
    masks = None
    if "masks" in prediction:
        masks = []
        probabilities = prediction["masks"][keep_idx, 0].detach().cpu()
        for box, probability in zip(boxes, probabilities):
            bx0, by0 = int(box[0]), int(box[1])
            bx1, by1 = max(bx0 + 1, math.ceil(box[2])), max(by0 + 1, math.ceil(box[3]))
            crop = (probability[by0:by1, bx0:bx1] > MASK_THRESHOLD).numpy()
            masks.append((crop, bx0 + x0, by0 + y0))
    return TileDetections(shift_boxes(boxes, (x0, y0)), prediction["scores"][keep_idx].detach().float().cpu(),
                          masks, window)


def cut_sides(parts: list[TileDetections]) -> np.ndarray | None:
    """Per box, bool [N, 4]: its left, top, right or bottom side lies on a tile border inside
    the image (the rock may go on in the neighbouring tile)."""
    if any(p.window is None for p in parts):
        return None
    width, height = max(p.window[2] for p in parts), max(p.window[3] for p in parts)
    sides = []
    for part in parts:
        x0, y0, x1, y1 = part.window
        edges = np.array([x0, y0, x1, y1], dtype=np.float64)
        inner = np.array([x0 > 0, y0 > 0, x1 < width, y1 < height])
        boxes = part.boxes.numpy().astype(np.float64).reshape(-1, 4)
        sides.append((np.abs(boxes - edges) <= CUT_TOLERANCE_PX) & inner)
    return np.concatenate(sides) if sides else np.zeros((0, 4), dtype=bool)


def merge_tiles(parts: list[TileDetections], settings: PredictSettings) -> list[Rock]:
    """All tiles of one image → one list of rocks, duplicates across tile borders merged."""
    boxes = torch.cat([p.boxes for p in parts]) if parts else torch.zeros((0, 4))
    scores = torch.cat([p.scores for p in parts]) if parts else torch.zeros(0)
    has_masks = bool(parts) and all(p.masks is not None for p in parts)
    all_masks = [m for p in parts for m in (p.masks or [])]
    if len(parts) > 1:
        boxes, scores, groups = merge_detections(boxes, scores, settings.merge_threshold,
                                                 settings.merge_metric, settings.merge_method, cut_sides(parts))
    else:
        order = scores.argsort(descending=True)
        boxes, scores, groups = boxes[order], scores[order], [[int(i)] for i in order]
    if settings.nested_threshold is not None and len(boxes) > 1:
        # Inside a tile as well as across: torchvision's per-tile NMS (IoU) keeps a box nested
        # in a larger one, since their IoU is small.
        boxes, scores, nested = merge_detections(boxes, scores, settings.nested_threshold, "ios", "nms")
        groups = [[member for index in group for member in groups[index]] for group in nested]
    rocks = []
    for rock_id, (box, score, group) in enumerate(zip(boxes.tolist(), scores.tolist(), groups), start=1):
        rock = Rock(rock_id, float(score), *(float(v) for v in box))
        if has_masks:
            describe_mask(rock, stitch_mask(box, [all_masks[i] for i in group]))
        rock.contact_x, rock.contact_y = rock.ground_contact
        rocks.append(rock)
    return rocks


def stitch_mask(box: list[float], pieces: list[tuple[np.ndarray, int, int]]) -> tuple[np.ndarray, int, int]:
    """Union of the members' mask crops, in a crop covering the merged box."""
    x0, y0 = int(box[0]), int(box[1])
    x1, y1 = max(x0 + 1, math.ceil(box[2])), max(y0 + 1, math.ceil(box[3]))
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for crop, cx, cy in pieces:
        ax0, ay0 = max(cx, x0), max(cy, y0)
        ax1, ay1 = min(cx + crop.shape[1], x1), min(cy + crop.shape[0], y1)
        if ax1 > ax0 and ay1 > ay0:
            canvas[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] |= crop[ay0 - cy:ay1 - cy, ax0 - cx:ax1 - cx]
    return canvas, x0, y0


def describe_mask(rock: Rock, mask: tuple[np.ndarray, int, int]) -> None:
    """Area, moment ellipse axes and lowest pixels (ground contact) of a rock's mask."""
    crop, x0, y0 = mask
    ys, xs = np.nonzero(crop)
    if not len(xs):  # empty mask: the box's contact point stands
        return
    rock.mask_area_px = float(len(xs))
    if len(xs) > 1:
        eigen = np.clip(np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float))), 0, None)
        # An ellipse of semi-axes a, b has variances a²/4 and b²/4 along them (+1/12 per pixel).
        rock.major_axis_px = float(4 * math.sqrt(eigen[1] + 1 / 12))
        rock.minor_axis_px = float(4 * math.sqrt(eigen[0] + 1 / 12))
    else:
        rock.major_axis_px = rock.minor_axis_px = 1.0
    lowest = ys.max()
    rock.contact_x = float(x0 + xs[ys == lowest].mean() + 0.5)
    rock.contact_y = float(y0 + lowest + 1)


@torch.inference_mode()
def run_model(model: nn.Module, tiles: list[torch.Tensor], device: torch.device | str) -> list[dict]:
    return model([tile.to(device, non_blocking=True) for tile in tiles])


@dataclass
class TileBatch:
    """Tiles of one forward pass, cut from one or more images, and whose they are."""

    tiles: list[torch.Tensor] = field(default_factory=list)
    #: Per tile: (owner of the image it was cut from, window in that image).
    owners: list[tuple[Any, Window]] = field(default_factory=list)
    #: (owner, tile count) of each image whose last tile is in this batch, in input order.
    finished: list[tuple[Any, int]] = field(default_factory=list)
    #: Owners that gave no tiles (e.g. images that could not be read), for the caller to record.
    failed: list[Any] = field(default_factory=list)


def tile_batches(images: Iterable[tuple[Any, np.ndarray]], settings: PredictSettings,
                 input_size: int) -> Iterator[TileBatch]:
    """The one tile stream of rockdet: each (owner, 8-bit RGB pixels) cut into tiles, tiles of
    consecutive images sharing batches of ``settings.batch_size``. Library calls and the
    Lightning predict run both consume it, so they tile and batch the same way."""
    batch = TileBatch()
    for owner, pixels in images:
        height, width = pixels.shape[:2]
        windows = plan_windows(height, width, settings, input_size)
        pad = tile_padding(windows, settings, input_size)
        for number, window in enumerate(windows, start=1):
            batch.tiles.append(cut_tile(pixels, window, pad))
            batch.owners.append((owner, window))
            if number == len(windows):
                batch.finished.append((owner, len(windows)))
            if len(batch.tiles) >= settings.batch_size:
                yield batch
                batch = TileBatch()
    if batch.tiles:
        yield batch


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
               device: torch.device | str = "cpu") -> Iterator[RawTiles]:
    """Each image's tile outputs, in order; tiles of consecutive images share forward passes.
    Featureless black is dropped per tile here, where the tile's pixels are at hand."""
    parts: dict[int, RawTiles] = {}
    for batch in tile_batches(enumerate(images), settings, input_size):
        windows = [window for _, window in batch.owners]
        predictions = drop_featureless(run_model(model, batch.tiles, device), batch.tiles, windows,
                                       settings.sky_level, settings.sky_fraction)
        for (index, window), prediction in zip(batch.owners, predictions):
            raw = parts.setdefault(index, RawTiles([], []))
            raw.predictions.append({k: v.detach().cpu() for k, v in prediction.items()})
            raw.windows.append(window)
        for index, _ in batch.finished:
            yield parts.pop(index)


def predict_images(model: nn.Module, images: Iterable[np.ndarray], settings: PredictSettings,
                   input_size: int, device: torch.device | str = "cpu") -> Iterable[list[Rock]]:
    """Rocks for each image, in order; tiles of consecutive images share forward passes."""
    for raw in detect_raw(model, images, settings, input_size, device):
        yield raw.rocks(settings)


def predict_image(model: nn.Module, pixels: np.ndarray, settings: PredictSettings, input_size: int,
                  device: torch.device | str = "cpu") -> list[Rock]:
    """Rocks in one 8-bit RGB image."""
    return next(iter(predict_images(model, [pixels], settings, input_size, device)))


def as_detections(rocks: list[Rock], max_detections: int | None = None) -> dict[str, torch.Tensor]:
    """Rocks (score-sorted) in torchvision's output format, at most ``max_detections``."""
    rocks = rocks[:max_detections] if max_detections else rocks
    return {"boxes": torch.tensor([[r.x_min, r.y_min, r.x_max, r.y_max] for r in rocks],
                                  dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor([r.score for r in rocks], dtype=torch.float32),
            "labels": torch.full((len(rocks),), ROCK_LABEL, dtype=torch.int64)}


def detect_raw_tensors(model: nn.Module, images: list[torch.Tensor], input_size: int,
                       device: torch.device | str = "cpu") -> list[RawTiles]:
    """``detect_raw`` over float [3, H, W] images in 0..1 (a validation batch)."""
    settings = PredictSettings(score_threshold=0.0, batch_size=max(1, len(images)))
    pixels = [image.mul(255).round().byte().permute(1, 2, 0).cpu().numpy() for image in images]
    return list(detect_raw(model, pixels, settings, input_size, device))


#: Settings with which validation, evaluate and the operating point merge tiles: predict's.
EVALUATION_SETTINGS = PredictSettings(score_threshold=0.0)


def detect_as_predict_does(model: nn.Module, images: list[torch.Tensor], input_size: int,
                           max_detections: int, device: torch.device | str = "cpu"
                           ) -> list[dict[str, torch.Tensor]]:
    """Detections in torchvision's output format, made the way `rockdet predict` makes them:
    an image larger than ``input_size`` is cut into tiles at the training scale and merged
    across tile borders. Validation and `rockdet evaluate` use it, so their metrics describe
    the catalogs predict writes. Every detection is kept (threshold 0): metrics rank them."""
    return [as_detections(raw.rocks(EVALUATION_SETTINGS, 0.0), max_detections)
            for raw in detect_raw_tensors(model, images, input_size, device)]
