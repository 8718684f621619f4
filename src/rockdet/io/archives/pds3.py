"""PDS3 IMAGE objects: the label checked before pdr reads a byte, then the values as it defines them.

Checked first, each with one reason: LINES, LINE_SAMPLES and BANDS are positive whole numbers;
SAMPLE_BITS is a width rockdet reads (8, 16, 32 or 64 bits for integers, 32 or 64 for reals:
packed samples such as 7 or 12 bits would decode as garbage); BAND_STORAGE_TYPE is BAND_SEQUENTIAL,
LINE_INTERLEAVED or SAMPLE_INTERLEAVED; the ^IMAGE pointer names a file in the label's own folder
(archives.files) and the data section it describes lies inside that file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rockdet.errors import ImageReadError, exception_reason
from rockdet.io.archives.decoded import Orientation, PdsImage
from rockdet.io.archives.files import file_in_folder, refuse_non_product
from rockdet.io.archives.pds3_groups import text
from rockdet.io.archives.sample_values import (
    BAYER_CODES,
    apply_bit_mask,
    change_pcam_raw,
    demosaic_if_bayer,
    to_lines_samples_bands,
    valid_pixels,
)

INTEGER_BITS = (8, 16, 32, 64)
REAL_BITS = (32, 64)
BAND_STORAGE_TYPES = ("BAND_SEQUENTIAL", "LINE_INTERLEAVED", "SAMPLE_INTERLEAVED")


@dataclass(frozen=True)
class Pds3Layout:
    lines: int
    samples: int
    bands: int
    bits: int
    data_path: Path
    start: int

    @property
    def size(self) -> int:
        return self.lines * self.samples * self.bands * self.bits // 8


def read_pds3_values(path: Path, label: Path, product, caught) -> tuple[PdsImage, Orientation, Path]:
    """The IMAGE object's values, valid pixels and notes (geometry is the caller's), its display
    orientation and the data file it was read from."""
    meta = product.metadata
    image_meta = meta.get("IMAGE")
    if not hasattr(image_meta, "get"):
        raise ImageReadError(f"{path}: the label {label.name} describes no IMAGE object")
    layout = pds3_layout(path, label, meta, image_meta)
    if layout.data_path != label and layout.data_path.is_file():
        refuse_non_product(layout.data_path)
    check_span(path, layout.data_path, layout.start, layout.size, "^IMAGE")
    orientation = Orientation.from_pds3(image_meta.get("LINE_DISPLAY_DIRECTION"),
                                        image_meta.get("SAMPLE_DISPLAY_DIRECTION"), str(path))
    values = _load(path, product, caught)
    expected = (layout.lines, layout.samples) if layout.bands == 1 else (layout.bands, layout.lines, layout.samples)
    if values.shape != expected and not (layout.bands == 1 and values.shape == (1, *expected)):
        raise ImageReadError(f"{path}: decoded {values.shape}, the label describes {expected}")
    notes = [f"PDS3 {label.name}"]
    values = apply_bit_mask(values, image_meta.get("SAMPLE_BIT_MASK"), notes)
    # pdr hands back every multi-band image band first, whatever its BAND_STORAGE_TYPE.
    values = to_lines_samples_bands(values.reshape(expected), ["band", "line", "sample"] if layout.bands > 1
                                    else ["line", "sample"], str(path))
    constants = [image_meta.get(key) for key in ("INVALID_CONSTANT", "MISSING_CONSTANT")]
    valid = valid_pixels(values, [c for c in constants if isinstance(c, (int, float)) and not isinstance(c, bool)])
    values, notes = demosaic_if_bayer(values, _bayer_pattern(meta, image_meta, path), notes)
    return PdsImage(values, valid, notes), orientation, layout.data_path


def pds3_layout(path: Path, label: Path, meta: Mapping, image_meta: Mapping) -> Pds3Layout:
    lines, samples = _count(image_meta, "LINES", path), _count(image_meta, "LINE_SAMPLES", path)
    bands = _count(image_meta, "BANDS", path, default=1)
    sample_type = text(image_meta.get("SAMPLE_TYPE")).upper()
    bits = _count(image_meta, "SAMPLE_BITS", path, default=8)
    allowed = REAL_BITS if "REAL" in sample_type or "FLOAT" in sample_type else INTEGER_BITS
    if bits not in allowed:
        raise ImageReadError(f"{path}: SAMPLE_BITS = {bits} with SAMPLE_TYPE {sample_type or 'unset'}: rockdet reads "
                             f"{', '.join(map(str, allowed))}-bit samples (packed samples are not supported)")
    storage = text(image_meta.get("BAND_STORAGE_TYPE")).upper() or "BAND_SEQUENTIAL"
    if bands > 1 and storage not in BAND_STORAGE_TYPES:
        raise ImageReadError(f"{path}: BAND_STORAGE_TYPE {storage} is not one of {', '.join(BAND_STORAGE_TYPES)}")
    data_path, start = _pointer(path, label, meta)
    return Pds3Layout(lines, samples, bands, bits, data_path, start)


def _count(image_meta: Mapping, key: str, path: Path, default: int | None = None) -> int:
    value = image_meta.get(key, default)
    if value is None:
        raise ImageReadError(f"{path}: the IMAGE object has no {key}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ImageReadError(f"{path}: {key} = {value!r} is not a positive whole number")
    return int(value)


def _pointer(path: Path, label: Path, meta: Mapping) -> tuple[Path, int]:
    """(data file, first byte) of ^IMAGE: a record number in the label's own file, or a file in
    the label's folder with an optional record or <BYTES> offset."""
    pointer: Any = meta.get("^IMAGE")
    record_bytes = meta.get("RECORD_BYTES", 1) or 1
    if isinstance(record_bytes, bool) or not isinstance(record_bytes, int) or record_bytes < 1:
        raise ImageReadError(f"{path}: RECORD_BYTES = {record_bytes!r} is not a positive whole number")
    data_path = label
    if isinstance(pointer, (list, tuple)):  # ("FILE.IMG", record) or ("FILE.IMG", byte <BYTES>)
        if not pointer:
            raise ImageReadError(f"{path}: the ^IMAGE pointer is empty")
        data_path = file_in_folder(label.parent, str(pointer[0]), label, "^IMAGE")
        pointer = pointer[1] if len(pointer) > 1 else 1
    elif isinstance(pointer, str):  # ^IMAGE = "FILE.IMG": the data start the file
        data_path, pointer = file_in_folder(label.parent, pointer, label, "^IMAGE"), 1
    if pointer is None:
        raise ImageReadError(f"{path}: the label has no ^IMAGE pointer")
    units = ""
    if isinstance(pointer, Mapping):  # 1025 <BYTES>: a 1-based byte offset
        units, pointer = str(pointer.get("units", "")).upper(), pointer.get("value")
    if isinstance(pointer, bool) or not isinstance(pointer, int) or pointer < 1:
        raise ImageReadError(f"{path}: the ^IMAGE pointer {pointer!r} is not a positive record or byte number")
    start = pointer - 1 if units == "BYTES" else (pointer - 1) * record_bytes
    return data_path, start


def check_span(path: Path, data_path: Path, start: int, size: int, what: str) -> None:
    if not data_path.is_file():
        raise ImageReadError(f"{path}: data file {data_path.name} named by the label is missing")
    available = data_path.stat().st_size
    if start >= available:
        raise ImageReadError(f"{path}: {what} points past the end of the file (byte {start:,} of a "
                             f"{available:,}-byte file)")
    if start + size > available:
        raise ImageReadError(f"{path}: data section truncated: the label describes {size:,} bytes from "
                             f"byte {start:,}, the file holds {available - start:,}")


def _load(path: Path, product, caught) -> np.ndarray:
    try:
        values = product["IMAGE"]
    except Exception as exc:
        raise ImageReadError(f"{path}: data section does not match the label "
                             f"({exception_reason(exc, with_type=True)})") from None
    if not isinstance(values, np.ndarray):  # pdr hands back the label and warns when loading fails
        reason = next((str(w.message) for w in caught if "Unable to load" in str(w.message)), "pdr could not load it")
        raise ImageReadError(f"{path}: data section does not match the label ({reason})")
    return np.ma.getdata(values)


def _bayer_pattern(meta, image_meta, path: Path) -> str | None:
    """A Bayer layout named by the IMAGE object, the label or its INSTRUMENT_STATE_PARMS."""
    for where in (image_meta, meta, meta.get("INSTRUMENT_STATE_PARMS") or {}):
        for key in ("BAYER_PATTERN", "BAYER_MODE"):
            value = text(where.get(key)).upper() if hasattr(where, "get") else ""
            if value in BAYER_CODES:
                return value
    return change_pcam_raw(path.name, text(meta.get("INSTRUMENT_ID")))

