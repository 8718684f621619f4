"""Tiles: windows over an image (pure functions), tiles cut from its pixels, and the one tile
stream that batches the tiles of consecutive images for the detector."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import cv2
import numpy as np
import torch
from torch import nn

from rockdet.predict.settings import PredictSettings

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
#: 8-bit pixel values to the 0..1 floats the detectors take.
UNIT_SCALE = 1.0 / 255.0


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets along one axis: evenly spread, first at 0, last flush with the edge."""
    if length <= tile:
        return [0]
    stride = tile * (1.0 - overlap)
    count = math.ceil((length - tile) / stride) + 1
    # Spread the windows evenly so that every overlap is at least the requested one.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_windows(height: int, width: int, tile: int, overlap: float) -> list[Window]:
    """Windows of at most ``tile`` px covering the image, neighbours overlapping by ``overlap``."""
    if tile <= 0 or not 0.0 <= overlap < 1.0:
        raise ValueError(f"need tile > 0 and 0 <= overlap < 1, got tile={tile}, overlap={overlap}")
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in tile_starts(height, tile, overlap) for x in tile_starts(width, tile, overlap)]


def shift_boxes(boxes: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """Tile coordinates → image coordinates."""
    x, y = offset
    return boxes + torch.tensor([x, y, x, y], dtype=boxes.dtype, device=boxes.device)


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
    crop = pixels[y0:y1, x0:x1]
    planes = np.empty((crop.shape[2], y1 - y0, x1 - x0), np.float32)
    # One OpenCV pass per channel from the uint8 HWC crop to a float plane: 1.7x NumPy's strided
    # division, and torch's permute-then-convert took 10x as long. Scaling by the double 1/255
    # rounds to the same float32 as dividing by 255 for every uint8 value (a test checks all 256).
    for channel in range(crop.shape[2]):
        cv2.multiply(crop[:, :, channel], UNIT_SCALE, dst=planes[channel], dtype=cv2.CV_32F)
    tile = torch.from_numpy(planes)
    if pad_to and (tile.shape[1] < pad_to or tile.shape[2] < pad_to) and \
            (x1 - x0, y1 - y0) != (pixels.shape[1], pixels.shape[0]):
        tile = nn.functional.pad(tile, (0, pad_to - tile.shape[2], 0, pad_to - tile.shape[1]))
    return tile


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
    #: With ``keep_pixels``: the decoded pixels of each finished image, aligned with ``finished``
    #: (they travel once, with the image's last tile, e.g. for its overlay).
    pixels: list[Any] = field(default_factory=list)


def tile_batches(images: Iterable[tuple[Any, np.ndarray]], settings: PredictSettings, input_size: int,
                 tiles_per_batch: int, keep_pixels: bool = False) -> Iterator[TileBatch]:
    """The one tile stream of rockdet: each (owner, 8-bit RGB pixels) cut into tiles, tiles of
    consecutive images sharing batches of ``tiles_per_batch``. Library calls and the Lightning
    predict run both consume it, so they tile and batch the same way."""
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
                if keep_pixels:
                    batch.pixels.append(pixels)
            if len(batch.tiles) >= tiles_per_batch:
                yield batch
                batch = TileBatch()
    if batch.tiles:
        yield batch
