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

_FOLDERS: ContextVar[dict[str, str] | None] = ContextVar("rockdet_resolved_folders", default=None)


@contextmanager
def folders_resolved_once() -> Iterator[None]:
    """Within the block, ``resolved`` resolves each existing folder once."""
    token = _FOLDERS.set({})
    try:
        yield
    finally:
        _FOLDERS.reset(token)


def resolved(path: Path | str) -> Path:
    """``Path(path).resolve()``, its folder looked up once per ``folders_resolved_once`` block.
    Worked on as strings (one Path made at the end): asked several times for every input of an
    archive's batch, where pathlib's parsing cost more than the system calls."""
    text = os.fspath(path)
    folders = _FOLDERS.get()
    parent, name = os.path.split(text)
    if folders is None or name in ("", ".", ".."):
        return Path(text).resolve()
    folder = folders.get(parent)
    if folder is None:
        folder = os.path.realpath(parent or ".")
        if os.path.isdir(folder):
            folders[parent] = folder
    candidate = os.path.join(folder, name)
    return Path(os.path.realpath(candidate) if os.path.islink(candidate) else candidate)
