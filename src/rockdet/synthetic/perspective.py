"""Synthetic perspective scenes with metric truth: rocks of known diameter on a ground plane,
rendered through a camera model (size falls with range, shadows follow the sun).

Each rock is placed on the ground between the camera's min and max range, with a diameter in
metres drawn from the Golombek-Rapp model for a chosen k. Its silhouette is the image of its
footprint ellipse raised into a dome; the truth (diameter, height, range, ground position, pixel
box and mask) is returned with the image (scripts/benchmark_sizing.py measures sizing on it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from rockdet.geometry.cameras import Camera
from rockdet.stats.sfd import sample_golombek_rapp
from rockdet.synthetic.scenes import (
    Instance,
    albedo_field,
    draw_rock,
    finish_image,
    hide_behind,
    rasterize,
    regolith_height,
    shade,
    sun_vector,
)

#: Rock height as a fraction of its diameter (Golombek & Rapp use about 0.5).
HEIGHT_RATIO = 0.5
#: Rocks imaged smaller than this are not labelled (no detector or person would see them).
MIN_PIXELS = 9
#: Points on a rock's silhouette polygon.
OUTLINE_POINTS = 40


@dataclass
class PerspectiveSpec:
    k: float = 0.08
    d_min_m: float = 0.08
    d_max_m: float = 1.5
    sun_azimuth_deg: float = 150.0
    sun_elevation_deg: float = 30.0


@dataclass
class RockTruth:
    diameter_m: float
    height_m: float
    ground_x_m: float
    ground_y_m: float
    range_m: float
    box: list[float]


def visible_ground_patch(camera: Camera) -> tuple[float, float, float, float]:
    """Bounding rectangle (x0, x1, y0, y1) of the ground the image sees within max range."""
    c = camera.config
    u = np.array([0, c.image_width, 0, c.image_width, c.image_width / 2], float)
    v = np.array([c.image_height] * 2 + [0, 0, 0], float)
    x, y, _, hits = camera.pixels_to_ground(u, v)
    far = c.max_range_m
    xs = np.clip(np.where(hits, x, np.sign(u - camera.cx) * far), -far, far)
    ys = np.clip(np.where(hits, y, far), 0, far)
    return float(xs.min()), float(xs.max()), float(max(c.min_range_m, ys.min())), float(ys.max())


def render_perspective_scene(rng: np.random.Generator, camera: Camera,
                             spec: PerspectiveSpec) -> tuple[np.ndarray, list[Instance], list[RockTruth]]:
    """Image, rock masks (crops) and per-rock truth for one scene."""
    width, height = camera.config.image_width, camera.config.image_height
    x0, x1, y0, y1 = visible_ground_patch(camera)
    diameters = sample_golombek_rapp(rng, spec.k, (x1 - x0) * (y1 - y0), spec.d_min_m, spec.d_max_m)
    positions = np.stack([rng.uniform(x0, x1, len(diameters)), rng.uniform(y0, y1, len(diameters))], 1)
    sun = sun_vector(spec.sun_azimuth_deg, spec.sun_elevation_deg)
    brightness = shade(regolith_height(rng, height, width), sun) * albedo_field(rng, height, width)
    order = np.argsort(-positions[:, 1]) if len(diameters) else []  # far rocks first
    drawn: list[tuple[Instance, RockTruth]] = []
    for index in order:
        (gx, gy), diameter = positions[index], float(diameters[index])
        if math.hypot(gx, gy) > camera.config.max_range_m or math.hypot(gx, gy) < camera.config.min_range_m:
            continue
        rock = _rock_silhouette(rng, camera, gx, gy, diameter, height, width)
        if rock is None or rock.crop.sum() < MIN_PIXELS:
            continue
        draw_rock(rng, brightness, rock, _pixel_size(rock.crop), sun, spec.sun_elevation_deg)
        hide_behind(rock, [r for r, _ in drawn])
        drawn.append((rock, RockTruth(diameter, HEIGHT_RATIO * diameter, float(gx), float(gy),
                                      float(math.hypot(gx, gy)), [])))
    kept = [(r, t) for r, t in drawn if r.crop.sum() >= MIN_PIXELS]
    for rock, truth in kept:
        truth.box = rock.box()
    return finish_image(rng, brightness), [r for r, _ in kept], [t for _, t in kept]


def _rock_silhouette(rng, camera: Camera, gx: float, gy: float, diameter: float, height: int,
                     width: int) -> Instance | None:
    """Image of a dome of the given footprint diameter: footprint ellipse plus its raised top."""
    angles = np.linspace(0, 2 * math.pi, OUTLINE_POINTS, endpoint=False)
    radius = diameter / 2 * (1 + 0.08 * np.cos(2 * angles + rng.uniform(0, 2 * math.pi)))
    rings = []
    for level in np.linspace(0, 1, 6):  # stacked rings of a dome: z = H·sqrt(1 - r²)
        scale = math.sqrt(max(0.0, 1 - level ** 2))
        rings.append(np.stack([gx + radius * scale * np.cos(angles), gy + radius * scale * np.sin(angles),
                               np.full_like(angles, HEIGHT_RATIO * diameter * level)], 1))
    pixels, in_front = camera.ground_to_pixels(np.concatenate(rings))
    if not in_front.all():
        return None
    hull = cv2.convexHull(pixels.astype(np.float32)).reshape(-1, 2)
    return rasterize(hull, height, width)


def _pixel_size(mask: np.ndarray) -> float:
    return 2 * math.sqrt(mask.sum() / math.pi)
