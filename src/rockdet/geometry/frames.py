"""An image's camera model placed in its rover's frames: the model, the frame it is given in,
that frame's pose in SITE_FRAME and the ground below it (as read from a PDS label by
io.archives.label_geometry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rockdet.geometry.camera_models import CahvoreModel
from rockdet.geometry.rover_ground import GroundPlane, rover_ground_z

#: Frames whose origin is on the ground below the rover (MSL, Mars 2020): the ground is z = 0.
GROUND_ORIGIN_FRAMES = ("ROVER_NAV_FRAME", "LOCAL_LEVEL_FRAME")


class CameraModelError(ValueError):
    """The label has a camera model rockdet cannot use; the message says why, in one line."""


class PoseError(ValueError):
    """A frame's pose in the label cannot be used (the model itself may be fine)."""


@dataclass(frozen=True)
class LabelGeometry:
    model: CahvoreModel
    #: Frame the model is given in (e.g. ROVER_NAV_FRAME).
    frame: str
    #: Unit vector pointing up (away from the ground) in ``frame``.
    up: np.ndarray
    #: frame → SITE_FRAME: p_site = rotation @ p + offset (None when the label gives no usable pose).
    site_rotation: np.ndarray | None = None
    site_offset: np.ndarray | None = None
    #: The ground in ``frame`` as the mission's frame definitions place it (None: unknown).
    ground: GroundPlane | None = None
    #: The label the model was read from (e.g. "X.LBL" or "attached label of X.IMG").
    source: str = "label"
    #: What could not be used (a pose without its offset ...), for the catalog's notes.
    notes: tuple[str, ...] = ()

    @property
    def ground_plane(self) -> GroundPlane | None:
        if self.ground is not None:
            return self.ground
        known = rover_ground_z(None, self.frame) if self.frame in GROUND_ORIGIN_FRAMES else None
        return None if known is None else GroundPlane.level(known[0], f"z = {known[0]:g} m in {self.frame} ({known[1]})")


    def to_site(self, points: np.ndarray) -> np.ndarray | None:
        if self.site_rotation is None:
            return None
        return np.atleast_2d(points) @ self.site_rotation.T + self.site_offset

    def describe(self) -> dict[str, Any]:
        values = {"source": "label", "label": self.source, "frame": self.frame, **self.model.describe()}
        if self.site_rotation is not None:
            values["site_frame"] = {"offset": self.site_offset.tolist(),
                                    "rotation": self.site_rotation.round(9).tolist()}
        return values


def quaternion_matrix(quaternion) -> np.ndarray:
    """Rotation matrix of a (scalar-first) quaternion, as PDS labels give them; four finite
    numbers that normalise (a zero quaternion is no rotation)."""
    try:
        q = np.asarray(quaternion, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PoseError(f"quaternion {quaternion!r} is not numbers") from None
    if q.shape != (4,) or not np.isfinite(q).all():
        raise PoseError(f"quaternion {quaternion!r} is not four finite numbers")
    norm = float(np.linalg.norm(q))
    if norm < 1e-6:
        raise PoseError(f"quaternion {quaternion!r} is zero: it gives no rotation")
    s, x, y, z = q / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - s * z), 2 * (x * z + s * y)],
                     [2 * (x * y + s * z), 1 - 2 * (x * x + z * z), 2 * (y * z - s * x)],
                     [2 * (x * z - s * y), 2 * (y * z + s * x), 1 - 2 * (x * x + y * y)]])


def pose_matrix(offset, quaternion, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, offset) of a frame, checked; a PoseError names ``what`` and the problem."""
    if offset is None:
        raise PoseError(f"{what} has no ORIGIN_OFFSET_VECTOR")
    if quaternion is None:
        raise PoseError(f"{what} has no ORIGIN_ROTATION_QUATERNION")
    try:
        vector = np.asarray(offset, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise PoseError(f"{what}: ORIGIN_OFFSET_VECTOR {offset!r} is not numbers") from None
    if vector.shape != (3,) or not np.isfinite(vector).all():
        raise PoseError(f"{what}: ORIGIN_OFFSET_VECTOR {offset!r} is not three finite numbers")
    try:
        return quaternion_matrix(quaternion), vector
    except PoseError as exc:
        raise PoseError(f"{what}: ORIGIN_ROTATION_QUATERNION: {exc}") from None
