"""Where the ground lies in each rover frame that camera models are given in.

JPL's rover frames point z down. Whether a frame's origin is on the ground is a property of the
mission's frame definitions, not of the label, so it is tabled here with its source:

- MSL and Mars 2020 ``ROVER_NAV_FRAME``: origin at the nominal ground below the rover, so the
  ground is z = 0 (JPL VICAR/PIG, ``PigMSL.h`` and ``PigM20.h``, ``getDefaultSurfaceGround``:
  "RNAV has been defined to have its origin at the nominal ground... thus, (0,0,0)").
  ``LOCAL_LEVEL_FRAME`` shares that origin, with its axes levelled.
- MER ``ROVER_FRAME``: origin 0.294 m above the ground, so the ground is z = +0.294 m (JPL
  VICAR/PIG, ``PigMER.h``, ``getDefaultSurfaceGround`` returns (0, 0, 0.294): "taken from MER
  engineering drawings and confirmed using correlation of an image looking at the ground of the
  lab. Confirmed again during nominal OPS"): the plane JPL's own MER tools project onto by
  default. In the nine Spirit products of the tests the camera centres lie at z = -1.19 to
  -1.25 m, 1.49 to 1.55 m above that ground. MER's ``LOCAL_LEVEL_FRAME`` shares the rover
  frame's origin.

The ground is taken level: a plane through the point below the rover at that height, whose
normal is SITE_FRAME's up (gravity) turned into the model's frame with the label's pose. A
rover parked on a slope (Spirit on Husband Hill, 15 degrees) would otherwise put the horizon
of its tilted deck plane where the camera sees ground. Without a usable pose the plane is the
frame's own z = height. A model given in ``SITE_FRAME`` is sized on the level plane through the
ground point below the rover, placed with the rover pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Every JPL rover frame points z down: "up" is -z.
Z_DOWN = np.array([0.0, 0.0, -1.0])
#: Height (z, m) of the ground in frames whose origin is fixed to the rover, by mission.
MSL_RNAV = "JPL VICAR/PIG PigMSL/PigM20: ROVER_NAV_FRAME origin at the nominal ground"
MER_ROVER = ("JPL VICAR/PIG PigMER default surface: the MER rover frame origin is 0.294 m above the ground "
             "(MER engineering drawings, confirmed in operations)")
ROVER_FRAME_GROUND = {
    ("MER", "ROVER_FRAME"): (0.294, MER_ROVER),
    ("MER", "LOCAL_LEVEL_FRAME"): (0.294, MER_ROVER),
    ("MSL", "ROVER_NAV_FRAME"): (0.0, MSL_RNAV),
    ("MSL", "LOCAL_LEVEL_FRAME"): (0.0, MSL_RNAV),
    ("M2020", "ROVER_NAV_FRAME"): (0.0, MSL_RNAV),
    ("M2020", "LOCAL_LEVEL_FRAME"): (0.0, MSL_RNAV),
}
#: Frames that only MSL and Mars 2020 use: their ground is known without naming the mission.
RNAV_FRAMES = ("ROVER_NAV_FRAME", "LOCAL_LEVEL_FRAME")


@dataclass(frozen=True)
class GroundPlane:
    """The ground as a plane in the camera model's frame."""

    point: np.ndarray
    #: Unit normal pointing away from the ground.
    up: np.ndarray
    #: Where the height comes from, for the catalog's notes.
    source: str

    @classmethod
    def level(cls, z: float, source: str) -> GroundPlane:
        return cls(np.array([0.0, 0.0, float(z)]), Z_DOWN.copy(), source)

    @property
    def level_z(self) -> float | None:
        """z where the plane crosses its frame's z axis (its height below the frame's origin),
        else None (a plane nearly parallel to that axis)."""
        if abs(self.up[2]) < 1e-6:
            return None
        return float(self.up @ self.point / self.up[2])

    def describe(self) -> dict[str, Any]:
        return {"point_m": np.round(self.point, 6).tolist(), "up": np.round(self.up, 9).tolist(),
                "source": self.source}


def mission_of(identifiers: str) -> str | None:
    """MER, MSL or M2020 from a label's host and mission names."""
    text = identifiers.upper()
    if "MER1" in text or "MER2" in text or "MARS EXPLORATION ROVER" in text:
        return "MER"
    if "MARS SCIENCE LABORATORY" in text or "MSL" in text:
        return "MSL"
    if "MARS2020" in text or "MARS 2020" in text or "M2020" in text or "PERSEVERANCE" in text:
        return "M2020"
    return None


def rover_ground_z(mission: str | None, frame: str) -> tuple[float, str] | None:
    """(ground z, source) in a rover-fixed frame, or None when no document gives it."""
    known = ROVER_FRAME_GROUND.get((mission or "", frame))
    if known is None and frame in RNAV_FRAMES and mission != "MER":
        known = ROVER_FRAME_GROUND[("MSL", frame)]
    return known


def ground_plane(mission: str | None, frame: str, rover_frame: str | None,
                 rover_rotation: np.ndarray | None, rover_offset: np.ndarray | None,
                 frame_rotation: np.ndarray | None = None) -> GroundPlane | None:
    """The ground in ``frame``: for rover-fixed frames the tabled height, levelled with the
    frame's rotation into SITE_FRAME (``frame_rotation``) when the label gives it; in SITE_FRAME
    the level plane through the ground point below the rover (from its pose); else unknown."""
    known = rover_ground_z(mission, frame)
    if known is not None:
        z, source = known
        if frame_rotation is None:
            return GroundPlane.level(z, f"z = {z:g} m in {frame} ({source}); no usable pose, so level in {frame}")
        up = frame_rotation.T @ Z_DOWN
        tilt = float(np.degrees(np.arccos(np.clip(-up[2], -1.0, 1.0))))
        return GroundPlane(np.array([0.0, 0.0, z]), up, f"z = {z:g} m in {frame} ({source}), levelled with the "
                           f"label's pose ({frame} tilted {tilt:.1f} deg from level)")
    if frame == "SITE_FRAME" and rover_frame is not None and rover_rotation is not None:
        below = rover_ground_z(mission, rover_frame)
        if below is not None:
            point = rover_rotation @ np.array([0.0, 0.0, below[0]]) + rover_offset
            return GroundPlane(point, Z_DOWN.copy(), f"level plane through the ground below the rover "
                               f"(z = {below[0]:g} m in {rover_frame}, {below[1]}), placed with the label's rover pose")
    return None
