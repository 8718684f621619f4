"""Rock sizes in metres: where each rock's ground contact ray meets the ground, and how wide it is
there. Two sizers share one interface (Sizer): CameraSizer sizes a whole batch with one camera
from a YAML file (geometry.cameras), LabelSizer sizes each image with its own label model
(PDS products; geometry.frames, geometry.ground).

Label models: a rock is sized where its contact ray meets the ground plane of the label's frame
(z down):
- range: horizontal distance from the camera to that ground point;
- diameter: the box width over the image's columns per metre along the ground, across the line
  of sight, at the contact point (a rock's base line across the view spans the box's width);
- height: the point on the vertical above the contact point that images at the box's top row.
Positions are given in the label's frame and, when the label gives the rover pose, in SITE_FRAME.
The ground plane is the frame's own (geometry.rover_ground: z = 0 in MSL's ROVER_NAV_FRAME,
z = 0.294 m in MER's ROVER_FRAME) unless ``ground_z`` gives its height. A rock is ``ok`` only
when its range and diameter come out finite and positive; an image whose camera is not above
its ground plane is not sized at all.

Every sizer returns new rocks (rocks are values) and what the catalog records of the sizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, TypeVar

import cv2
import numpy as np

from rockdet.errors import ConfigError, exception_reason
from rockdet.geometry.cameras import Camera
from rockdet.geometry.frames import LabelGeometry
from rockdet.geometry.ground import GroundView, imaged_ground_area
from rockdet.geometry.rover_ground import GroundPlane

# size_flag values: "ok" when a rock was sized, else why it has no metric size
SIZED = "ok"
ABOVE_HORIZON = "above_horizon"
BEYOND_MAX_RANGE = "beyond_max_range"
NEARER_THAN_MIN_RANGE = "nearer_than_min_range"
IMAGE_SIZE_MISMATCH = "image_size_mismatch"
#: The image has no camera model rockdet can use.
NO_CAMERA_MODEL = "no_camera_model"
#: The geometry gives the rock no finite, positive range or diameter.
UNMEASURABLE = "unmeasurable"
#: Rocks farther than this from a label model get no metric size: a pixel there spans decimetres,
#: and the flat-ground assumption fails long before the horizon (the camera YAMLs' default too).
LABEL_MAX_RANGE_M = 50.0
#: Newton solve for a rock's height from its box top: iterations, step, and the least image rows
#: per metre of height below which the height is not measured.
HEIGHT_NEWTON_ITERATIONS = 20
HEIGHT_STEP_M = 1e-3
MIN_ROWS_PER_METRE = 1.0
#: Step along the ground for the image scale across the line of sight.
ACROSS_STEP_M = 1e-3


class Measurable(Protocol):
    """What sizing needs of a rock (catalog.rock.Rock is one): its box, where it meets the ground,
    and how to make the same rock with a metric size."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def width_px(self) -> float: ...

    @property
    def diameter_px(self) -> float: ...

    @property
    def ground_contact(self) -> tuple[float, float]: ...

    def with_size(self, size_flag: str, **metres: float | None) -> Any: ...


Rock = TypeVar("Rock", bound=Measurable)


@dataclass(frozen=True)
class ImageFrame:
    """What sizing needs to know of one image."""

    width: int
    height: int
    #: The image's own camera model from its label, or why it has none it can use.
    geometry: LabelGeometry | None = None
    geometry_problem: str | None = None
    #: Pixels with data (False: the product's no-data), or None when all are.
    valid: np.ndarray | None = None

    @classmethod
    def of(cls, image: Any) -> ImageFrame:
        """The frame of anything decoded with these attributes (a LoadedImage, a batch's ImageMeta)."""
        return cls(image.width, image.height, image.geometry, image.geometry_problem, image.valid)


@dataclass(frozen=True)
class Sized:
    """A sizer's answer for one image: its rocks with metric sizes, and what the catalog records
    of the sizing (ground area, camera model, notes); ``record`` None: the image was not sized at
    all, so its catalog has no metric columns."""

    rocks: tuple[Any, ...]
    record: dict[str, Any] | None


class Sizer(Protocol):
    def __call__(self, rocks: Sequence[Measurable], image: ImageFrame) -> Sized: ...


# --- one camera for the batch (a YAML file) ---------------------------------------------------

def size_rocks(camera: Camera, rocks: Sequence[Rock]) -> list[Rock]:
    """The rocks with range_m, ground_x_m, ground_y_m, diameter_m, height_m and size_flag."""
    if not rocks:
        return []
    if camera.config.model == "nadir":
        return [_size_nadir(camera, rock) for rock in rocks]
    contact_u, contact_v = (np.array(values, dtype=float) for values in zip(*[r.ground_contact for r in rocks]))
    ground_x, ground_y, depth, hits = camera.pixels_to_ground(contact_u, contact_v)
    left, _ = camera.normalized(np.array([r.x_min for r in rocks]), contact_v)
    right, _ = camera.normalized(np.array([r.x_max for r in rocks]), contact_v)
    _, top = camera.normalized(contact_u, np.array([r.y_min for r in rocks]))
    up = camera.rotation.T @ np.array([0.0, 0.0, 1.0])  # world up in camera coordinates
    sized = []
    for i, rock in enumerate(rocks):
        horizontal = float(np.hypot(ground_x[i], ground_y[i])) if hits[i] else np.nan
        if not hits[i]:
            sized.append(rock.with_size(ABOVE_HORIZON))
        elif horizontal > camera.config.max_range_m:
            sized.append(rock.with_size(BEYOND_MAX_RANGE))
        elif horizontal < camera.config.min_range_m:
            sized.append(rock.with_size(NEARER_THAN_MIN_RANGE))
        else:
            # Width at the contact point's depth: extent in normalized coordinates times depth.
            sized.append(rock.with_size(
                SIZED, range_m=horizontal, ground_x_m=float(ground_x[i]), ground_y_m=float(ground_y[i]),
                diameter_m=float((right[i] - left[i]) * depth[i]),
                height_m=_height_above_contact(camera, contact_u[i], contact_v[i], depth[i], top[i], up)))
    return sized


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


def _size_nadir(camera: Camera, rock: Rock) -> Rock:
    centre_u, centre_v = (rock.x_min + rock.x_max) / 2, (rock.y_min + rock.y_max) / 2
    ground_x, ground_y = float((centre_u - camera.cx) * camera.gsd), float((camera.cy - centre_v) * camera.gsd)
    return rock.with_size(SIZED, ground_x_m=ground_x, ground_y_m=ground_y, range_m=float(np.hypot(ground_x, ground_y)),
                          diameter_m=float(rock.diameter_px * camera.gsd))


def read_exclusion_mask(camera: Camera, width: int, height: int) -> np.ndarray | None:
    path = camera.config.exclusion_mask
    if path is None:
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ConfigError(f"{camera.source}: exclusion_mask {path} cannot be read")
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


class CameraSizer:
    """Sizes every image of a batch with one camera (its intrinsics scaled to each image's size)."""

    def __init__(self, camera: Camera):
        self.camera = camera
        self._areas: dict[tuple[int, int], float] = {}

    def __call__(self, rocks: Sequence[Rock], image: ImageFrame) -> Sized:
        width, height = image.width, image.height
        fitted = self.camera.for_image(width, height)
        if fitted is None:
            config = self.camera.config
            return Sized(tuple(rock.with_size(IMAGE_SIZE_MISMATCH) for rock in rocks),
                         {"ground_area_m2": None, "geometry_note": f"image {width}x{height} does not match "
                          f"the camera's aspect ({config.image_width}x{config.image_height})"})
        if (width, height) not in self._areas:
            self._areas[(width, height)] = fitted.ground_area(read_exclusion_mask(fitted, width, height))
        return Sized(tuple(size_rocks(fitted, rocks)), {"ground_area_m2": self._areas[(width, height)]})


# --- each image's own label model -------------------------------------------------------------

def size_rocks_on_ground(view: GroundView, rocks: Sequence[Rock], max_range_m: float = LABEL_MAX_RANGE_M) -> list[Rock]:
    """The rocks with range_m, diameter_m, height_m, ground_x/y_m (label frame), site_x/y/z_m
    and size_flag."""
    if not rocks:
        return []
    model = view.geometry.model
    contact = np.array([rock.ground_contact for rock in rocks], dtype=float)
    ground, _, hits = view.intersect(contact)
    columns_per_metre = _columns_per_metre_across(model, np.nan_to_num(ground), view)
    heights = _heights_imaged_at(model, np.nan_to_num(ground), view.up, np.array([r.y_min for r in rocks]))
    ranges = view.horizontal_range(np.nan_to_num(ground))
    site = view.geometry.to_site(np.nan_to_num(ground))
    sized = []
    for i, rock in enumerate(rocks):
        diameter = rock.width_px / columns_per_metre[i] if columns_per_metre[i] > 0 else np.nan
        if not hits[i]:
            sized.append(rock.with_size(ABOVE_HORIZON))
        elif ranges[i] > max_range_m:
            sized.append(rock.with_size(BEYOND_MAX_RANGE))
        elif not (np.isfinite(ranges[i]) and ranges[i] > 0 and np.isfinite(diameter) and diameter > 0
                  and np.isfinite(ground[i]).all()):
            sized.append(rock.with_size(UNMEASURABLE))
        else:
            on_site = site is not None and np.isfinite(site[i]).all()
            sized.append(rock.with_size(
                SIZED, range_m=float(ranges[i]), ground_x_m=float(ground[i, 0]), ground_y_m=float(ground[i, 1]),
                diameter_m=float(diameter),
                height_m=None if not np.isfinite(heights[i]) or heights[i] <= 0 else float(heights[i]),
                **({"site_x_m": float(site[i, 0]), "site_y_m": float(site[i, 1]), "site_z_m": float(site[i, 2])}
                   if on_site else {})))
    return sized


def _columns_per_metre_across(model, ground: np.ndarray, view: GroundView) -> np.ndarray:
    """Image columns per metre along the ground direction across the line of sight."""
    sight = ground - view.foot
    across = np.cross(view.up, sight)
    across /= np.maximum(np.linalg.norm(across, axis=1, keepdims=True), 1e-12)
    plus, _ = model.project(ground + ACROSS_STEP_M * across)
    minus, _ = model.project(ground - ACROSS_STEP_M * across)
    return np.abs(plus[:, 0] - minus[:, 0]) / (2 * ACROSS_STEP_M)


def _heights_imaged_at(model, ground: np.ndarray, up: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each ground point, the height on the vertical above it that images at ``rows``
    (Newton on the projected row; NaN where the row hardly changes with height: looking
    straight down, the vertical extent says little)."""
    heights = np.zeros(len(ground))
    for _ in range(HEIGHT_NEWTON_ITERATIONS):
        here, _ = model.project(ground + heights[:, None] * up)
        above, _ = model.project(ground + (heights + HEIGHT_STEP_M)[:, None] * up)
        slope = (above[:, 1] - here[:, 1]) / HEIGHT_STEP_M
        flat = np.abs(slope) < MIN_ROWS_PER_METRE
        step = np.where(flat, 0.0, (rows - here[:, 1]) / np.where(flat, 1.0, slope))
        heights = heights + step
        if np.all(np.abs(step) < 1e-6):
            break
    return np.where(flat, np.nan, heights)


class LabelSizer:
    """Sizes each image with its own label model (PDS products), on the ground plane of the
    model's frame or at ``ground_z`` (z down) in it. An image without any camera model is not
    sized (no metric columns, as without a camera); whatever goes wrong while sizing one image
    leaves its rocks unsized with the reason, and never fails the image."""

    def __init__(self, ground_z: float | None = None, max_range_m: float = LABEL_MAX_RANGE_M):
        self.ground_z, self.max_range_m = ground_z, max_range_m

    def describe(self) -> dict[str, Any]:
        return {"mode": "auto", "ground_z_m": self.ground_z, "max_range_m": self.max_range_m}

    def __call__(self, rocks: Sequence[Rock], image: ImageFrame) -> Sized:
        geometry = image.geometry
        if geometry is None:
            return Sized(tuple(rocks), None) if image.geometry_problem is None else \
                _unsized(rocks, image.geometry_problem)
        plane = GroundPlane.level(self.ground_z, f"z = {self.ground_z:g} m in {geometry.frame} (ground_z)") \
            if self.ground_z is not None else geometry.ground_plane
        if plane is None:
            return _unsized(rocks, f"camera model is in {geometry.frame}, whose origin is not on the ground "
                                   f"and whose ground height no document gives; give it as ground_z (--ground-z)")
        try:
            view = GroundView(geometry, plane)
            if not (np.isfinite(view.camera_height) and view.camera_height > 0):
                return _unsized(rocks, f"the camera is not above the ground plane ({plane.source}): "
                                       f"its height over it is {view.camera_height:.3g} m")
            sized = size_rocks_on_ground(view, rocks, self.max_range_m)
            invalid = None if image.valid is None else (~image.valid).astype(np.uint8)
            area = imaged_ground_area(view, image.width, image.height, 0.0, self.max_range_m, invalid)
        except Exception as exc:  # a model that passed its checks and still breaks: this image only
            return _unsized(rocks, f"sizing failed ({exception_reason(exc, with_type=True)})")
        notes = [f"ground: {plane.source}; camera {view.camera_height:.3f} m above it", *geometry.notes]
        return Sized(tuple(sized), {
            "ground_area_m2": area if area is not None and np.isfinite(area) else None,
            "camera_model": geometry.describe(), "ground_z_m": plane.level_z, "ground_plane": plane.describe(),
            "frame": geometry.frame, "geometry_note": "; ".join(notes)})


def _unsized(rocks: Sequence[Rock], reason: str) -> Sized:
    return Sized(tuple(rock.with_size(NO_CAMERA_MODEL) for rock in rocks),
                 {"ground_area_m2": None, "geometry_note": reason})
