"""The files of a product: found whatever their case, kept inside the label's own folder, and
recognised for what they are when they are not a product at all.

Archives mix cases freely (a lowercase ``..._dxxx.xml`` beside an uppercase ``..._DXXX.IMG``,
pointers in uppercase to lowercase files), so every name a product uses is looked up in its
folder without regard to case. A label names files only in its own folder (PDS3 pointers and
PDS4 ``file_name`` are file names; the PDS standards put a label and its data side by side): a
name that is absolute or climbs out with ``..`` is refused before anything reads it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path, PurePosixPath, PureWindowsPath

from rockdet.errors import ImageReadError

#: Bytes looked at to recognise what a file is.
SNIFF_BYTES = 2048
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"
#: Folders scanned for case-insensitive names, remembered by (folder, mtime): a folder of
#: thousands of products is listed once, not once per product.
FOLDER_CACHE = 256


def refuse_non_product(path: Path) -> None:
    """One clear reason for files that are not products at all: empty, a Git LFS pointer left
    where the data should be, or an HTML page (a failed download saved under the product's name)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not head:
        raise ImageReadError(f"{path}: the file is empty")
    if head.startswith(GIT_LFS_POINTER):
        raise ImageReadError(f"{path}: is a Git LFS pointer, not the product's data (fetch it with `git lfs pull`)")
    if looks_like_html(head):
        raise ImageReadError(f"{path}: is an HTML page, not a PDS product (a failed download?)")


def looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return True
    # XHTML pages open with an XML declaration, as PDS4 labels do; labels never hold <html.
    return text.startswith(b"<?xml") and b"<html" in text and b"<product_" not in text


def file_in_folder(folder: Path, name: str, label: Path, what: str) -> Path:
    """The file ``name`` that ``label`` names in ``what``, in the label's folder, whatever its case.

    Refused, with one line, when the name is absolute or leads out of the folder."""
    text = str(name).strip().strip('"')
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if not text or posix.is_absolute() or windows.is_absolute() or windows.drive or \
            ".." in posix.parts or ".." in windows.parts:
        raise ImageReadError(f"{label}: {what} names {text!r}, outside the label's folder: refused "
                             f"(a label names only files beside it)")
    candidate = folder.joinpath(*windows.parts)
    return candidate if candidate.exists() else find_whatever_case(candidate) or candidate


def find_whatever_case(path: Path) -> Path | None:
    """``path`` itself, or the one file of its folder whose name differs from it only in case."""
    if path.exists():
        return path
    names = names_in_folder(path.parent)
    return path.parent / names[path.name.lower()] if path.name.lower() in names else None


def names_in_folder(folder: Path) -> dict[str, str]:
    """The names in ``folder`` by their lower case (cached until the folder changes)."""
    return _names_in(str(folder), _mtime(folder))


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return -1


@lru_cache(maxsize=FOLDER_CACHE)
def _names_in(folder: str, mtime: int) -> dict[str, str]:
    try:
        with os.scandir(folder) as entries:
            names: dict[str, str] = {}
            for entry in entries:
                names.setdefault(entry.name.lower(), entry.name)
            return names
    except OSError:
        return {}
