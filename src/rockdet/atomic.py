"""Atomic file writes: a reader, or a rerun after a crash, never sees half a file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        # mkstemp makes private 0600 files; a team's shared catalogs get what open() would give.
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@cache
def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_path(path) as temp:
        temp.write_text(text)


def write_json_atomic(path: Path | str, data: Any) -> None:
    """Strict JSON: a NaN or infinity (not JSON, and unreadable to most parsers) becomes null."""
    write_text_atomic(path, json.dumps(finite(data), indent=2, default=str, allow_nan=False) + "\n")


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value
