"""Detections on featureless black (sky above a mast camera's horizon, no-data borders, deep
shadow without texture) are not rocks: the detector fires there on edges and noise.

Measured per tile, where the pixels are at hand, before boxes leave the tile: the share of a
box's pixels that are dark *and* belong to a dark region reaching well beyond the box (at least
``REGION_OVER_BOX`` times its area) or running off the tile's edge, as sky and borders do. A dark
rock inside the frame is a dark region about its own box's size and stays, even where a stretch
turned it black.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from rockdet.data.records import pixel_corners

#: ITU-R BT.601 luma weights (Pillow's "L" conversion): the brightness a person judges.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: A dark region is sky or a border, not a rock, when it is this many times the box's area.
REGION_OVER_BOX = 2.0


def on_featureless_black(tile: torch.Tensor, boxes: torch.Tensor, level: int, fraction: float,
                         extent: tuple[int, int]) -> torch.Tensor:
    """Per box (tile coordinates): at least ``fraction`` of its pixels are darker than ``level``
    of 255 and lie in a dark region of at least REGION_OVER_BOX times the box's area, counted
    inside ``extent`` (width, height): the tile's own pixels, not its zero padding.

    A box's pixels are counted both ways a box is commonly cut from an image: the pixels whose
    centres lie inside it (as a mask is rasterised) and its corners truncated to whole pixels (as
    ``pixels[int(y0):int(y1), int(x0):int(x1)]`` reads it). Either way at the fraction is enough:
    a box on the sky's edge differs by a pixel row between the two, and one that reads as sky to
    anyone's crop is not a rock (stop 36: two boxes 89 % black by one count and 91 % by the other)."""
    width, height = extent
    if not len(boxes):
        return torch.zeros(0, dtype=torch.bool)
    # In NumPy: the same float32 arithmetic, without torch's per-operator dispatch (this runs
    # for every tile of a batch, between the model's calls).
    pixels = tile[:, :height, :width].detach().cpu().float().numpy()
    corners = boxes.detach().float().cpu().numpy()
    judge = _Judge(pixels, level, fraction)
    result = judge(pixel_corners(corners, width, height)) | judge(truncated_corners(corners, width, height))
    return torch.from_numpy(result)


def truncated_corners(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes as whole-pixel [x0, y0, x1, y1) ranges with their corners truncated, inside the
    extent and at least one pixel each."""
    x0 = np.clip(np.floor(boxes[:, 0]), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(boxes[:, 1]), 0, height - 1).astype(np.int64)
    x1 = np.maximum(np.clip(np.floor(boxes[:, 2]), 0, width).astype(np.int64), x0 + 1)
    y1 = np.maximum(np.clip(np.floor(boxes[:, 3]), 0, height).astype(np.int64), y0 + 1)
    return np.stack([x0, y0, x1, y1], axis=1)


class _Judge:
    """Judges pixel boxes of one tile; its dark mask and dark regions are made once, when needed."""

    def __init__(self, pixels: np.ndarray, level: int, fraction: float):
        self.pixels, self.level, self.fraction = pixels, level, fraction
        self.height, self.width = pixels.shape[1:]
        self.dark: np.ndarray | None = None
        self.summed: np.ndarray | None = None
        self.regions: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, corners: np.ndarray) -> np.ndarray:
        result = np.zeros(len(corners), dtype=bool)
        x0, y0, x1, y1 = corners.T
        box_pixels = (x1 - x0) * (y1 - y0)
        # A box whose dark pixels fall short of the fraction cannot qualify whatever regions they
        # form, so most boxes are settled from their dark share alone: from each box's own pixels
        # when the boxes cover less than the tile (a catalog's few rocks), else from an integral image.
        if box_pixels.sum() < self.width * self.height and self.dark is None:
            darkest = np.array([_dark(self.pixels[:, top:bottom, left:right], self.level).mean()
                                for left, top, right, bottom in corners])
        else:
            if self.summed is None:
                self.summed = cv2.integral(self._dark_mask().view(np.uint8))  # [h + 1, w + 1], zeros first
            summed = self.summed
            darkest = (summed[y1, x1] - summed[y0, x1] - summed[y1, x0] + summed[y0, x0]) / box_pixels
        candidates = np.flatnonzero(darkest >= self.fraction)
        if not len(candidates):
            return result
        labels, region_area = self._regions()
        for i in candidates:
            bx0, by0, bx1, by1 = corners[i]
            crop = region_area[labels[by0:by1, bx0:bx1]]
            result[i] = (crop >= REGION_OVER_BOX * crop.size).mean() >= self.fraction
        return result

    def _dark_mask(self) -> np.ndarray:
        if self.dark is None:
            self.dark = _dark(self.pixels, self.level)
        return self.dark

    def _regions(self) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel's dark-region label, and each region's area (infinite for one running off
        the tile: sky and no-data borders count whatever their size)."""
        if self.regions is None:
            count, labels, stats, _ = cv2.connectedComponentsWithStats(self._dark_mask().astype(np.uint8),
                                                                       connectivity=8)
            left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
            touches_edge = (left == 0) | (top == 0) | (left + stats[:, cv2.CC_STAT_WIDTH] == self.width) | \
                (top + stats[:, cv2.CC_STAT_HEIGHT] == self.height)
            region_area = np.where(touches_edge, np.inf, stats[:, cv2.CC_STAT_AREA])
            region_area[0] = 0  # the background label: not dark
            self.regions = (labels, region_area)
        return self.regions


def _dark(pixels: np.ndarray, level: int) -> np.ndarray:
    """Bool [h, w]: luma (float [C, h, w] in 0..1) darker than ``level`` of 255."""
    luma = pixels[0] if pixels.shape[0] == 1 else \
        pixels[0] * LUMA_WEIGHTS[0] + pixels[1] * LUMA_WEIGHTS[1] + pixels[2] * LUMA_WEIGHTS[2]
    return luma * np.float32(255.0) < level


def drop_featureless(predictions: list[dict], tiles: list[torch.Tensor], windows: list[tuple[int, int, int, int]],
                     level: int, fraction: float | None) -> list[dict]:
    """Each tile's prediction without the detections lying on featureless black."""
    if fraction is None:
        return predictions
    kept = []
    for prediction, tile, (x0, y0, x1, y1) in zip(predictions, tiles, windows):
        on_black = on_featureless_black(tile, prediction["boxes"], level, fraction, (x1 - x0, y1 - y0))
        if on_black.any():
            keep = ~on_black.to(prediction["boxes"].device)
            prediction = {key: value[keep] if torch.is_tensor(value) and len(value) == len(keep) else value
                          for key, value in prediction.items()}
        kept.append(prediction)
    return kept
