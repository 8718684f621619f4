"""Paths read from annotation files stay inside the folder they are read against.

An annotation file is data, often made by someone else (a labelling service, a download): an
absolute path or a ``..`` in it must not make rockdet read any file on the machine. The check is
on the path as written, normalised (``a/../b`` is ``b``): a symlink inside the root is the
user's own set-up (a DVC cache, a shared image store) and is followed.
"""

from __future__ import annotations

import os
from pathlib import Path


def absolute(path: Path) -> Path:
    """``path`` made absolute and normalised, without following symlinks."""
    return Path(os.path.normpath(Path(path).absolute()))


def within(root: Path, entry: str | Path) -> Path | None:
    """``root / entry`` (as spelt) when it lies inside ``root``, else None; an absolute ``entry``
    is taken as it is and must lie inside too."""
    joined = Path(root) / entry
    return joined if absolute(joined).is_relative_to(absolute(root)) else None
