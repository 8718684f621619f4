"""Resolving many paths that share few folders, as a batch over an archive does.

``Path.resolve`` stats every component of a path: an input three folders deep costs a handful of
system calls, and a batch resolves each input and each of its outputs several times (collecting
inputs, checking outputs never replace them, resume). Inside ``folders_resolved_once()`` a
folder is resolved once and each file costs one ``lstat`` (is it itself a link?). Outside it,
``resolved`` is ``Path.resolve``.

Only folders that exist are remembered: a folder made later (even a link an attacker places)
is resolved when it is first met as an existing folder.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

_FOLDERS: ContextVar[dict[Path, Path] | None] = ContextVar("rockdet_resolved_folders", default=None)


@contextmanager
def folders_resolved_once() -> Iterator[None]:
    """Within the block, ``resolved`` resolves each existing folder once."""
    token = _FOLDERS.set({})
    try:
        yield
    finally:
        _FOLDERS.reset(token)


def resolved(path: Path | str) -> Path:
    """``Path(path).resolve()``, its folder looked up once per ``folders_resolved_once`` block."""
    path = Path(path)
    folders = _FOLDERS.get()
    if folders is None or path.name in ("", ".", ".."):
        return path.resolve()
    parent = path.parent
    folder = folders.get(parent)
    if folder is None:
        folder = parent.resolve()
        if os.path.isdir(folder):
            folders[parent] = folder
    candidate = folder / path.name
    return candidate.resolve() if os.path.islink(candidate) else candidate
