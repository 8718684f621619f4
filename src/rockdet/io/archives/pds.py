"""PDS3 and PDS4 image products, read as their labels define them.

A product is found from its data file or its label, whatever the case of either name
(archives.files). PDS3 labels go through pdr (MillionConcepts' reader); rockdet checks the label
first, before pdr reads a byte (archives.pds3): sizes, sample widths, storage order, and that the
pointers name files in the label's own folder and the data they describe are there. PDS4 arrays
are found by their class and read as their axes say (archives.pds4). Then the values follow the
label: ``SAMPLE_BIT_MASK`` (in the samples' unsigned view), invalid and missing constants
(masked: never rocks), band order, raw Bayer frames (demosaiced with OpenCV) and the display
orientation. Stretching to 8 bit is the caller's (data/images.py), over valid pixels.

The camera model comes from the first of the product's labels that holds one: the detached
label, then the label attached to the data file (MSL archive folders keep the model only in the
attached one). Which label gave it is recorded in the notes and in the catalog's camera_model.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Callable

from rockdet.errors import ImageReadError, exception_reason
from rockdet.geometry.frames import CameraModelError, LabelGeometry
from rockdet.io.archives.decoded import PdsImage
from rockdet.io.archives.files import file_in_folder, names_in_folder, refuse_non_product
from rockdet.io.archives.label_geometry import geometry_from_pds3, geometry_from_pds4
from rockdet.io.archives.pds3 import read_pds3_values
from rockdet.io.archives.pds4 import data_file_names, read_pds4_values
from rockdet.io.resolved import resolved

__all__ = ["DATA_SUFFIXES", "LABEL_SUFFIXES", "PdsImage", "is_pds_product", "label_beside", "product_files",
           "read_pds_image"]

#: Data files of PDS products (MER/MSL .IMG; Chang'e levels 2A/2B/2C).
DATA_SUFFIXES = {".img", ".2a", ".2b", ".2c"}
#: Detached labels: PDS3 .LBL, Chang'e .2AL/.2BL/.2CL, PDS4 .xml.
LABEL_SUFFIXES = {".lbl", ".2al", ".2bl", ".2cl", ".xml"}
#: How an attached PDS3/ODL label (or a PDS4 product's ODL header) starts its file.
ODL_START = re.compile(rb"^\s*(?:/\*.*?\*/\s*)*(?:PDS_VERSION_ID|ODL_VERSION_ID|CCSD)", re.S)
#: Bytes read to find an attached label's pointers (a label longer than this keeps its pointers early).
POINTER_SCAN_BYTES = 1 << 20
#: Bytes read first, to tell a label or labelled product from an ordinary raster (PNG, TIFF, JPEG).
SNIFF_BYTES = 4096
POINTER_LINE = re.compile(r"^\s*\^(\w+)\s*=\s*(.+?)\s*$", re.M)


def is_pds_product(path: Path) -> bool:
    return path.suffix.lower() in DATA_SUFFIXES | LABEL_SUFFIXES


def label_beside(data_file: Path) -> Path | None:
    """The detached label of a data file (same stem, any case), if there is one. Looked up in the
    folder's listing (read once per folder and change): asked for every input of a batch, before
    and after it is read, and by resume, so a stat per candidate name would cost more than the rest."""
    names = names_in_folder(data_file.parent)
    stem = os.path.splitext(data_file.name)[0].lower()
    for suffix in sorted(LABEL_SUFFIXES):
        name = names.get(stem + suffix)
        if name is not None:
            found = data_file.parent / name
            if found != data_file and found.is_file():
                return found
    return None


def product_files(path: Path) -> list[Path]:
    """Every file a product is made of, resolved: the file given, its detached label, and every
    file its labels name (pointers, PDS4 file_name) that lies in the label's folder. What a
    resumed run must find unchanged before it keeps the product's catalog. Never raises: a
    label it cannot read still contributes itself. An ordinary raster (PNG, TIFF...) is decoded
    from its own bytes alone (io.images), so it is its one file whatever lies beside it."""
    path = Path(path)
    if not is_pds_product(path):
        return [resolved(path)]
    label = path if path.suffix.lower() in LABEL_SUFFIXES else label_beside(path)
    files = [path] + ([label] if label is not None and label != path else [])
    for holder in list(files):
        for name in _names_in_label(holder):
            try:
                named = file_in_folder(holder.parent, name, holder, "pointer")
            except ImageReadError:
                continue  # decoding refuses such a product; nothing outside is hashed
            if named.is_file() and named not in files:
                files.append(named)
    return sorted({resolved(file) for file in files})


def _names_in_label(holder: Path) -> list[str]:
    try:
        with open(holder, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            if not (head.lstrip()[:1] in (b"<", b"/") or ODL_START.match(head)
                    or holder.suffix.lower() in LABEL_SUFFIXES):
                return []  # an ordinary raster: no label, so nothing more to read
            head += handle.read(POINTER_SCAN_BYTES - len(head))
    except OSError:
        return []
    if head.lstrip().startswith(b"<"):
        return data_file_names(head.decode("utf-8", errors="replace")) if holder.stat().st_size <= POINTER_SCAN_BYTES \
            else data_file_names(holder.read_text(errors="replace"))
    if not ODL_START.match(head) and holder.suffix.lower() not in LABEL_SUFFIXES:
        return []
    text = head.decode("latin-1")
    end = re.search(r"^\s*END\s*$", text, re.M)
    names = []
    for _, value in POINTER_LINE.findall(text[:end.start()] if end else text):
        quoted = re.match(r'^\(?\s*"([^"]+)"', value) or re.match(r"^\(?\s*([A-Za-z0-9_.\-/\\]+\.[A-Za-z0-9]+)", value)
        if quoted:
            names.append(quoted.group(1))
    return names


def read_pds_image(path: Path) -> PdsImage:
    """The image of a PDS3/PDS4 product given by its data file or its label."""
    path = Path(path)
    refuse_non_product(path)
    label = path if path.suffix.lower() in LABEL_SUFFIXES else (label_beside(path) or path)
    if label != path:
        refuse_non_product(label)
    with open(label, "rb") as handle:
        is_xml = handle.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
    if is_xml:
        xml_text = label.read_text(errors="replace")
        image, orientation, data_path = read_pds4_values(path, label, xml_text)
        sources = [(label.name, lambda: geometry_from_pds4(xml_text, label.name))]
    else:
        image, orientation, data_path, metadata = _read_pds3(path, label)
        sources = [(label.name, lambda: geometry_from_pds3(metadata, label.name))]
    for attached in dict.fromkeys([path, data_path]):
        if attached != label and _has_attached_label(attached):
            sources.append((f"the label attached to {attached.name}", _attached_geometry(attached)))
    image.geometry, image.geometry_problem = _first_geometry(sources, image.notes)
    return orientation.apply(image)


def _read_pds3(path: Path, label: Path):
    try:
        import pdr
    except ImportError:
        raise ImageReadError(f"{path}: reading PDS3 products needs pdr: pip install 'rockdet[pds]'") from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            product = pdr.read(str(label), label_fn=str(label))
        except Exception as exc:  # pdr raises many kinds on a malformed label
            raise ImageReadError(f"{path}: not a readable PDS label ({exception_reason(exc)})") from None
        if product.standard != "PDS3":
            raise ImageReadError(f"{path}: not a PDS3 or PDS4 product ({product.standard})")
        _check_pointers(path, label, product)
        image, orientation, data_path = read_pds3_values(path, label, product, caught)
    return image, orientation, data_path, product.metadata


def _check_pointers(path: Path, label: Path, product) -> None:
    """Every file a pointer names lies in the label's folder, before pdr opens any of them."""
    for pointer in getattr(product, "pointers", None) or []:
        value = product.metadata.get(pointer)
        name = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(name, str):
            file_in_folder(label.parent, name, path, pointer)


def _has_attached_label(data_file: Path) -> bool:
    try:
        with open(data_file, "rb") as handle:
            return bool(ODL_START.match(handle.read(4096)))
    except OSError:
        return False


def _attached_geometry(data_file: Path) -> Callable[[], LabelGeometry | None]:
    def parse() -> LabelGeometry | None:
        try:
            import pdr

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                metadata = pdr.read(str(data_file), label_fn=str(data_file)).metadata
        except Exception as exc:
            raise CameraModelError(f"not a readable label ({exception_reason(exc)})") from None
        return geometry_from_pds3(metadata, f"the label attached to {data_file.name}")

    return parse


def _first_geometry(sources: list[tuple[str, Callable[[], LabelGeometry | None]]], notes: list[str]):
    """The model of the first label that holds a usable one, and why none could be used."""
    problems = []
    for where, parse in sources:
        try:
            geometry = parse()
        except CameraModelError as exc:
            problems.append(str(exc) if len(sources) == 1 else f"{where}: {exc}")
            continue
        if geometry is not None:
            notes.append(f"camera model {geometry.model.kind} in {geometry.frame} from {where}")
            return geometry, None
    return None, "; ".join(problems) or None
