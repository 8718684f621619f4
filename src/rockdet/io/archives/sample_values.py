"""What a label says about its samples, applied to the decoded values: bit masks, special
constants, the order of the axes, and raw Bayer mosaics."""

from __future__ import annotations

import cv2
import numpy as np

#: OpenCV's codes for demosaicing each Bayer layout (the colours of the first two pixels of the
#: first two rows) to RGB. OpenCV's older names are shifted by one pixel (its "BayerRG" is an
#: RGGB frame decoded with red and blue exchanged); the *RGGB2RGB names say what they mean.
BAYER_CODES = {"RGGB": cv2.COLOR_BayerRGGB2RGB, "BGGR": cv2.COLOR_BayerBGGR2RGB,
               "GRBG": cv2.COLOR_BayerGRBG2RGB, "GBRG": cv2.COLOR_BayerGBRG2RGB}
#: Axis names as PDS3 and PDS4 labels spell them, to rockdet's (line, sample, band).
AXIS_ALIASES = {"line": "line", "lines": "line", "row": "line", "y": "line",
                "sample": "sample", "samples": "sample", "line_sample": "sample", "column": "sample", "x": "sample",
                "band": "band", "bands": "band", "wavelength": "band", "channel": "band"}


def apply_bit_mask(values: np.ndarray, mask, notes: list[str]) -> np.ndarray:
    """``SAMPLE_BIT_MASK`` applied in the samples' unsigned view (a mask of all 16 bits on signed
    16-bit samples is legal and keeps them as they are). Masks written as bare binary digits
    (``0000111111111111``, as some MER RDRs do) are read as binary."""
    if not np.issubdtype(values.dtype, np.integer):
        return values
    if isinstance(mask, str):
        digits = mask.strip().strip('"').removeprefix("2#").removesuffix("#")
        if not digits or set(digits) - {"0", "1"}:
            notes.append(f"SAMPLE_BIT_MASK {mask!r} is not a binary mask: ignored")
            return values
        mask = int(digits, 2)
    if not isinstance(mask, int) or isinstance(mask, bool) or mask <= 0:
        return values
    bits = values.dtype.itemsize * 8
    full = (1 << bits) - 1
    if mask & full == full:
        notes.append(f"SAMPLE_BIT_MASK {mask:#x}: all {bits} bits valid")
        return values
    size = values.dtype.itemsize
    unsigned = values.astype(values.dtype.newbyteorder("=")).view(f"u{size}")
    masked = unsigned & np.array(mask & full, dtype=f"u{size}")
    masked = masked.view(f"i{size}") if values.dtype.kind == "i" else masked
    notes.append(f"SAMPLE_BIT_MASK {mask & full:#x} applied ({bin(mask & full).count('1')} valid bits)")
    return masked


def to_lines_samples_bands(values: np.ndarray, axes: list[str], where: str) -> np.ndarray:
    """``values`` whose axes are named ``axes`` (slowest first) as [line, sample] or
    [line, sample, band]; three bands stay colour, one band or any other count is grey (band 1)."""
    names = [AXIS_ALIASES.get(str(name).strip().lower().replace(" ", "_")) for name in axes]
    if values.ndim != len(names) or None in names or len(set(names)) != len(names) or \
            not {"line", "sample"} <= set(names):
        raise ValueError(f"{where}: axes {list(axes)} are not Line, Sample[, Band]")
    order = [names.index(axis) for axis in ("line", "sample", "band") if axis in names]
    values = np.transpose(values, order)
    if values.ndim == 3 and values.shape[2] != 3:
        values = values[:, :, 0]
    return np.ascontiguousarray(values)


def valid_pixels(values: np.ndarray, constants: list[float]) -> np.ndarray:
    gray = values if values.ndim == 2 else values[:, :, 0]
    valid = np.ones(gray.shape, dtype=bool)
    for constant in constants:
        hit = values == constant
        valid &= ~(hit if hit.ndim == 2 else hit.all(axis=2))
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        valid &= finite if finite.ndim == 2 else finite.all(axis=2)
    return valid


def demosaic_if_bayer(values: np.ndarray, pattern: str | None, notes: list[str]):
    if pattern is None or values.ndim != 2:
        return values, notes
    code = BAYER_CODES.get(pattern.upper())
    if code is None:
        return values, notes + [f"unknown Bayer pattern {pattern}: left as grayscale"]
    raw = np.clip(values, 0, 65535).astype(np.uint8 if values.dtype == np.uint8 else np.uint16)
    return cv2.cvtColor(raw, code), notes + [f"raw Bayer {pattern.upper()} demosaiced (OpenCV)"]


def change_pcam_raw(data_name: str, instrument_text: str) -> str | None:
    """Chang'e PCAM level-2B frames are raw RGGB Bayer mosaics."""
    if data_name.lower().endswith((".2b", ".2bl")) and "PCAM" in instrument_text.upper():
        return "RGGB"
    return None
