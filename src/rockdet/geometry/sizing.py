"""Rock sizes in metres and the imaged ground area, from a camera model (see geometry.py)."""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

from rockdet.catalog.files import Rock
from rockdet.geometry.cameras import AREA_GRID_STEP_PX, Camera

# size_flag values: why a rock has no metric size
ABOVE_HORIZON = "above_horizon"
BEYOND_MAX_RANGE = "beyond_max_range"
NEARER_THAN_MIN_RANGE = "nearer_than_min_range"
IMAGE_SIZE_MISMATCH = "image_size_mismatch"


def size_rocks(camera: Camera, rocks: list[Rock]) -> None:
    """Fill range_m, ground_x_m, ground_y_m, diameter_m, height_m and size_flag in place."""
    if not rocks:
        return
    contact_u, contact_v = (np.array(values, dtype=float).reshape(-1)
                            for values in zip(*[r.ground_contact for r in rocks])) if rocks else \
        (np.zeros(0), np.zeros(0))
    if camera.config.model == "nadir":
        _size_nadir(camera, rocks)
        return
    ground_x, ground_y, depth, hits = camera.pixels_to_ground(contact_u, contact_v)
    left, _ = camera.normalized(np.array([r.x_min for r in rocks]), contact_v)
    right, _ = camera.normalized(np.array([r.x_max for r in rocks]), contact_v)
    _, top = camera.normalized(contact_u, np.array([r.y_min for r in rocks]))
    up = camera.rotation.T @ np.array([0.0, 0.0, 1.0])  # world up in camera coordinates
    for i, rock in enumerate(rocks):
        if not hits[i]:
            rock.size_flag = ABOVE_HORIZON
            continue
        horizontal = float(np.hypot(ground_x[i], ground_y[i]))
        if horizontal > camera.config.max_range_m:
            rock.size_flag = BEYOND_MAX_RANGE
            continue
        if horizontal < camera.config.min_range_m:
            rock.size_flag = NEARER_THAN_MIN_RANGE
            continue
        rock.range_m = horizontal
        rock.ground_x_m, rock.ground_y_m = float(ground_x[i]), float(ground_y[i])
        # Width at the contact point's depth: extent in normalized coordinates times depth.
        rock.diameter_m = float((right[i] - left[i]) * depth[i])
        rock.height_m = _height_above_contact(camera, contact_u[i], contact_v[i], depth[i], top[i], up)
        rock.size_flag = "ok"


def _height_above_contact(camera: Camera, u: float, v: float, depth: float, top_y: float,
                          up: np.ndarray) -> float | None:
    """Height of the point above the contact point that images at the rock's top row."""
    x, y = camera.normalized(np.array([u]), np.array([v]))
    point = np.array([x[0] * depth, y[0] * depth, depth])
    denominator = up[1] - top_y * up[2]
    if abs(denominator) < 0.05:  # looking nearly straight down: vertical extent says little
        return None
    height = (top_y * point[2] - point[1]) / denominator
    return float(height) if height > 0 else None


def _size_nadir(camera: Camera, rocks: list[Rock]) -> None:
    for rock in rocks:
        centre_u, centre_v = (rock.x_min + rock.x_max) / 2, (rock.y_min + rock.y_max) / 2
        rock.ground_x_m = float((centre_u - camera.cx) * camera.gsd)
        rock.ground_y_m = float((camera.cy - centre_v) * camera.gsd)
        rock.range_m = float(np.hypot(rock.ground_x_m, rock.ground_y_m))
        rock.diameter_m = float(rock.diameter_px * camera.gsd)
        rock.size_flag = "ok"


def imaged_ground_area(camera: Camera, exclusion: np.ndarray | None = None,
                       step: int = AREA_GRID_STEP_PX) -> float:
    """Ground area in m² seen by the image between min_range_m and max_range_m, minus excluded pixels."""
    width, height = camera.config.image_width, camera.config.image_height
    if camera.config.model == "nadir":
        visible = width * height - (int((exclusion > 0).sum()) if exclusion is not None else 0)
        return float(visible * camera.gsd ** 2)
    us = np.arange(0, width + step, step, dtype=float).clip(max=width)
    vs = np.arange(0, height + step, step, dtype=float).clip(max=height)
    grid_u, grid_v = np.meshgrid(us, vs)
    gx, gy, _, hits = camera.pixels_to_ground(grid_u, grid_v)
    # Shoelace area of each grid cell's ground quadrilateral.
    x0, y0, x1, y1 = gx[:-1, :-1], gy[:-1, :-1], gx[:-1, 1:], gy[:-1, 1:]
    x2, y2, x3, y3 = gx[1:, 1:], gy[1:, 1:], gx[1:, :-1], gy[1:, :-1]
    area = 0.5 * np.abs((x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3))
    valid = hits[:-1, :-1] & hits[:-1, 1:] & hits[1:, 1:] & hits[1:, :-1]
    centre_u, centre_v = (grid_u[:-1, :-1] + grid_u[1:, 1:]) / 2, (grid_v[:-1, :-1] + grid_v[1:, 1:]) / 2
    cx, cy, _, centre_hits = camera.pixels_to_ground(centre_u, centre_v)
    ranges = np.hypot(cx, cy)
    valid &= centre_hits & (ranges >= camera.config.min_range_m) & (ranges <= camera.config.max_range_m)
    if exclusion is not None:
        rows = np.clip(centre_v.astype(int), 0, exclusion.shape[0] - 1)
        cols = np.clip(centre_u.astype(int), 0, exclusion.shape[1] - 1)
        valid &= exclusion[rows, cols] == 0
    return float(np.nansum(np.where(valid, area, 0.0)))


def read_exclusion_mask(camera: Camera, width: int, height: int) -> np.ndarray | None:
    path = camera.config.exclusion_mask
    if path is None:
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        from rockdet.errors import ConfigError

        raise ConfigError(f"{camera.source}: exclusion_mask {path} cannot be read")
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def rock_sizer(camera: Camera) -> Callable[[list[Rock], Any], dict]:
    """For the batch writer: size an image's rocks with one camera for the whole batch and
    return what its catalog JSON records. ``image`` gives width and height."""
    areas: dict[tuple[int, int], float | None] = {}

    def size(rocks: list[Rock], image: Any) -> dict:
        width, height = image.width, image.height
        fitted = camera.for_image(width, height)
        if fitted is None:
            for rock in rocks:
                rock.size_flag = IMAGE_SIZE_MISMATCH
            return {"ground_area_m2": None, "geometry_note": f"image {width}x{height} does not match "
                    f"the camera's aspect ({camera.config.image_width}x{camera.config.image_height})"}
        size_rocks(fitted, rocks)
        if (width, height) not in areas:
            areas[(width, height)] = imaged_ground_area(fitted, read_exclusion_mask(fitted, width, height))
        return {"ground_area_m2": areas[(width, height)]}

    return size
