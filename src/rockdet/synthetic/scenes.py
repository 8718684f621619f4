"""Seeded synthetic terrain scenes with exact rock masks, written as COCO datasets.

Regolith is a multi-scale height field shaded by the sun, with albedo patches and small craters
(distractors a detector must learn to ignore). Rocks follow a truncated power-law size-frequency
distribution (many small, few large), are irregular shaded blobs, and cast shadows away from the
sun. Masks and boxes cover the rock, never its shadow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from matplotlib.path import Path as MplPath
from scipy import ndimage

from rockdet.atomic import write_json_atomic

#: Rocks hidden by nearer rocks down to fewer pixels than this are not labelled.
MIN_VISIBLE_PIXELS = 4
#: Crater radii in pixels: the same for every image size, as on a real camera.
CRATER_RADIUS_PX = (6.0, 42.0)


@dataclass
class SceneSpec:
    width: int = 256
    height: int = 256
    #: Direction the light comes from, degrees counter-clockwise from image +x (right).
    sun_azimuth_deg: float = 150.0
    #: Sun elevation above the horizon; low sun = long shadows.
    sun_elevation_deg: float = 30.0
    #: Mean rocks per 100x100 pixels.
    rocks_per_10k_px: float = 3.0
    min_diameter_px: float = 8.0
    max_diameter_px: float = 48.0
    #: Cumulative power-law exponent b of N(>=D) ~ D^-b.
    sfd_exponent: float = 2.0
    #: Probability that a scene has no rocks at all (valid training samples).
    empty_fraction: float = 0.1
    craters_per_10k_px: float = 0.3


@dataclass
class Instance:
    """One rock's mask as a crop at (x0, y0): big scenes hold thousands of rocks."""

    crop: np.ndarray  # bool [h, w]
    x0: int
    y0: int

    @property
    def window(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y0 + self.crop.shape[0]), slice(self.x0, self.x0 + self.crop.shape[1])

    def box(self) -> list[float]:
        ys, xs = np.nonzero(self.crop)
        return [float(self.x0 + xs.min()), float(self.y0 + ys.min()), float(self.x0 + xs.max() + 1),
                float(self.y0 + ys.max() + 1)]

    def polygons(self) -> list[list[float]]:
        return [[v + (self.x0 if i % 2 == 0 else self.y0) for i, v in enumerate(polygon)]
                for polygon in mask_polygons(self.crop)]


@dataclass
class Scene:
    image: np.ndarray  # uint8 [H, W, 3]
    instances: list[Instance]
    diameters_px: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def boxes(self) -> np.ndarray:
        """float32 [N, 4] xyxy, tight around each mask."""
        return np.asarray([i.box() for i in self.instances], dtype=np.float32).reshape(-1, 4)


def generate_scene(rng: np.random.Generator, spec: SceneSpec) -> Scene:
    """Render one scene; every random choice comes from ``rng``."""
    height_field = regolith_height(rng, spec.height, spec.width)
    add_craters(rng, height_field, spec.craters_per_10k_px)
    sun = sun_vector(spec.sun_azimuth_deg, spec.sun_elevation_deg)
    brightness = shade(height_field, sun) * albedo_field(rng, spec.height, spec.width)
    count = 0 if rng.random() < spec.empty_fraction else \
        rng.poisson(spec.rocks_per_10k_px * spec.width * spec.height / 1e4)
    diameters = sample_power_law(rng, count, spec.min_diameter_px, spec.max_diameter_px,
                                 spec.sfd_exponent)
    placed = place_rocks(rng, diameters, spec.width, spec.height)
    drawn: list[tuple[Instance, float]] = []
    for (cx, cy), diameter in sorted(placed, key=lambda p: p[0][1]):  # far (top) rocks first
        rock = rock_mask(rng, cx, cy, diameter, spec.height, spec.width)
        if rock is None:
            continue
        draw_rock(rng, brightness, rock, diameter, sun, spec.sun_elevation_deg)
        hide_behind(rock, [r for r, _ in drawn])
        drawn.append((rock, diameter))
    visible = [(r, d) for r, d in drawn if r.crop.sum() >= MIN_VISIBLE_PIXELS]
    return Scene(finish_image(rng, brightness), [r for r, _ in visible], np.array([d for _, d in visible]))


def hide_behind(rock: Instance, earlier: list[Instance]) -> None:
    """A nearer rock hides what it covers of the rocks drawn before it."""
    (ry, rx), (h, w) = (rock.y0, rock.x0), rock.crop.shape
    for other in earlier:
        oh, ow = other.crop.shape
        y0, y1 = max(ry, other.y0), min(ry + h, other.y0 + oh)
        x0, x1 = max(rx, other.x0), min(rx + w, other.x0 + ow)
        if y1 > y0 and x1 > x0:
            other.crop[y0 - other.y0:y1 - other.y0, x0 - other.x0:x1 - other.x0] &= \
                ~rock.crop[y0 - ry:y1 - ry, x0 - rx:x1 - rx]


def regolith_height(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    field_ = np.zeros((height, width), dtype=np.float32)
    for sigma, weight in ((1.0, 0.4), (4.0, 2.0), (16.0, 8.0)):
        field_ += weight * ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma)
    return field_.astype(np.float32)


def add_craters(rng: np.random.Generator, height_field: np.ndarray, per_10k: float) -> None:
    """Bowl-shaped depressions with raised rims, each computed in a window around itself."""
    h, w = height_field.shape
    for _ in range(rng.poisson(per_10k * h * w / 1e4)):
        radius = rng.uniform(*CRATER_RADIUS_PX)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        reach = 1.5 * radius  # the rim's Gaussian has faded by then
        x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
        y0, y1 = max(0, int(cy - reach / 1.4)), min(h, int(cy + reach / 1.4) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1]
        r = np.hypot(xs - cx, (ys - cy) * 1.4) / radius
        depth = 0.25 * radius
        height_field[y0:y1, x0:x1] += (np.where(r < 1, -depth * (1 - r ** 2), 0)
                                       + 0.3 * depth * np.exp(-((r - 1) / 0.15) ** 2))


def sun_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    # image y grows downwards, so "from above" in the picture is -y
    return np.array([math.cos(el) * math.cos(az), -math.cos(el) * math.sin(az), math.sin(el)])


def shade(height_field: np.ndarray, sun: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(height_field)
    normal = np.stack([-gx, -gy, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=0)
    return np.clip(np.tensordot(sun, normal, axes=1), 0.05, None).astype(np.float32)


def albedo_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    patches = ndimage.gaussian_filter(rng.standard_normal((height, width)), 24)
    patches /= max(1e-6, np.abs(patches).max())
    return (0.55 + 0.08 * patches).astype(np.float32)


def sample_power_law(rng: np.random.Generator, count: int, d_min: float, d_max: float,
                     exponent: float) -> np.ndarray:
    """Diameters with cumulative N(>=D) ~ D^-exponent, truncated to [d_min, d_max]."""
    u = rng.random(count)
    ratio = (d_min / d_max) ** exponent
    return d_min * (1 - u * (1 - ratio)) ** (-1 / exponent)


def place_rocks(rng: np.random.Generator, diameters: np.ndarray, width: int, height: int,
                tries: int = 30) -> list[tuple[tuple[float, float], float]]:
    """Centres for the rocks, largest first, rejecting heavy overlaps."""
    placed: list[tuple[tuple[float, float], float]] = []
    if not len(diameters):
        return placed
    cell = float(max(diameters))  # a grid of cells this size: only neighbours can overlap
    grid: dict[tuple[int, int], list[int]] = {}
    for diameter in sorted(diameters, reverse=True):
        for _ in range(tries):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            gx, gy = int(cx // cell), int(cy // cell)
            near = [i for dx in (-1, 0, 1) for dy in (-1, 0, 1) for i in grid.get((gx + dx, gy + dy), [])]
            if all(math.hypot(cx - placed[i][0][0], cy - placed[i][0][1]) > 0.6 * (diameter + placed[i][1])
                   for i in near):
                grid.setdefault((gx, gy), []).append(len(placed))
                placed.append(((cx, cy), float(diameter)))
                break
    return placed


def rock_mask(rng: np.random.Generator, cx: float, cy: float, diameter: float, height: int,
              width: int) -> Instance | None:
    """An irregular blob: a circle with random low-order harmonics, squashed and turned."""
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    radius = np.full_like(angles, diameter / 2)
    for k in (2, 3, 4):
        radius *= 1 + rng.uniform(0, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    squash, turn = rng.uniform(0.65, 1.0), rng.uniform(-0.4, 0.4)
    x, y = radius * np.cos(angles), radius * np.sin(angles) * squash
    points = np.stack([cx + x * math.cos(turn) - y * math.sin(turn),
                       cy + x * math.sin(turn) + y * math.cos(turn)], axis=1)
    return rasterize(points, height, width)


def rasterize(polygon: np.ndarray, height: int, width: int) -> Instance | None:
    """Pixels whose centre lies inside the polygon, as a crop; None if none is in the image.

    Pixel-centre inclusion is unbiased; a filled outline also takes every pixel the edge
    touches and so makes each rock about a pixel too wide.
    """
    x0, y0 = np.floor(polygon.min(axis=0)).astype(int)
    x1, y1 = np.ceil(polygon.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    crop = MplPath(polygon).contains_points(centres).reshape(ys.shape)
    return Instance(crop, int(x0), int(y0)) if crop.any() else None


def draw_rock(rng: np.random.Generator, brightness: np.ndarray, rock: Instance, diameter: float,
              sun: np.ndarray, sun_elevation_deg: float) -> None:
    """Shadow first (on the ground, away from the sun), then the shaded rock body.

    Works in a window around the rock and its shadow, so cost follows rock size, not image size.
    """
    rock_height = 0.5 * diameter
    length = rock_height / math.tan(math.radians(max(sun_elevation_deg, 3.0)))
    margin = int(math.ceil(length)) + 3
    rows, cols = rock.window
    y0, y1 = max(0, rows.start - margin), min(brightness.shape[0], rows.stop + margin)
    x0, x1 = max(0, cols.start - margin), min(brightness.shape[1], cols.stop + margin)
    local_mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    local_mask[rows.start - y0:rows.stop - y0, cols.start - x0:cols.stop - x0] = rock.crop
    local = brightness[y0:y1, x0:x1]
    direction = -sun[:2] / max(1e-6, np.linalg.norm(sun[:2]))
    shadow = np.zeros_like(local_mask)
    as_uint8 = local_mask.astype(np.uint8)
    for step in np.linspace(0, length, max(2, int(length) + 1)):
        shift = np.array([[1, 0, direction[0] * step], [0, 1, direction[1] * step]], dtype=np.float32)
        shadow |= cv2.warpAffine(as_uint8, shift, as_uint8.shape[::-1], flags=cv2.INTER_NEAREST).astype(bool)
    shadow &= ~local_mask
    local[shadow] *= rng.uniform(0.15, 0.3)
    inside = ndimage.distance_transform_edt(np.pad(local_mask, 1))[1:-1, 1:-1]
    dome = np.sqrt(np.clip(inside / max(1.0, inside.max()), 0, 1)) * rock_height
    dome = ndimage.gaussian_filter(dome, 1.0) + 0.6 * ndimage.gaussian_filter(
        rng.standard_normal(local_mask.shape), 0.8)
    rock_light = shade(dome.astype(np.float32), sun)
    local[local_mask] = rock_light[local_mask] * rng.uniform(0.55, 0.8)


def finish_image(rng: np.random.Generator, brightness: np.ndarray) -> np.ndarray:
    """Exposure, sensor noise and a faint colour tint, to 8-bit RGB."""
    exposure = rng.uniform(0.8, 1.1)
    gray = np.clip(brightness * exposure + rng.normal(0, 0.015, brightness.shape), 0, 1) ** 0.8
    tint = np.array([1.0, 0.98, 0.94]) * rng.uniform(0.97, 1.03, size=3)
    return (np.clip(gray[:, :, None] * tint, 0, 1) * 255 + 0.5).astype(np.uint8)


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (pixel-edge coordinates) of one binary mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) >= 3:
            polygons.append((contour.reshape(-1, 2).astype(float) + 0.5).ravel().tolist())
        else:  # a 1-2 pixel sliver: its pixel square
            x, y = contour.reshape(-1, 2)[0]
            polygons.append([x, y, x + 1, y, x + 1, y + 1, x, y + 1])
    return polygons


def write_coco_split(out_dir: Path, count: int, spec: SceneSpec, seed: int,
                     split: str) -> Path:
    """Write ``count`` scenes to ``out_dir/split/`` with ``annotations.json``; return its path."""
    split_dir = Path(out_dir) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        scene = generate_scene(np.random.default_rng([seed, _split_key(split), index]), spec)
        name = f"{split}_{index:04d}.png"
        cv2.imwrite(str(split_dir / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        images.append({"id": index, "file_name": name, "width": spec.width, "height": spec.height})
        for rock, diameter in zip(scene.instances, scene.diameters_px):
            x0, y0, x1, y1 = rock.box()
            annotations.append({
                "id": len(annotations) + 1, "image_id": index, "category_id": 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(rock.crop.sum()), "iscrowd": 0,
                "segmentation": rock.polygons(), "diameter_px": float(diameter)})
    path = split_dir / "annotations.json"
    write_json_atomic(path, {
        "info": {"description": "rockdet synthetic terrain", "seed": seed, "spec": asdict(spec)},
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "rock", "supercategory": "terrain"}]})
    return path


def write_synthetic_dataset(out_dir: Path, splits: dict[str, int], spec: SceneSpec | None = None,
                            seed: int = 0) -> dict[str, Path]:
    """Write several splits (e.g. ``{"train": 48, "val": 12}``); returns split → annotation file."""
    spec = spec or SceneSpec()
    return {split: write_coco_split(Path(out_dir), n, spec, seed, split) for split, n in splits.items()}


def _split_key(split: str) -> int:
    return int.from_bytes(split.encode()[:8].ljust(8, b"\0"), "little")

