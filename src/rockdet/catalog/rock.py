"""One rock, as a value: where it is in the image, how confident the detector is, its shape from a
mask, and its size in metres once a camera model has measured it.

Rocks are frozen. Each stage that learns something about a rock (its mask, its size, its number
in the catalog) returns a new one, so a rock handed out once never changes under its holder.

Size definitions (also in the README):
- ``diameter_px``: with a mask, the equivalent-circle diameter 2·sqrt(area/π); without, the mean
  of box width and height.
- ``area_px``: with a mask, its pixel count; without, the ellipse inscribed in the box, π/4·w·h.
- ``major_axis_px``/``minor_axis_px`` (masks only): axes of the ellipse with the mask's second
  moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

BASE_COLUMNS = ["rock_id", "score", "x_min", "y_min", "x_max", "y_max", "x_center", "y_center",
                "width_px", "height_px", "diameter_px", "area_px", "range_m", "diameter_m"]
MASK_COLUMNS = ["major_axis_px", "minor_axis_px"]
GEOMETRY_COLUMNS = ["ground_x_m", "ground_y_m", "height_m", "size_flag", "site_x_m", "site_y_m", "site_z_m"]


@dataclass(frozen=True)
class MaskShape:
    """What a rock's mask says of it: its pixel count, moment-ellipse axes and the middle of its
    lowest row (where it meets the ground)."""

    area_px: float
    major_axis_px: float
    minor_axis_px: float
    contact_x: float
    contact_y: float


@dataclass(frozen=True)
class Rock:
    rock_id: int
    score: float
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    #: From the mask when there is one (pixel count), else None (box ellipse is used).
    mask_area_px: float | None = None
    major_axis_px: float | None = None
    minor_axis_px: float | None = None
    #: Ground contact point in pixels: the lowest mask pixels, else (None) the box's bottom centre.
    contact_x: float | None = None
    contact_y: float | None = None
    range_m: float | None = None
    diameter_m: float | None = None
    ground_x_m: float | None = None
    ground_y_m: float | None = None
    height_m: float | None = None
    #: Why a rock has no metric size ("ok" when it has one; None: nothing tried to size it).
    size_flag: str | None = None
    #: Position in the label's SITE_FRAME (PDS products whose label gives the rover pose).
    site_x_m: float | None = None
    site_y_m: float | None = None
    site_z_m: float | None = None

    @classmethod
    def detected(cls, rock_id: int, score: float, box: tuple[float, float, float, float],
                 shape: MaskShape | None = None) -> Rock:
        """A rock as the detector found it: a box and a score, and its mask's shape when it has one."""
        x_min, y_min, x_max, y_max = (float(v) for v in box)
        if shape is None:
            return cls(rock_id, float(score), x_min, y_min, x_max, y_max, contact_x=(x_min + x_max) / 2,
                       contact_y=y_max)
        return cls(rock_id, float(score), x_min, y_min, x_max, y_max, mask_area_px=shape.area_px,
                   major_axis_px=shape.major_axis_px, minor_axis_px=shape.minor_axis_px,
                   contact_x=shape.contact_x, contact_y=shape.contact_y)

    def numbered(self, rock_id: int) -> Rock:
        return replace(self, rock_id=rock_id)

    def with_size(self, size_flag: str, **metres: float | None) -> Rock:
        """This rock with a new metric size (``range_m``, ``diameter_m``, ...; every metric field
        not given is cleared) and the flag saying how it went."""
        unknown = set(metres) - set(METRIC_FIELDS)
        if unknown:
            raise TypeError(f"not metric fields of a rock: {sorted(unknown)}")
        return replace(self, **{**dict.fromkeys(METRIC_FIELDS), **metres, "size_flag": size_flag})

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x_min, self.y_min, self.x_max, self.y_max

    @property
    def ground_contact(self) -> tuple[float, float]:
        """Where the rock meets the ground in the image: from its mask when one was measured,
        else the bottom centre of its box."""
        return (self.contact_x if self.contact_x is not None else (self.x_min + self.x_max) / 2,
                self.contact_y if self.contact_y is not None else self.y_max)

    @property
    def width_px(self) -> float:
        return self.x_max - self.x_min

    @property
    def height_px(self) -> float:
        return self.y_max - self.y_min

    @property
    def area_px(self) -> float:
        if self.mask_area_px is not None:
            return self.mask_area_px
        return math.pi / 4 * self.width_px * self.height_px

    @property
    def diameter_px(self) -> float:
        if self.mask_area_px is not None:
            return 2 * math.sqrt(self.mask_area_px / math.pi)
        return (self.width_px + self.height_px) / 2

    def row(self, with_masks: bool, with_geometry: bool) -> dict[str, Any]:
        """The rock as one catalog row (pixels and metres rounded to 0.001, score to 1e-5)."""
        values = {"rock_id": self.rock_id, "score": round(self.score, 5),
                  "x_min": self.x_min, "y_min": self.y_min, "x_max": self.x_max, "y_max": self.y_max,
                  "x_center": (self.x_min + self.x_max) / 2, "y_center": (self.y_min + self.y_max) / 2,
                  "width_px": self.width_px, "height_px": self.height_px,
                  "diameter_px": self.diameter_px, "area_px": self.area_px,
                  "range_m": self.range_m, "diameter_m": self.diameter_m}
        if with_masks:
            values.update(major_axis_px=self.major_axis_px, minor_axis_px=self.minor_axis_px)
        if with_geometry:
            values.update(ground_x_m=self.ground_x_m, ground_y_m=self.ground_y_m,
                          height_m=self.height_m, size_flag=self.size_flag, site_x_m=self.site_x_m,
                          site_y_m=self.site_y_m, site_z_m=self.site_z_m)
        return {k: (round(v, 3) if isinstance(v, float) and k != "score" else v) for k, v in values.items()}


#: The fields a camera model fills (sizing replaces all of them at once).
METRIC_FIELDS = tuple(f.name for f in fields(Rock) if f.name.endswith("_m"))


def catalog_columns(with_masks: bool, with_geometry: bool) -> list[str]:
    return BASE_COLUMNS + (MASK_COLUMNS if with_masks else []) + (GEOMETRY_COLUMNS if with_geometry else [])
