"""JPL's CAHV, CAHVOR and CAHVORE camera models, both directions, vectorised in numpy.

Mars rover labels (PDS3 ``GEOMETRIC_CAMERA_MODEL``, PDS4 ``geom:Camera_Model_Parameters``) give
each image's model in a rover frame. CAHV is a linear (pinhole) model; CAHVOR adds radial
distortion about the optical axis O (coefficients R); CAHVORE adds a moving entrance pupil (E)
and a linearity parameter L between perspective (L = 1) and fish-eye (L = 0). The formulas are
Gennery's ("Generalized camera calibration including fish-eye lenses", IJCV 2006) as JPL's cmod
library implements them; CAHV and CAHVOR are CAHVORE with E = 0, L = 1 (and R = 0, O = A for CAHV),
so one code path serves all three.

Pixel coordinates here are rockdet's: pixel (i, j) covers [i, i + 1) x [j, j + 1), so the centre
of the first pixel is 0.5. The CAHV family puts that centre at 0; the conversion is in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: CAHV's first pixel centre is 0.0; rockdet's is 0.5.
PIXEL_CENTRE_SHIFT = 0.5
#: CAHVORE model types: the linearity a type implies (type 3 gives its own).
LINEARITY_OF_TYPE = {1: 1.0, 2: 0.0}
NEWTON_ITERATIONS = 100
NEWTON_TOLERANCE = 1e-12
#: |L| below this is treated as the fish-eye limit L = 0 (as JPL's cmod does).
LINEARITY_EPSILON = 1e-15
#: |A| may differ from 1 by rounding in the label, not more.
A_NORM_TOLERANCE = 1e-3
#: Focal lengths in pixels a camera model may have: a 64-pixel fish-eye thumbnail has ~30, the
#: narrowest rover camera (ChemCam RMI, ~20 µrad per pixel) ~50,000; 1e6 is 1 µrad per pixel.
MIN_FOCAL_PX = 1.0
MAX_FOCAL_PX = 1e6
#: Sine of the least angle between the image axes H and V span (about 30 degrees).
MIN_AXIS_SINE = 0.5


@dataclass(frozen=True)
class CahvoreModel:
    """A CAHV-family camera model; ``kind`` is what the label called it."""

    kind: str
    c: np.ndarray
    a: np.ndarray
    h: np.ndarray
    v: np.ndarray
    o: np.ndarray
    r: np.ndarray
    e: np.ndarray
    linearity: float

    @classmethod
    def cahv(cls, c, a, h, v) -> CahvoreModel:
        a = _vec(a)
        return cls("CAHV", _vec(c), a, _vec(h), _vec(v), _unit(a), np.zeros(3), np.zeros(3), 1.0)

    @classmethod
    def cahvor(cls, c, a, h, v, o, r) -> CahvoreModel:
        return cls("CAHVOR", _vec(c), _vec(a), _vec(h), _vec(v), _unit(o), _vec(r), np.zeros(3), 1.0)

    @classmethod
    def cahvore(cls, c, a, h, v, o, r, e, model_type: int, linearity: float | None = None) -> CahvoreModel:
        if model_type not in (1, 2, 3):
            raise ValueError(f"CAHVORE model type {model_type} is not 1 (perspective), 2 (fish-eye) or 3 (general)")
        if model_type == 3 and linearity is None:
            raise ValueError("CAHVORE type 3 needs its linearity parameter")
        value = LINEARITY_OF_TYPE.get(model_type, linearity)
        return cls("CAHVORE", _vec(c), _vec(a), _vec(h), _vec(v), _unit(o), _vec(r), _vec(e), float(value))

    # --- world point -> pixel -------------------------------------------------------------
    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [N, 3] → pixels [N, 2] (rockdet convention) and a mask of points that
        image (in front of the camera, inside the model's domain)."""
        p = np.atleast_2d(np.asarray(points, float)) - self.c
        zeta = p @ self.o
        lam = p - zeta[:, None] * self.o
        lam_mag = np.linalg.norm(lam, axis=1)
        theta = self._solve_theta(zeta, lam_mag)
        chi = self._chi_of_theta(theta)
        valid = np.abs(theta * self.linearity) < np.pi / 2
        on_axis = lam_mag < 1e-15 * np.maximum(np.abs(zeta), 1.0)
        safe_chi = np.where(on_axis | (chi == 0), 1.0, chi)
        zeta_p = np.where(on_axis, zeta, lam_mag / safe_chi)
        mu = self.r[0] + self.r[1] * chi ** 2 + self.r[2] * chi ** 4
        distorted = zeta_p[:, None] * self.o + (1 + np.where(on_axis, 0.0, mu))[:, None] * lam
        alpha = distorted @ self.a
        valid &= alpha > 0
        alpha = np.where(alpha > 0, alpha, 1.0)
        pixels = np.stack([(distorted @ self.h) / alpha, (distorted @ self.v) / alpha], axis=1)
        return pixels + PIXEL_CENTRE_SHIFT, valid

    def _solve_theta(self, zeta: np.ndarray, lam_mag: np.ndarray) -> np.ndarray:
        """Angle of the incoming ray from O, the pupil shift included (Newton on Gennery's f)."""
        theta = np.arctan2(lam_mag, zeta)
        e0, e1, e2 = self.e
        if not self.e.any():
            return theta
        for _ in range(NEWTON_ITERATIONS):
            cos, sin = np.cos(theta), np.sin(theta)
            t2 = theta ** 2
            shift = e0 + e1 * t2 + e2 * t2 ** 2
            slope = zeta * cos + lam_mag * sin - (1 - cos) * shift - (theta - sin) * (2 * e1 * theta + 4 * e2 * theta ** 3)
            step = (zeta * sin - lam_mag * cos - (theta - sin) * shift) / slope
            theta = theta - step
            if np.all(np.abs(step) < NEWTON_TOLERANCE):
                break
        return theta

    def _chi_of_theta(self, theta: np.ndarray) -> np.ndarray:
        linearity = self.linearity
        if linearity > LINEARITY_EPSILON:
            return np.tan(linearity * theta) / linearity
        if linearity < -LINEARITY_EPSILON:
            return np.sin(linearity * theta) / linearity
        return theta

    def _theta_of_chi(self, chi: np.ndarray) -> np.ndarray:
        linearity = self.linearity
        if linearity > LINEARITY_EPSILON:
            return np.arctan(linearity * chi) / linearity
        if linearity < -LINEARITY_EPSILON:
            return np.arcsin(np.clip(linearity * chi, -1, 1)) / linearity
        return chi

    # --- pixel -> ray ---------------------------------------------------------------------
    def rays(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels [N, 2] (rockdet convention) → ray origins [N, 3] and unit directions [N, 3]."""
        xy = np.atleast_2d(np.asarray(pixels, float)) - PIXEL_CENTRE_SHIFT
        x, y = xy[:, :1], xy[:, 1:2]
        # The CAHV ray: in the planes whose normals are V - yA and H - xA.
        direction = np.cross(self.v - y * self.a, self.h - x * self.a)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        if np.cross(self.v, self.h) @ self.a < 0:
            direction = -direction
        omega = direction @ self.o
        lam = direction - omega[:, None] * self.o
        lam_mag = np.linalg.norm(lam, axis=1)
        on_axis = lam_mag < 1e-15
        distorted_tangent = lam_mag / omega
        chi = self._undistort(distorted_tangent)
        theta = self._theta_of_chi(chi)
        across = lam / np.where(on_axis, 1.0, lam_mag)[:, None]
        unit = np.cos(theta)[:, None] * self.o + np.sin(theta)[:, None] * across
        unit[on_axis] = self.o
        t2 = theta ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            pupil_factor = np.where(np.abs(theta) > 1e-8, theta / np.sin(theta) - 1, t2 / 6)
        shift = pupil_factor * (self.e[0] + self.e[1] * t2 + self.e[2] * t2 ** 2)
        return self.c + shift[:, None] * self.o, unit

    def _undistort(self, distorted: np.ndarray) -> np.ndarray:
        """chi with chi * (1 + r0 + r1 chi² + r2 chi⁴) = distorted (Newton)."""
        r0, r1, r2 = self.r
        if not self.r.any():
            return distorted
        chi = distorted.copy()
        for _ in range(NEWTON_ITERATIONS):
            c2 = chi ** 2
            value = chi * (1 + r0 + r1 * c2 + r2 * c2 ** 2) - distorted
            step = value / (1 + r0 + 3 * r1 * c2 + 5 * r2 * c2 ** 2)
            chi = chi - step
            if np.all(np.abs(step) < NEWTON_TOLERANCE):
                break
        return chi

    def describe(self) -> dict:
        values = {"model": self.kind, "C": self.c.tolist(), "A": self.a.tolist(), "H": self.h.tolist(),
                  "V": self.v.tolist()}
        if self.kind != "CAHV":
            values |= {"O": self.o.tolist(), "R": self.r.tolist()}
        if self.kind == "CAHVORE":
            values |= {"E": self.e.tolist(), "linearity": self.linearity}
        return values


def reoriented(model: CahvoreModel, width: int, height: int, flip_lines: bool, flip_samples: bool,
               swap_axes: bool) -> CahvoreModel:
    """The model of the same camera for its image turned to display order: rows and/or columns
    of a ``width`` x ``height`` image reversed, then (``swap_axes``) lines and samples exchanged.
    Pixels enter the CAHV family only through H and V (x = d.H / d.A), so only they change."""
    h, v = model.h, model.v
    if flip_samples:
        h = (width - 1) * model.a - h
    if flip_lines:
        v = (height - 1) * model.a - v
    if swap_axes:
        h, v = v, h
    return replace(model, h=h, v=v)


def check_model(model: CahvoreModel) -> None:
    """Refuse, with a ValueError naming the problem, a model no camera could have.

    A is a unit vector; H and V each give a focal length |A x H|, |A x V| in pixels between
    MIN_FOCAL_PX and MAX_FOCAL_PX (so neither is zero, nor parallel to A); H and V are not
    parallel to each other (the image axes they span cross at a sensible angle); R and E are
    finite. A model that passes gives finite rays for every pixel."""
    a_norm = float(np.linalg.norm(model.a))
    if abs(a_norm - 1.0) > A_NORM_TOLERANCE:
        raise ValueError(f"A is not a unit vector (|A| = {a_norm:.6g})")
    a = model.a / a_norm
    for name, vector in (("H", model.h), ("V", model.v)):
        focal = float(np.linalg.norm(np.cross(a, vector)))
        if not MIN_FOCAL_PX <= focal <= MAX_FOCAL_PX:
            raise ValueError(f"{name} gives a focal length |A x {name}| of {focal:.3g} pixels; a camera has "
                             f"{MIN_FOCAL_PX:g} to {MAX_FOCAL_PX:.0e} ({name} zero, parallel to A or absurdly scaled)")
    h_axis = np.cross(a, model.h)
    v_axis = np.cross(a, model.v)
    crossing = float(np.linalg.norm(np.cross(h_axis, v_axis)) / (np.linalg.norm(h_axis) * np.linalg.norm(v_axis)))
    if crossing < MIN_AXIS_SINE:
        raise ValueError("H and V are (nearly) parallel: the model's image axes do not span a plane")
    if not (np.isfinite(model.r).all() and np.isfinite(model.e).all() and np.isfinite(model.linearity)):
        raise ValueError("R, E or the linearity is not finite")



def _vec(values) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.shape != (3,) or not np.isfinite(array).all():
        raise ValueError(f"expected three finite numbers, got {values!r}")
    return array


def _unit(values) -> np.ndarray:
    array = _vec(values)
    norm = np.linalg.norm(array)
    if norm == 0:
        raise ValueError("a camera axis vector is zero")
    return array / norm
