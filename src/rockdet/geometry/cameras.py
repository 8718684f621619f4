"""A camera from a YAML file on flat local ground: pixels ↔ ground and the ground it images.

Frames. World: origin on the ground below the camera, x right, y forward (horizontal), z up.
Camera: x right, y down, z along the optical axis. A perspective camera sits at height h, looks
forward and down by ``pitch_deg`` (depression below horizontal), turned by ``roll_deg`` about its
axis (positive: the image content turns clockwise). A nadir camera looks straight down with a
fixed ground sample distance.

Assumption and error sources (README "Metric sizing"): the ground is a plane; a rock's bottom
(box bottom centre, or its lowest mask pixels) touches it; its width is measured at the depth of
that contact point, which is its front, so sizes run low by about radius/range; calibration
errors in height and pitch scale ranges directly; distortion beyond k1, k2 is ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np

from rockdet.errors import ConfigError
from rockdet.geometry.ground import imaged_ground_area
from rockdet.typed_yaml import ConfigPath, Settings, read_yaml_mapping, validate_mapping

#: Rays closer to the horizon than this (in the vertical component) do not meet the ground.
HORIZON_EPSILON = 1e-6
#: Relative aspect-ratio mismatch tolerated before an image is refused for this camera.
ASPECT_TOLERANCE = 0.01


class CameraConfig(Settings):
    model: Literal["perspective", "nadir"] = "perspective"
    image_width: int = 0
    image_height: int = 0
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    hfov_deg: float | None = None
    height_m: float | None = None
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    k1: float = 0.0
    k2: float = 0.0
    #: Nadir: metres per pixel, or altitude_m with fx/hfov_deg.
    gsd_m: float | None = None
    altitude_m: float | None = None
    #: Rocks nearer than min_range_m or farther than max_range_m get no metric size.
    min_range_m: float = 0.0
    max_range_m: float = 50.0
    #: Optional PNG, non-zero where the ground is hidden (rover or lander hardware).
    exclusion_mask: ConfigPath | None = None
    name: str = ""


class Camera:
    """Validated camera with pixel ↔ ground transforms."""

    def __init__(self, config: CameraConfig, source: str = "camera"):
        self.config = config
        self.source = source
        where = f"{source}: "
        c = config
        if c.image_width <= 0 or c.image_height <= 0:
            raise ConfigError(f"{where}image_width and image_height must be positive")
        if c.fx is None and c.hfov_deg is None and c.gsd_m is None:
            raise ConfigError(f"{where}give fx (and fy) or hfov_deg" +
                              (", or gsd_m" if c.model == "nadir" else ""))
        if c.hfov_deg is not None and not 0 < c.hfov_deg < 180:
            raise ConfigError(f"{where}hfov_deg must be between 0 and 180, got {c.hfov_deg}")
        self.fx = c.fx if c.fx is not None else (
            c.image_width / 2 / math.tan(math.radians(c.hfov_deg) / 2) if c.hfov_deg else None)
        self.fy = c.fy if c.fy is not None else self.fx
        self.cx = c.cx if c.cx is not None else c.image_width / 2
        self.cy = c.cy if c.cy is not None else c.image_height / 2
        if self.fx is not None and (self.fx <= 0 or self.fy <= 0):
            raise ConfigError(f"{where}fx and fy must be positive")
        if c.max_range_m <= c.min_range_m or c.min_range_m < 0:
            raise ConfigError(f"{where}need 0 <= min_range_m < max_range_m")
        if c.model == "nadir":
            if c.gsd_m is None and (c.altitude_m is None or self.fx is None):
                raise ConfigError(f"{where}nadir camera needs gsd_m, or altitude_m with fx or hfov_deg")
            self.gsd = c.gsd_m if c.gsd_m is not None else c.altitude_m / self.fx
            if self.gsd <= 0:
                raise ConfigError(f"{where}gsd_m must be positive, got {self.gsd}")
            return
        if c.height_m is None or c.height_m <= 0:
            raise ConfigError(f"{where}height_m must be positive (camera height above the ground), "
                              f"got {c.height_m}")
        if not -90 < c.pitch_deg <= 90:
            raise ConfigError(f"{where}pitch_deg must be in (-90, 90] (depression below horizontal), "
                              f"got {c.pitch_deg}")
        if not -180 <= c.roll_deg <= 180:
            raise ConfigError(f"{where}roll_deg must be in [-180, 180], got {c.roll_deg}")
        self.rotation = camera_to_world(c.pitch_deg, c.roll_deg)
        self.position = np.array([0.0, 0.0, c.height_m])

    # --- image size -------------------------------------------------------------------------
    def for_image(self, width: int, height: int) -> "Camera | None":
        """This camera for an image of another size (scaled intrinsics), or None if the aspect differs."""
        c = self.config
        if (width, height) == (c.image_width, c.image_height):
            return self
        sx, sy = width / c.image_width, height / c.image_height
        if abs(sx / sy - 1) > ASPECT_TOLERANCE:
            return None
        scaled = c.model_copy(update={"image_width": width, "image_height": height,
                                      "fx": self.fx * sx if self.fx else None, "fy": self.fy * sy if self.fy else None,
                                      "cx": self.cx * sx, "cy": self.cy * sy, "hfov_deg": None,
                                      "gsd_m": (self.gsd / sx if c.model == "nadir" else None)})
        return Camera(scaled, self.source)

    # --- perspective transforms -------------------------------------------------------------
    def normalized(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates → undistorted normalized image coordinates."""
        xd, yd = (np.asarray(u, float) - self.cx) / self.fx, (np.asarray(v, float) - self.cy) / self.fy
        x, y = xd.copy(), yd.copy()
        if self.config.k1 or self.config.k2:
            for _ in range(20):  # fixed-point inversion of the radial model
                r2 = x * x + y * y
                factor = 1 + self.config.k1 * r2 + self.config.k2 * r2 * r2
                x, y = xd / factor, yd / factor
        return x, y

    def pixels_to_ground(self, u, v) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ground (x, y) in metres, camera depth of that point, and whether the ray meets the ground."""
        x, y = self.normalized(u, v)
        rays = np.stack([x, y, np.ones_like(x)], axis=-1) @ self.rotation.T
        down = rays[..., 2]
        hits = down < -HORIZON_EPSILON
        t = np.where(hits, -self.position[2] / np.where(hits, down, -1.0), np.nan)
        ground = self.position + t[..., None] * rays
        return ground[..., 0], ground[..., 1], t, hits  # t is the depth: rays have unit z in the camera

    def ground_to_pixels(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [N, 3] → pixels [N, 2] and a mask of points in front of the camera."""
        camera = (np.asarray(points, float) - self.position) @ self.rotation
        in_front = camera[:, 2] > HORIZON_EPSILON
        z = np.where(in_front, camera[:, 2], 1.0)
        x, y = camera[:, 0] / z, camera[:, 1] / z
        r2 = x * x + y * y
        factor = 1 + self.config.k1 * r2 + self.config.k2 * r2 * r2
        pixels = np.stack([self.fx * x * factor + self.cx, self.fy * y * factor + self.cy], axis=1)
        return pixels, in_front

    def ground_area(self, exclusion: np.ndarray | None = None) -> float:
        """Ground area in m² the image sees between min_range_m and max_range_m, without the
        pixels ``exclusion`` marks (non-zero: hardware hiding the ground)."""
        c = self.config
        if c.model == "nadir":
            visible = c.image_width * c.image_height - (int((exclusion > 0).sum()) if exclusion is not None else 0)
            return float(visible * self.gsd ** 2)
        return imaged_ground_area(self, c.image_width, c.image_height, c.min_range_m, c.max_range_m, exclusion)

    def describe(self) -> dict:
        values = {"model": self.config.model, "name": self.config.name,
                  "image_width": self.config.image_width, "image_height": self.config.image_height}
        if self.config.model == "nadir":
            return {**values, "gsd_m": self.gsd}
        return {**values, "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "height_m": self.config.height_m, "pitch_deg": self.config.pitch_deg,
                "roll_deg": self.config.roll_deg, "k1": self.config.k1, "k2": self.config.k2,
                "min_range_m": self.config.min_range_m, "max_range_m": self.config.max_range_m}


def camera_to_world(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation whose columns are the camera's x, y, z axes in world coordinates."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    forward = np.array([0.0, math.cos(p), -math.sin(p)])
    right = np.array([1.0, 0.0, 0.0])
    down = np.cross(forward, right)
    rolled_right = math.cos(r) * right + math.sin(r) * down
    rolled_down = -math.sin(r) * right + math.cos(r) * down
    return np.stack([rolled_right, rolled_down, forward], axis=1)


def load_camera(path: Path | str) -> Camera:
    """Read and validate a camera YAML (configs/cameras/*.yaml)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "camera")
    config = validate_mapping(CameraConfig, raw, source=path, base_dir=path.parent)
    if not config.name:
        config.name = path.stem
    return Camera(config, str(path))
