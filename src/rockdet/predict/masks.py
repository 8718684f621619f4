"""A rock's mask: pieces from several tiles stitched into one, and what its pixels say of the rock."""

from __future__ import annotations

import math

import numpy as np

from rockdet.catalog.rock import MaskShape


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


def describe_mask(mask: tuple[np.ndarray, int, int]) -> MaskShape | None:
    """Area, moment-ellipse axes and lowest pixels (ground contact) of a rock's mask; None for an
    empty mask (the box then stands for the rock)."""
    crop, x0, y0 = mask
    ys, xs = np.nonzero(crop)
    if not len(xs):
        return None
    if len(xs) > 1:
        eigen = np.clip(np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float))), 0, None)
        # An ellipse of semi-axes a, b has variances a²/4 and b²/4 along them (+1/12 per pixel).
        major, minor = float(4 * math.sqrt(eigen[1] + 1 / 12)), float(4 * math.sqrt(eigen[0] + 1 / 12))
    else:
        major = minor = 1.0
    lowest = ys.max()
    return MaskShape(area_px=float(len(xs)), major_axis_px=major, minor_axis_px=minor,
                     contact_x=float(x0 + xs[ys == lowest].mean() + 0.5), contact_y=float(y0 + lowest + 1))
