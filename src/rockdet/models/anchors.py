"""Anchor sizes derived from the rocks a model will be trained on (``model.anchor_sizes: auto``)."""

from __future__ import annotations

import numpy as np

#: The smallest anchor is set to this quantile of the rocks' sides in the model's input: small
#: enough that most rocks have an anchor at least their size, while the finest level still sees
#: the tail of smaller rocks through low-quality matches.
SMALLEST_ANCHOR_QUANTILE = 0.05
MIN_ANCHOR_PX = 2


def rock_sides_in_model_input(box_sides: np.ndarray, image_sides: np.ndarray,
                              min_size: int, max_size: int) -> np.ndarray:
    """Rock sides (square root of box area) after the model's own resize of their image.

    ``box_sides``: one value per rock; ``image_sides``: [N, 2] (width, height) of each rock's
    image as the model receives it (after any crop). torchvision scales the short side to
    ``min_size`` unless the long side would pass ``max_size``.
    """
    image_sides = np.asarray(image_sides, dtype=np.float64).reshape(-1, 2)
    short, long = image_sides.min(axis=1), image_sides.max(axis=1)
    scale = np.minimum(min_size / short, max_size / long)
    return np.asarray(box_sides, dtype=np.float64) * scale


def derive_anchor_sizes(rock_sides: np.ndarray, default_sizes: list[list[float]]) -> list[list[int]]:
    """Scale the architecture's anchors by one factor so its smallest matches the data.

    Keeping the architecture's layout (levels, sizes per level, the octave between FPN levels)
    keeps every anchor on the feature level it was designed for; only the scale moves.
    """
    sides = np.asarray(rock_sides, dtype=np.float64)
    sides = sides[np.isfinite(sides) & (sides > 0)]
    if not len(sides):
        raise ValueError("no rocks to derive anchor sizes from")
    smallest_default = min(min(level) for level in default_sizes)
    factor = float(np.quantile(sides, SMALLEST_ANCHOR_QUANTILE)) / smallest_default
    return [[max(MIN_ANCHOR_PX, int(round(size * factor))) for size in level]
            for level in default_sizes]
