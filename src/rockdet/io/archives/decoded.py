"""A decoded product and the display orientation its label asks for."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from rockdet.errors import ImageReadError
from rockdet.geometry.camera_models import reoriented
from rockdet.geometry.frames import LabelGeometry


@dataclass
class PdsImage:
    """Pixel values as the label defines them, before the 8-bit stretch."""

    values: np.ndarray  # [H, W] or [H, W, 3], integer or float
    valid: np.ndarray  # bool [H, W]: False where a special constant marks no data
    notes: list[str] = field(default_factory=list)
    geometry: LabelGeometry | None = None
    #: Why the label's camera model cannot be used (the image itself is fine), else None.
    geometry_problem: str | None = None


@dataclass(frozen=True)
class Orientation:
    """How the stored [line, sample] grid turns into display order: lines and/or samples
    reversed (in stored axes), then the two axes exchanged."""

    flip_lines: bool = False
    flip_samples: bool = False
    swap_axes: bool = False

    @classmethod
    def from_pds3(cls, line_direction, sample_direction, where: str) -> Orientation:
        """PDS3 LINE_DISPLAY_DIRECTION (default DOWN) and SAMPLE_DISPLAY_DIRECTION (default RIGHT)."""
        line = str(line_direction or "DOWN").strip('"').upper()
        sample = str(sample_direction or "RIGHT").strip('"').upper()
        if line in ("DOWN", "UP") and sample in ("RIGHT", "LEFT"):
            return cls(line == "UP", sample == "LEFT", False)
        if line in ("RIGHT", "LEFT") and sample in ("DOWN", "UP"):
            return cls(line == "LEFT", sample == "UP", True)
        raise ImageReadError(f"{where}: LINE_DISPLAY_DIRECTION {line} with SAMPLE_DISPLAY_DIRECTION {sample} is "
                             f"no display orientation")

    @classmethod
    def from_pds4(cls, horizontal_axis, horizontal, vertical_axis, vertical, where: str) -> Orientation:
        """PDS4 disp:Display_Direction (default: Sample left to right, Line top to bottom)."""
        h_axis, v_axis = (str(a or d).strip().lower() for a, d in ((horizontal_axis, "sample"), (vertical_axis, "line")))
        right_to_left = "right to left" in str(horizontal or "").lower()
        bottom_to_top = "bottom to top" in str(vertical or "").lower()
        if (h_axis, v_axis) == ("sample", "line"):
            return cls(bottom_to_top, right_to_left, False)
        if (h_axis, v_axis) == ("line", "sample"):
            return cls(right_to_left, bottom_to_top, True)
        raise ImageReadError(f"{where}: display axes {horizontal_axis}/{vertical_axis} are not Line and Sample")

    @property
    def identity(self) -> bool:
        return not (self.flip_lines or self.flip_samples or self.swap_axes)

    def apply(self, image: PdsImage) -> PdsImage:
        """The image in display order; its camera model describes the turned pixels."""
        if self.identity:
            return image
        height, width = image.values.shape[:2]
        values, valid = image.values, image.valid
        if self.flip_lines:
            values, valid = values[::-1], valid[::-1]
        if self.flip_samples:
            values, valid = values[:, ::-1], valid[:, ::-1]
        if self.swap_axes:
            values, valid = np.swapaxes(values, 0, 1), valid.T
        geometry = image.geometry
        if geometry is not None:
            model = reoriented(geometry.model, width, height, self.flip_lines, self.flip_samples, self.swap_axes)
            geometry = replace(geometry, model=model)
        turned = [name for name, done in (("lines reversed", self.flip_lines), ("samples reversed", self.flip_samples),
                                          ("lines and samples exchanged", self.swap_axes)) if done]
        note = f"turned to the label's display orientation ({', '.join(turned)}; camera model turned with it)"
        return replace(image, values=np.ascontiguousarray(values), valid=np.ascontiguousarray(valid),
                       notes=image.notes + [note], geometry=geometry)
