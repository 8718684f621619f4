"""Detection overlays: the image with every rock's box and id, for a person to check."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rockdet.atomic import atomic_path
from rockdet.catalog import Rock
from rockdet.data.images import read_image
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


def write_overlay(image_path: Path, rocks: list[Rock], out_path: Path) -> Path:
    pixels = read_image(image_path).pixels
    with atomic_path(out_path) as temp:
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(draw_overlay(pixels, rocks), cv2.COLOR_RGB2BGR))
        if not ok:
            raise RockdetError(f"{out_path}: PNG encoding of the overlay failed")
        temp.write_bytes(encoded.tobytes())
    return out_path
