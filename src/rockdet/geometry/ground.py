"""The ground a camera looks at: a label camera model over a ground plane, and the area of ground
an image covers. Both kinds of camera (geometry.cameras.Camera from a YAML file, GroundView from
a label model) meet the ground through one interface, GroundProjection."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rockdet.geometry.frames import LabelGeometry
from rockdet.geometry.rover_ground import GroundPlane

#: Pixel step of the grid used to integrate the imaged ground area.
AREA_GRID_STEP_PX = 4


class GroundProjection(Protocol):
    """Where pixels' rays meet the ground."""

    def pixels_to_ground(self, u, v) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ground (x, y) in metres, the distance or depth along each ray, and whether it meets
        the ground in front of the camera; arrays shaped like ``u``."""


class GroundView:
    """A label camera model over a ground plane of its frame (z down). Ground coordinates are
    in the plane, relative to the point below the camera."""

    def __init__(self, geometry: LabelGeometry, plane: GroundPlane):
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
        along = along / np.linalg.norm(along)
        self._plane_axes = np.stack([along, np.cross(along, self.up)])

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


def imaged_ground_area(projection: GroundProjection, width: int, height: int, min_range_m: float,
                       max_range_m: float, exclusion: np.ndarray | None = None,
                       step: int = AREA_GRID_STEP_PX) -> float:
    """Ground area in m² an image of ``width`` x ``height`` px sees between the two ranges,
    without the pixels ``exclusion`` marks (non-zero: hardware or no data)."""
    us = np.arange(0, width + step, step, dtype=float).clip(max=width)
    vs = np.arange(0, height + step, step, dtype=float).clip(max=height)
    grid_u, grid_v = np.meshgrid(us, vs)
    gx, gy, _, hits = projection.pixels_to_ground(grid_u, grid_v)
    # Shoelace area of each grid cell's ground quadrilateral.
    x0, y0, x1, y1 = gx[:-1, :-1], gy[:-1, :-1], gx[:-1, 1:], gy[:-1, 1:]
    x2, y2, x3, y3 = gx[1:, 1:], gy[1:, 1:], gx[1:, :-1], gy[1:, :-1]
    area = 0.5 * np.abs((x0 * y1 - x1 * y0) + (x1 * y2 - x2 * y1) + (x2 * y3 - x3 * y2) + (x3 * y0 - x0 * y3))
    valid = hits[:-1, :-1] & hits[:-1, 1:] & hits[1:, 1:] & hits[1:, :-1]
    centre_u, centre_v = (grid_u[:-1, :-1] + grid_u[1:, 1:]) / 2, (grid_v[:-1, :-1] + grid_v[1:, 1:]) / 2
    cx, cy, _, centre_hits = projection.pixels_to_ground(centre_u, centre_v)
    ranges = np.hypot(cx, cy)
    valid &= centre_hits & (ranges >= min_range_m) & (ranges <= max_range_m)
    if exclusion is not None:
        rows = np.clip(centre_v.astype(int), 0, exclusion.shape[0] - 1)
        cols = np.clip(centre_u.astype(int), 0, exclusion.shape[1] - 1)
        valid &= exclusion[rows, cols] == 0
    return float(np.nansum(np.where(valid, area, 0.0)))
