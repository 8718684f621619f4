"""Tiled TIFF/GeoTIFF frames read window by window, so memory follows the tile batch, not the image.

A 20000x20000 descent or orbital frame is 1.2 GB as 8-bit RGB. ``WindowedTiff`` looks like the
decoded image to the tile cutter (``.shape`` and ``[y0:y1, x0:x1]``) but decodes only the TIFF
tiles a window touches, through tifffile, keeping a few recent ones because neighbouring windows
overlap. 16-bit frames are stretched to 8 bit with today's percentile rule over a sample of
tiles spread across the frame (all of them when there are few), recorded in the notes.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from rockdet.errors import ImageReadError
from rockdet.io.images import STRETCH_PERCENTILES, stretch_with

TIFF_SUFFIXES = (".tif", ".tiff")
#: Decoded TIFF tiles kept for overlapping windows (256x256 RGB tiles: 200 kB each).
CACHED_TILES = 64
#: TIFF tiles sampled for a 16-bit frame's stretch percentiles.
STRETCH_SAMPLE_TILES = 64
#: Frames are refused beyond this many pixels even when windowed (corrupt headers).
MAX_WINDOWED_PIXELS = 10_000_000_000


def is_windowed_tiff(path: Path) -> bool:
    """A TIFF whose first page is tiled in a layout WindowedTiff reads (8/16-bit, 1/3/4 samples)."""
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        import tifffile
    except ImportError:
        return False
    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            return bool(page.is_tiled and page.dtype in (np.uint8, np.uint16) and page.samplesperpixel in (1, 3, 4)
                        and page.planarconfig == 1 and page.imagedepth == 1)
    except Exception:  # not a TIFF tifffile reads: the whole-image decoder reports it
        return False


class WindowedTiff:
    """``pixels[y0:y1, x0:x1]`` of a tiled TIFF as 8-bit RGB, decoding only the tiles needed."""

    def __init__(self, path: Path):
        import tifffile

        self.path = path
        self._tiff = tifffile.TiffFile(path)
        page = self._page = self._tiff.pages.first
        height, width = int(page.imagelength), int(page.imagewidth)
        if width * height > MAX_WINDOWED_PIXELS:
            self.close()
            raise ImageReadError(f"{path}: {width}x{height} exceeds the {MAX_WINDOWED_PIXELS:,}-pixel limit")
        self.shape = (height, width, 3)
        self.tile_height, self.tile_width = int(page.tilelength), int(page.tilewidth)
        self.tiles_across = -(-width // self.tile_width)
        self.tiles_down = -(-height // self.tile_height)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.notes = [f"windowed decoding of a tiled TIFF ({self.tile_width}x{self.tile_height} tiles)"]
        ends = [offset + size for offset, size in zip(page.dataoffsets, page.databytecounts) if size]
        available = path.stat().st_size
        if ends and max(ends) > available:
            self.close()
            raise ImageReadError(f"{path}: truncated: its tiles need {max(ends):,} bytes, the file has {available:,}")
        self._range = None
        if page.dtype != np.uint8:
            self._range = self._sample_range()
            self.notes.append(f"stretched {page.dtype} to 8 bit at percentiles {STRETCH_PERCENTILES} of "
                              f"{min(STRETCH_SAMPLE_TILES, self.tiles_across * self.tiles_down)} sampled tiles: "
                              f"{self._range[0]:g}..{self._range[1]:g} -> 0..255")

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    def __getitem__(self, key) -> np.ndarray:
        rows, columns = key
        y0, y1, _ = rows.indices(self.height)
        x0, x1, _ = columns.indices(self.width)
        out = np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), dtype=np.uint8)
        for tile_row in range(y0 // self.tile_height, -(-y1 // self.tile_height)):
            for tile_column in range(x0 // self.tile_width, -(-x1 // self.tile_width)):
                tile = self._tile(tile_row * self.tiles_across + tile_column)
                top, left = tile_row * self.tile_height, tile_column * self.tile_width
                ty0, ty1 = max(y0, top), min(y1, top + self.tile_height)
                tx0, tx1 = max(x0, left), min(x1, left + self.tile_width)
                out[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = tile[ty0 - top:ty1 - top, tx0 - left:tx1 - left]
        return out

    def close(self) -> None:
        self._tiff.close()
        self._cache.clear()

    def _raw_tile(self, index: int) -> np.ndarray:
        page = self._page
        handle = self._tiff.filehandle
        offset, size = page.dataoffsets[index], page.databytecounts[index]
        if size == 0:  # sparse tile: never written
            return np.zeros((self.tile_height, self.tile_width, page.samplesperpixel), page.dtype)
        handle.seek(offset)
        data = handle.read(size)
        if len(data) < size:
            raise ImageReadError(f"{self.path}: tile {index} is truncated ({len(data)} of {size} bytes)")
        try:
            values, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as exc:
            # Tiles of this frame are already on their way to the model: a corrupt one becomes
            # zeros (no rocks) and a note, rather than stopping the batch.
            self.notes.append(f"TIFF tile {index} could not be decoded ({str(exc)[:80]}): read as zeros")
            return np.zeros((self.tile_height, self.tile_width, page.samplesperpixel), page.dtype)
        values = np.asarray(values)[0]
        return values if values.ndim == 3 else values[:, :, None]

    def _tile(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        values = self._raw_tile(index)
        if self._range is not None:
            values = stretch_with(values, *self._range)
        rgb = np.repeat(values[:, :, :1], 3, axis=2) if values.shape[2] == 1 else values[:, :, :3]
        self._cache[index] = np.ascontiguousarray(rgb, dtype=np.uint8)
        if len(self._cache) > CACHED_TILES:
            self._cache.popitem(last=False)
        return self._cache[index]

    def _sample_range(self) -> tuple[float, float]:
        count = self.tiles_across * self.tiles_down
        picks = np.unique(np.linspace(0, count - 1, min(STRETCH_SAMPLE_TILES, count)).round().astype(int))
        samples = []
        for index in picks:
            row, column = divmod(int(index), self.tiles_across)
            tile = self._raw_tile(int(index))
            # Only the part inside the image: edge tiles are padded.
            valid_rows = min(self.tile_height, self.height - row * self.tile_height)
            valid_columns = min(self.tile_width, self.width - column * self.tile_width)
            samples.append(tile[:valid_rows, :valid_columns, :3].reshape(-1))
        low, high = np.percentile(np.concatenate(samples).astype(np.float32), STRETCH_PERCENTILES)
        return float(low), float(max(high, low + 1.0))
