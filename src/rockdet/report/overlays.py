"""Detection overlays: the image with every rock's box and id, for a person to check."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rockdet.atomic import atomic_path
from rockdet.catalog.rock import Rock
from rockdet.errors import RockdetError

BOX_COLOUR = (255, 170, 0)  # RGB amber: visible on grey regolith and black shadow alike


def draw_overlay(pixels: np.ndarray, rocks: list[Rock]) -> np.ndarray:
    canvas = pixels.copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 800))
    for rock in rocks:
        top_left = (int(rock.x_min), int(rock.y_min))
        bottom_right = (int(np.ceil(rock.x_max)) - 1, int(np.ceil(rock.y_max)) - 1)
        cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOUR, thickness)
        label = f"{rock.rock_id}"
        cv2.putText(canvas, label, (top_left[0], max(8, top_left[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3 * thickness, BOX_COLOUR, thickness, cv2.LINE_AA)
    return canvas


def write_overlay(pixels: np.ndarray, rocks: list[Rock], out_path: Path) -> Path:
    """The decoded image with every rock's box and id, as PNG."""
    with atomic_path(out_path) as temp:
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(draw_overlay(pixels, rocks), cv2.COLOR_RGB2BGR))
        if not ok:
            raise RockdetError(f"{out_path}: PNG encoding of the overlay failed")
        temp.write_bytes(encoded.tobytes())
    return out_path


#: Longest side of a report thumbnail in pixels.
THUMBNAIL_SIDE = 320
#: JPEG quality of thumbnails: small files for a page of thousands.
THUMBNAIL_QUALITY = 80


def shrink_for_thumbnail(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The image at most THUMBNAIL_SIDE on its longer side, and the scale applied."""
    scale = min(1.0, THUMBNAIL_SIDE / max(pixels.shape[:2]))
    if scale == 1.0:
        return pixels.copy(), 1.0
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    # Area averaging by a whole factor first (OpenCV's fast path), then by what is left: a third
    # of the time of one fractional INTER_AREA pass over the full frame (it runs for every image).
    factor = int(1.0 / scale)
    if factor >= 2:
        pixels = cv2.resize(pixels, (pixels.shape[1] // factor, pixels.shape[0] // factor),
                            interpolation=cv2.INTER_AREA)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), scale


def write_thumbnail(small: np.ndarray, scale: float, rocks: list[Rock], out_path: Path) -> Path:
    """The shrunken image with every rock's box (no ids: they would not be legible), as JPEG."""
    canvas = small.copy()
    for rock in rocks:
        top_left = (int(rock.x_min * scale), int(rock.y_min * scale))
        bottom_right = (max(top_left[0], int(np.ceil(rock.x_max * scale)) - 1),
                        max(top_left[1], int(np.ceil(rock.y_max * scale)) - 1))
        cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOUR, 1)
    with atomic_path(out_path) as temp:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
        if not ok:
            raise RockdetError(f"{out_path}: JPEG encoding of the thumbnail failed")
        temp.write_bytes(encoded.tobytes())
    return out_path
