"""Outputs checked before the work starts: never one of the command's own inputs, never a folder
or a path under a file, and only where a file can really be made.

Every check resolves paths (symlinks followed), so ``--out link.onnx`` pointing at the checkpoint
is caught like ``--out best.ckpt``. Writability is proven by making (and removing) a file in the
nearest existing folder: permission bits alone do not tell a root user on a read-only mount.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from rockdet.errors import RockdetError


class OutputError(RockdetError):
    """An output path that cannot or must not be written; one line naming it."""


def refuse_inputs_as_outputs(outputs: Iterable[Path | str], inputs: Iterable[Path | str | None],
                             flag: str = "--out") -> None:
    """Refuse when any output is (after resolving symlinks) one of the inputs."""
    taken = {Path(path).expanduser().resolve(): Path(path) for path in inputs if path is not None}
    for output in outputs:
        resolved = Path(output).expanduser().resolve()
        if resolved in taken:
            raise OutputError(f"{flag} {output}: is the input {taken[resolved]}; writing it would destroy "
                              f"what it is made from; choose another {flag}")


def check_output_file(path: Path | str, flag: str = "--out") -> Path:
    """``path`` can be written as a file: not a folder, not under a file, in a writable folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(f"{flag} {path}: exists and is not a regular file")
    _check_writable_folder(path.parent, flag, path)
    return path


def check_output_folder(path: Path | str, flag: str = "--out") -> Path:
    """``path`` can be a folder of outputs: an existing writable folder or one that can be made."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path}: exists and is not a folder")
    _check_writable_folder(path, flag, path)
    return path


def check_output_files_in(folder: Path, names: Iterable[str], flag: str) -> None:
    """Each ``folder/name`` that exists is a file the command may replace (not a folder)."""
    for name in names:
        target = folder / name
        if target.exists() and not target.is_file():
            raise OutputError(f"{flag}: {target} exists and is not a regular file; move it away")


def _check_writable_folder(folder: Path, flag: str, shown: Path) -> None:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{flag} {shown}: {existing} is a file, so nothing can be written under it")
    try:
        handle, probe = tempfile.mkstemp(prefix=".rockdet-write-test.", dir=existing)
    except OSError as exc:
        raise OutputError(f"{flag} {shown}: cannot write in {existing} ({exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(probe)
