"""Rock sizes from each image's own camera model (PDS labels): rays meet the ground plane.

Every image brings its model and pose (archives.label_geometry), so a rover mast pointing
differently in every frame needs no calibration work. A rock is sized where its ground contact
ray meets the ground plane z = ground_z of the label's frame (z down):
- range: horizontal distance from the camera to that ground point;
- diameter: the box width over the image's columns per metre along the ground, across the line
  of sight, at the contact point (a rock's base line across the view spans the box's width);
- height: the point on the vertical above the contact point that images at the box's top row.
Positions are given in the label's frame and, when the label gives the rover pose, in SITE_FRAME.
The ground plane is the frame's own (archives.rover_ground: z = 0 in MSL's ROVER_NAV_FRAME,
z = 0.294 m in MER's ROVER_FRAME) unless ``--ground-z`` gives its height. A rock is ``ok`` only
when its range and diameter come out finite and positive; an image whose camera is not above
its ground plane is not sized at all.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from rockdet.catalog.files import Rock
from rockdet.errors import exception_reason
from rockdet.geometry.rover_ground import GroundPlane
from rockdet.geometry.sizing import ABOVE_HORIZON, BEYOND_MAX_RANGE, imaged_ground_area
from rockdet.io.archives.label_geometry import LabelGeometry

#: Rocks farther than this get no metric size: a pixel there spans decimetres, and the flat-ground
#: assumption fails long before the horizon (the camera YAMLs' max_range_m default, too).
LABEL_MAX_RANGE_M = 50.0
#: size_flag when an image has no camera model rockdet can use.
NO_CAMERA_MODEL = "no_camera_model"
#: size_flag when the geometry gives a rock no finite, positive range or diameter.
UNMEASURABLE = "unmeasurable"
#: Newton solve for a rock's height from its box top: iterations, finite-difference step, and the
#: least image rows per metre of height below which the height is not measured.
HEIGHT_NEWTON_ITERATIONS = 20
#: Step along the ground for the image scale across the line of sight.
ACROSS_STEP_M = 1e-3
HEIGHT_STEP_M = 1e-3
MIN_ROWS_PER_METRE = 1.0


class GroundView:
    """A label camera model over the ground plane z = ``ground_z`` (z down) of its frame.

    Offers the interface of geometry.Camera that sizing.imaged_ground_area uses, with ground
    coordinates relative to the point below the camera."""

    def __init__(self, geometry: LabelGeometry, ground: float | GroundPlane, width: int, height: int,
                 max_range_m: float = LABEL_MAX_RANGE_M):
        plane = ground if isinstance(ground, GroundPlane) else \
            GroundPlane(np.array([0.0, 0.0, float(ground)]), geometry.up, "--ground-z")
        self.geometry, self.plane = geometry, plane
        self.up = plane.up / np.linalg.norm(plane.up)
        self._ground_point = np.asarray(plane.point, dtype=float)
        centre = geometry.model.c
        #: Height of the camera above the ground plane (m).
        self.camera_height = float(self.up @ centre - self.up @ self._ground_point)
        self.foot = centre - self.up * self.camera_height
        # Axes in the plane (the frame's x and y when it is level), for areas on a tilted plane.
        along = np.array([1.0, 0.0, 0.0]) if abs(self.up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        along = along - (along @ self.up) * self.up
        self._plane_axes = np.stack([along / np.linalg.norm(along), np.cross(along / np.linalg.norm(along), self.up)])
        self.config = SimpleNamespace(model="perspective", image_width=width, image_height=height,
                                      min_range_m=0.0, max_range_m=max_range_m)

    def intersect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground points [N, 3] of the pixels' rays, their distance from the ray origin, and
        whether the ray meets the ground in front of the camera."""
        origins, directions = self.geometry.model.rays(pixels)
        towards = directions @ self.up
        above = origins @ self.up - self._ground_point @ self.up
        hits = (towards < -1e-9) & (above > 0)
        distance = np.where(hits, above / np.where(hits, -towards, 1.0), np.nan)
        return origins + distance[:, None] * directions, distance, hits

    def pixels_to_ground(self, u, v):
        u, v = np.asarray(u, float), np.asarray(v, float)
        points, distance, hits = self.intersect(np.stack([u.ravel(), v.ravel()], axis=1))
        relative = (points - self.foot) @ self._plane_axes.T  # coordinates in the ground plane
        shape = u.shape
        return relative[:, 0].reshape(shape), relative[:, 1].reshape(shape), distance.reshape(shape), \
            hits.reshape(shape)

    def horizontal_range(self, points: np.ndarray) -> np.ndarray:
        offset = points - self.foot
        return np.linalg.norm(offset - (offset @ self.up)[:, None] * self.up, axis=1)


def size_rocks_on_ground(view: GroundView, rocks: list[Rock]) -> None:
    """Fill range_m, diameter_m, height_m, ground_x/y_m (label frame), site_x/y/z_m and size_flag."""
    if not rocks:
        return
    model = view.geometry.model
    contact = np.array([rock.ground_contact for rock in rocks], dtype=float)
    ground, distance, hits = view.intersect(contact)
    columns_per_metre = _columns_per_metre_across(model, np.nan_to_num(ground), view)
    heights = _heights_imaged_at(model, np.nan_to_num(ground), view.up, np.array([r.y_min for r in rocks]))
    ranges = view.horizontal_range(np.nan_to_num(ground))
    site = view.geometry.to_site(np.nan_to_num(ground))
    for i, rock in enumerate(rocks):
        if not hits[i]:
            rock.size_flag = ABOVE_HORIZON
            continue
        if ranges[i] > view.config.max_range_m:
            rock.size_flag = BEYOND_MAX_RANGE
            continue
        diameter = rock.width_px / columns_per_metre[i] if columns_per_metre[i] > 0 else np.nan
        if not (np.isfinite(ranges[i]) and ranges[i] > 0 and np.isfinite(diameter) and diameter > 0
                and np.isfinite(ground[i]).all()):
            rock.size_flag = UNMEASURABLE
            continue
        rock.range_m = float(ranges[i])
        rock.ground_x_m, rock.ground_y_m = float(ground[i, 0]), float(ground[i, 1])
        rock.diameter_m = float(diameter)
        rock.height_m = None if not np.isfinite(heights[i]) or heights[i] <= 0 else float(heights[i])
        if site is not None and np.isfinite(site[i]).all():
            rock.site_x_m, rock.site_y_m, rock.site_z_m = (float(v) for v in site[i])
        rock.size_flag = "ok"


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


def label_sizer(ground_z: float | None, max_range_m: float = LABEL_MAX_RANGE_M) -> Callable[..., dict | None]:
    """For the batch writer: size an image's rocks with its own label model.

    Returns what the catalog JSON records, or None for an image without any camera model
    (its catalog then has no metric columns, as without --camera). Whatever goes wrong while
    sizing one image leaves its rocks unsized with the reason; it never fails the image."""

    def size(rocks: list[Rock], image: Any) -> dict | None:
        geometry, problem = image.geometry, image.geometry_problem
        if geometry is None:
            return None if problem is None else _unsized(rocks, problem)
        plane = GroundPlane.level(ground_z, f"z = {ground_z:g} m in {geometry.frame} (--ground-z)") \
            if ground_z is not None else geometry.ground_plane
        if plane is None:
            return _unsized(rocks, f"camera model is in {geometry.frame}, whose origin is not on the ground "
                                   f"and whose ground height no document gives; give it with --ground-z")
        try:
            view = GroundView(geometry, plane, image.width, image.height, max_range_m)
            if not (np.isfinite(view.camera_height) and view.camera_height > 0):
                return _unsized(rocks, f"the camera is not above the ground plane ({plane.source}): "
                                       f"its height over it is {view.camera_height:.3g} m")
            size_rocks_on_ground(view, rocks)
            invalid = None if image.valid is None else (~image.valid).astype(np.uint8)
            area = imaged_ground_area(view, invalid)
        except Exception as exc:  # a model that passed its checks and still breaks: this image only
            return _unsized(rocks, f"sizing failed ({exception_reason(exc, with_type=True)})")
        notes = [f"ground: {plane.source}; camera {view.camera_height:.3f} m above it", *geometry.notes]
        return {"ground_area_m2": area if area is not None and np.isfinite(area) else None,
                "camera_model": geometry.describe(), "ground_z_m": plane.level_z, "ground_plane": plane.describe(),
                "frame": geometry.frame, "geometry_note": "; ".join(notes)}

    return size


def _unsized(rocks: list[Rock], reason: str) -> dict:
    for rock in rocks:
        rock.size_flag = NO_CAMERA_MODEL
        rock.range_m = rock.diameter_m = rock.height_m = rock.ground_x_m = rock.ground_y_m = None
        rock.site_x_m = rock.site_y_m = rock.site_z_m = None
    return {"ground_area_m2": None, "geometry_note": reason}
