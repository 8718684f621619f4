"""PDS3 and PDS4 image products through pdr (MillionConcepts' reader), checked against their labels.

pdr reads the pixels; rockdet checks first that the label's pointer and the data agree (a
pointer past the end or a truncated data section is one clear reason, not a reshape traceback),
then applies what the label says about the values: ``SAMPLE_BIT_MASK``, invalid and missing
constants (masked: never rocks), band-sequential bands, and raw Bayer frames (Chang'e PCAM 2B),
demosaiced with OpenCV. Stretching to 8 bit is the caller's (data/images.py), over valid pixels.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rockdet.archives.label_geometry import CameraModelError, LabelGeometry, geometry_from_pds3, geometry_from_pds4
from rockdet.errors import ImageReadError

#: Data files of PDS products (MER/MSL .IMG; Chang'e levels 2A/2B/2C).
DATA_SUFFIXES = {".img", ".2a", ".2b", ".2c"}
#: Detached labels: PDS3 .LBL, Chang'e .2AL/.2BL/.2CL, PDS4 .xml.
LABEL_SUFFIXES = {".lbl", ".2al", ".2bl", ".2cl", ".xml"}
#: Bytes per value of PDS4 element types.
PDS4_TYPE_BYTES = {"UnsignedByte": 1, "SignedByte": 1, "UnsignedMSB2": 2, "UnsignedLSB2": 2, "SignedMSB2": 2,
                   "SignedLSB2": 2, "UnsignedMSB4": 4, "UnsignedLSB4": 4, "SignedMSB4": 4, "SignedLSB4": 4,
                   "IEEE754MSBSingle": 4, "IEEE754LSBSingle": 4, "IEEE754MSBDouble": 8, "IEEE754LSBDouble": 8}
#: OpenCV's codes for demosaicing each Bayer layout to RGB.
BAYER_CODES = {"RGGB": cv2.COLOR_BayerRG2RGB, "BGGR": cv2.COLOR_BayerBG2RGB,
               "GRBG": cv2.COLOR_BayerGR2RGB, "GBRG": cv2.COLOR_BayerGB2RGB}


@dataclass
class PdsImage:
    """Pixel values as the label defines them, before the 8-bit stretch."""

    values: np.ndarray  # [H, W] or [H, W, 3], integer or float
    valid: np.ndarray  # bool [H, W]: False where a special constant marks no data
    notes: list[str] = field(default_factory=list)
    geometry: LabelGeometry | None = None
    #: Why the label's camera model cannot be used (the image itself is fine), else None.
    geometry_problem: str | None = None


def is_pds_product(path: Path) -> bool:
    return path.suffix.lower() in DATA_SUFFIXES | LABEL_SUFFIXES


def label_beside(data_file: Path) -> Path | None:
    """The detached label of a data file (same stem), if there is one."""
    for suffix in sorted(LABEL_SUFFIXES):
        for candidate in (data_file.with_suffix(suffix), data_file.with_suffix(suffix.upper())):
            if candidate.is_file() and candidate != data_file:
                return candidate
    return None


def read_pds_image(path: Path) -> PdsImage:
    """The image of a PDS3/PDS4 product given by its data file or its label."""
    try:
        import pdr
    except ImportError:
        raise ImageReadError(f"{path}: reading PDS products needs pdr: pip install 'rockdet[pds]'") from None
    label = path if path.suffix.lower() in LABEL_SUFFIXES else (label_beside(path) or path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            product = pdr.read(str(label), label_fn=str(label))
        except Exception as exc:  # pdr raises many kinds on a malformed label
            raise ImageReadError(f"{path}: not a readable PDS label ({_first_line(exc)})") from None
        if product.standard == "PDS4":
            return _read_pds4(path, label, product)
        if product.standard != "PDS3":
            raise ImageReadError(f"{path}: not a PDS3 or PDS4 product ({product.standard})")
        return _read_pds3(path, label, product, caught)


def _read_pds3(path: Path, label: Path, product, caught) -> PdsImage:
    meta = product.metadata
    image_meta = meta.get("IMAGE")
    if not hasattr(image_meta, "get"):
        raise ImageReadError(f"{path}: the label describes no IMAGE object")
    _check_pds3_span(path, label, meta, image_meta)
    values = _load(path, product, "IMAGE", caught)
    notes = [f"PDS3 {label.name}"]
    mask = image_meta.get("SAMPLE_BIT_MASK")
    if isinstance(mask, int) and np.issubdtype(values.dtype, np.integer) and mask:
        values = values & np.asarray(mask, dtype=values.dtype)
        notes.append(f"SAMPLE_BIT_MASK {mask:#x} applied ({bin(mask).count('1')} valid bits)")
    constants = [image_meta.get(key) for key in ("INVALID_CONSTANT", "MISSING_CONSTANT")]
    values = _bands_last(values, int(image_meta.get("BANDS", 1) or 1))
    valid = _valid(values, [c for c in constants if isinstance(c, (int, float))])
    values, notes = _demosaic_if_bayer(values, _bayer_pattern_pds3(meta, image_meta, path), notes)
    geometry, problem = _geometry(lambda: geometry_from_pds3(meta))
    return PdsImage(values, valid, notes, geometry, problem)


def _read_pds4(path: Path, label: Path, product) -> PdsImage:
    xml_text = label.read_text(errors="replace")
    array = _pds4_array(xml_text)
    if array is None:
        raise ImageReadError(f"{path}: the PDS4 label describes no Array_2D/Array_3D image")
    name, data_file, offset, shape, item_bytes, constants = array
    data_path = label.parent / data_file
    _check_span(path, data_path, offset, math.prod(shape) * item_bytes, "the image array")
    try:
        values = np.asarray(product[name])
    except Exception as exc:
        raise ImageReadError(f"{path}: data section does not match the label ({_first_line(exc)})") from None
    if values.ndim not in (2, 3):
        raise ImageReadError(f"{path}: image array has {values.ndim} axes; rockdet reads 2 or 3")
    values = _bands_last(values, values.shape[0] if values.ndim == 3 else 1)
    valid = _valid(values, constants)
    notes = [f"PDS4 {label.name}"]
    values, notes = _demosaic_if_bayer(values, _bayer_pattern_pds4(xml_text, path), notes)
    geometry, problem = _geometry(lambda: geometry_from_pds4(xml_text))
    return PdsImage(values, valid, notes, geometry, problem)


def _check_pds3_span(path: Path, label: Path, meta, image_meta) -> None:
    pointer = meta.get("^IMAGE")
    record_bytes = int(meta.get("RECORD_BYTES", 1) or 1)
    data_path = path if path.suffix.lower() in DATA_SUFFIXES else label
    if isinstance(pointer, (list, tuple)):  # ("FILE.IMG", record) or ("FILE.IMG", byte <BYTES>)
        data_path = label.parent / str(pointer[0])
        pointer = pointer[1] if len(pointer) > 1 else 1
    elif isinstance(pointer, str):  # ^IMAGE = "FILE.IMG": the data start the file
        data_path, pointer = label.parent / pointer, 1
    if pointer is None:
        raise ImageReadError(f"{path}: the label has no ^IMAGE pointer")
    if isinstance(pointer, dict):  # 1025 <BYTES>: a 1-based byte offset
        start = int(pointer["value"]) - 1 if str(pointer.get("units", "")).upper() == "BYTES" else \
            (int(pointer["value"]) - 1) * record_bytes
    else:
        start = (int(pointer) - 1) * record_bytes
    bits = int(image_meta.get("SAMPLE_BITS", 8))
    size = int(image_meta.get("LINES", 0)) * int(image_meta.get("LINE_SAMPLES", 0)) * \
        int(image_meta.get("BANDS", 1) or 1) * bits // 8
    _check_span(path, data_path, start, size, "^IMAGE")


def _check_span(path: Path, data_path: Path, start: int, size: int, what: str) -> None:
    if not data_path.is_file():
        raise ImageReadError(f"{path}: data file {data_path.name} named by the label is missing")
    available = data_path.stat().st_size
    if start >= available:
        raise ImageReadError(f"{path}: {what} points past the end of the file (byte {start:,} of a "
                             f"{available:,}-byte file)")
    if start + size > available:
        raise ImageReadError(f"{path}: data section truncated: the label describes {size:,} bytes from "
                             f"byte {start:,}, the file holds {available - start:,}")


def _load(path: Path, product, name: str, caught) -> np.ndarray:
    try:
        values = product[name]
    except Exception as exc:
        raise ImageReadError(f"{path}: data section does not match the label ({_first_line(exc)})") from None
    if not isinstance(values, np.ndarray):  # pdr hands back the label and warns when loading fails
        reason = next((str(w.message) for w in caught if "Unable to load" in str(w.message)), "pdr could not load it")
        raise ImageReadError(f"{path}: data section does not match the label ({reason})")
    return np.ma.getdata(values)


def _bands_last(values: np.ndarray, bands: int) -> np.ndarray:
    """Band-sequential [B, H, W] → [H, W, B]; one band stays [H, W]; RGB only from three."""
    if values.ndim == 3 and values.shape[0] == bands:
        values = np.moveaxis(values, 0, -1)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[:, :, 0]
    if values.ndim == 3 and values.shape[2] != 3:
        values = values[:, :, 0]
    return values


def _valid(values: np.ndarray, constants: list[float]) -> np.ndarray:
    gray = values if values.ndim == 2 else values[:, :, 0]
    valid = np.ones(gray.shape, dtype=bool)
    for constant in constants:
        hit = values == constant
        valid &= ~(hit if hit.ndim == 2 else hit.all(axis=2))
    if np.issubdtype(values.dtype, np.floating):
        valid &= np.isfinite(gray)
    return valid


def _demosaic_if_bayer(values: np.ndarray, pattern: str | None, notes: list[str]):
    if pattern is None or values.ndim != 2:
        return values, notes
    code = BAYER_CODES.get(pattern.upper())
    if code is None:
        return values, notes + [f"unknown Bayer pattern {pattern}: left as grayscale"]
    raw = np.clip(values, 0, 65535).astype(np.uint16)
    return cv2.cvtColor(raw, code), notes + [f"raw Bayer {pattern.upper()} demosaiced (OpenCV)"]


def _bayer_pattern_pds3(meta, image_meta, path: Path) -> str | None:
    """A Bayer layout named by the IMAGE object, the label or its INSTRUMENT_STATE_PARMS."""
    for where in (image_meta, meta, meta.get("INSTRUMENT_STATE_PARMS") or {}):
        for key in ("BAYER_PATTERN", "BAYER_MODE"):
            value = where.get(key)
            if isinstance(value, str) and value.strip('"').upper() in BAYER_CODES:
                return value.strip('"').upper()
    return _change_pcam_raw(path, str(meta.get("INSTRUMENT_ID", "")))


def _bayer_pattern_pds4(xml_text: str, path: Path) -> str | None:
    for pattern in BAYER_CODES:
        if f">{pattern}<" in xml_text and "bayer" in xml_text.lower():
            return pattern
    return _change_pcam_raw(path, xml_text)


def _change_pcam_raw(path: Path, instrument_text: str) -> str | None:
    """Chang'e PCAM level-2B frames are raw RGGB Bayer mosaics."""
    if path.suffix.lower() in (".2b", ".2bl") and "PCAM" in instrument_text.upper():
        return "RGGB"
    return None


def _pds4_array(xml_text: str) -> tuple[str, str, int, tuple[int, ...], int, list[float]] | None:
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(xml_text)
    local = lambda element: element.tag.rsplit("}", 1)[-1]  # noqa: E731
    for area in (e for e in root.iter() if local(e) == "File_Area_Observational"):
        file_name = next((e.text.strip() for e in area.iter() if local(e) == "file_name" and e.text), None)
        for array in (e for e in area if local(e).startswith("Array_2D") or local(e).startswith("Array_3D")):
            fields: dict[str, Any] = {local(e): (e.text or "").strip() for e in array.iter()}
            name = fields.get("local_identifier") or fields.get("name") or local(array)
            shape = tuple(int(e.findtext("./{*}elements") or 0) for e in array if local(e) == "Axis_Array")
            item_bytes = PDS4_TYPE_BYTES.get(fields.get("data_type", ""), 1)
            constants = []
            for element in array.iter():
                if local(element) in ("missing_constant", "invalid_constant") and element.text:
                    try:
                        constants.append(float(element.text))
                    except ValueError:
                        pass
            return name, file_name, int(float(fields.get("offset", "0") or 0)), shape, item_bytes, constants
    return None


def _geometry(parse) -> tuple[LabelGeometry | None, str | None]:
    try:
        return parse(), None
    except CameraModelError as exc:
        return None, str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:200]
