"""PDS4 image arrays (Mars 2020, Chang'e, any mission), found by their class in the label.

The array is the first ``Array_2D_Image`` / ``Array_3D_Image`` of a ``File_Area_Observational``
(else the first other ``Array_2D*`` / ``Array_3D*`` class: ``Array_2D``, ``Array_3D``,
``Array_3D_Spectrum`` ...), never looked up by ``local_identifier``: real Chang'e (GRAS) labels
give the array none. Its axes are ordered by ``sequence_number`` and named by ``axis_name``
(Line, Sample, Band in any order); ``axis_index_order`` says which index runs fastest. Raw
arrays are read at the label's offset with numpy, exactly as the label types them; arrays in a
FITS file go through pdr, which needs astropy for them.
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rockdet.errors import ImageReadError, exception_reason
from rockdet.io.archives.decoded import Orientation, PdsImage
from rockdet.io.archives.files import file_in_folder, refuse_non_product
from rockdet.io.archives.pds3 import check_span
from rockdet.io.archives.sample_values import (
    BAYER_CODES,
    change_pcam_raw,
    demosaic_if_bayer,
    to_lines_samples_bands,
    valid_pixels,
)

#: numpy types of the PDS4 element types.
PDS4_DTYPES = {"UnsignedByte": "u1", "SignedByte": "i1", "UnsignedMSB2": ">u2", "UnsignedLSB2": "<u2",
               "SignedMSB2": ">i2", "SignedLSB2": "<i2", "UnsignedMSB4": ">u4", "UnsignedLSB4": "<u4",
               "SignedMSB4": ">i4", "SignedLSB4": "<i4", "UnsignedMSB8": ">u8", "UnsignedLSB8": "<u8",
               "SignedMSB8": ">i8", "SignedLSB8": "<i8", "IEEE754MSBSingle": ">f4", "IEEE754LSBSingle": "<f4",
               "IEEE754MSBDouble": ">f8", "IEEE754LSBDouble": "<f8"}
IMAGE_CLASSES = ("Array_2D_Image", "Array_3D_Image")
#: File areas whose structures pds4_tools (and so pdr) numbers, in its order.
NUMBERED_AREAS = ("File_Area_Observational", "File_Area_Observational_Supplemental", "File_Area_Ancillary",
                  "File_Area_Browse", "File_Area_Inventory")
FITS_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fz")


@dataclass(frozen=True)
class Pds4Array:
    """One array as its label describes it."""

    kind: str
    #: The name pdr gives it: local_identifier, else name, else ARRAY_<n> (pds4_tools' numbering).
    pdr_name: str
    data_path: Path
    offset: int
    dtype: np.dtype
    #: (axis_name, elements) by sequence_number, slowest first for Last Index Fastest.
    axes: tuple[tuple[str, int], ...]
    last_index_fastest: bool
    constants: tuple[float, ...]


def read_pds4_values(path: Path, label: Path, xml_text: str) -> tuple[PdsImage, Orientation, Path]:
    """The image array's values, valid pixels and notes, its display orientation and data file."""
    root = _parse(path, xml_text)
    for name in data_file_names(xml_text):  # every file the label names stays beside it
        file_in_folder(label.parent, name, label, "file_name")
    array = image_array(path, label, root)
    shape = tuple(elements for _, elements in array.axes)
    if array.data_path.is_file():
        refuse_non_product(array.data_path)
    check_span(path, array.data_path, array.offset, int(np.prod(shape)) * array.dtype.itemsize, "the image array")
    if _is_fits(array.data_path):
        values = _read_fits(path, label, array.pdr_name)
    else:
        count = int(np.prod(shape))
        values = np.fromfile(array.data_path, dtype=array.dtype, count=count, offset=array.offset)
        values = values.reshape(shape) if array.last_index_fastest else values.reshape(shape[::-1]).T
    if values.shape != shape:
        raise ImageReadError(f"{path}: decoded {values.shape}, the label describes {shape}")
    values = to_lines_samples_bands(values, [name for name, _ in array.axes], str(path))
    notes = [f"PDS4 {label.name} ({array.kind})"]
    valid = valid_pixels(values, list(array.constants))
    values, notes = demosaic_if_bayer(values, _bayer_pattern(root, path, xml_text), notes)
    return PdsImage(values, valid, notes), _orientation(root, str(path)), array.data_path


def data_file_names(xml_text: str) -> list[str]:
    """Every file_name of the label's file areas (for the files a product is made of)."""
    try:
        root = ElementTree.fromstring(xml_text)
    except ElementTree.ParseError:
        return []
    return [e.text.strip() for e in root.iter() if _local(e) == "file_name" and e.text and e.text.strip()]


def image_array(path: Path, label: Path, root) -> Pds4Array:
    """The label's image array, checked: offset, element type, axes."""
    number, chosen = 0, None
    for area_name in NUMBERED_AREAS:
        for area in (e for e in root.iter() if _local(e) == area_name):
            for element in area:
                if "Array" not in _local(element):
                    continue
                number += 1
                if area_name == "File_Area_Observational" and _is_image_array(element) and \
                        (chosen is None or (chosen[1] not in IMAGE_CLASSES and _local(element) in IMAGE_CLASSES)):
                    chosen = (element, _local(element), area, number - 1)
    if chosen is None:
        raise ImageReadError(f"{path}: the PDS4 label describes no Array_2D/Array_3D image")
    element, kind, area, index = chosen
    file_name = next((e.text.strip() for e in area.iter() if _local(e) == "file_name" and e.text), None)
    if not file_name:
        raise ImageReadError(f"{path}: the label's {kind} has no file_name")
    data_path = file_in_folder(label.parent, file_name, label, "file_name")
    return Pds4Array(kind, _pdr_name(element, index), data_path, _offset(path, element, kind), _dtype(path, element, kind),
                     _axes(path, element, kind), _index_order(path, element, kind), tuple(_constants(element)))


def _is_image_array(element) -> bool:
    kind = _local(element)
    return kind.startswith(("Array_2D", "Array_3D"))


def _pdr_name(element, index: int) -> str:
    for key in ("local_identifier", "name"):
        found = element.find(f"./{{*}}{key}")
        if found is None:
            found = element.find(key)
        if found is not None and found.text and found.text.strip():
            return found.text.strip().replace(" ", "_")
    return f"ARRAY_{index}"


def _field(element, name: str) -> str | None:
    found = next((e for e in element.iter() if _local(e) == name), None)
    return None if found is None or found.text is None else found.text.strip()


def _whole(path: Path, text: str | None, what: str, least: int) -> int:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        raise ImageReadError(f"{path}: {what} {text!r} is not a whole number") from None
    if value < least:
        raise ImageReadError(f"{path}: {what} {value} is below {least}")
    return value


def _offset(path: Path, element, kind: str) -> int:
    return _whole(path, _field(element, "offset"), f"{kind} offset", 0)


def _dtype(path: Path, element, kind: str) -> np.dtype:
    data_type = _field(element, "data_type")
    if data_type not in PDS4_DTYPES:
        raise ImageReadError(f"{path}: {kind} data_type {data_type!r} is not one rockdet reads "
                             f"({', '.join(sorted(PDS4_DTYPES))})")
    return np.dtype(PDS4_DTYPES[data_type])


def _axes(path: Path, element, kind: str) -> tuple[tuple[str, int], ...]:
    axes = []
    for axis in (e for e in element if _local(e) == "Axis_Array"):
        name = _field(axis, "axis_name") or "?"
        elements = _whole(path, _field(axis, "elements"), f"{kind} axis {name} elements", 1)
        axes.append((_whole(path, _field(axis, "sequence_number"), f"{kind} axis {name} sequence_number", 1),
                     name, elements))
    if len(axes) not in (2, 3):
        raise ImageReadError(f"{path}: {kind} has {len(axes)} axes; rockdet reads 2 or 3")
    if sorted(a[0] for a in axes) != list(range(1, len(axes) + 1)):
        raise ImageReadError(f"{path}: {kind} axis sequence numbers {sorted(a[0] for a in axes)} are not 1..{len(axes)}")
    return tuple((name, elements) for _, name, elements in sorted(axes))


def _index_order(path: Path, element, kind: str) -> bool:
    order = (_field(element, "axis_index_order") or "Last Index Fastest").lower()
    if order not in ("last index fastest", "first index fastest"):
        raise ImageReadError(f"{path}: {kind} axis_index_order {order!r} is not Last or First Index Fastest")
    return order == "last index fastest"


def _constants(element) -> list[float]:
    constants = []
    for found in element.iter():
        if _local(found) in ("missing_constant", "invalid_constant") and found.text:
            try:
                constants.append(float(found.text))
            except ValueError:  # GRAS labels write "None"
                pass
    return constants


def _is_fits(data_path: Path) -> bool:
    if data_path.name.lower().endswith(FITS_SUFFIXES):
        return True
    with open(data_path, "rb") as handle:
        return handle.read(9) == b"SIMPLE  ="


def _read_fits(path: Path, label: Path, name: str) -> np.ndarray:
    if importlib.util.find_spec("astropy") is None:
        raise ImageReadError(f"{path}: the image array is in a FITS file; reading FITS-backed PDS4 products "
                             f"needs astropy (pip install astropy)")
    import pdr

    try:
        return np.ma.getdata(np.asarray(pdr.read(str(label), label_fn=str(label))[name]))
    except Exception as exc:
        raise ImageReadError(f"{path}: FITS data section does not match the label ({exception_reason(exc)})") from None


def _bayer_pattern(root, path: Path, xml_text: str) -> str | None:
    """A raw mosaic named by img:Color_Filter_Array (not once its state is Decoded)."""
    kind = (_field(root, "color_filter_array_type") or "").upper().split()
    state = (_field(root, "color_filter_array_state") or "").lower()
    if kind and kind[-1] in BAYER_CODES and state != "decoded":
        return kind[-1]
    return change_pcam_raw(path.name, xml_text)


def _orientation(root, where: str) -> Orientation:
    direction = next((e for e in root.iter() if _local(e) == "Display_Direction"), None)
    if direction is None:
        return Orientation()
    return Orientation.from_pds4(_field(direction, "horizontal_display_axis"),
                                 _field(direction, "horizontal_display_direction"),
                                 _field(direction, "vertical_display_axis"),
                                 _field(direction, "vertical_display_direction"), where)


def _parse(path: Path, xml_text: str):
    try:
        return ElementTree.fromstring(xml_text)
    except ElementTree.ParseError as exc:
        raise ImageReadError(f"{path}: the PDS4 label is not readable XML ({exc})") from None


def _local(element) -> str:
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
