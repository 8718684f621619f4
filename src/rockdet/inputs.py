"""Turn predict's INPUTS (files, folders, globs, list files) into image jobs with output keys."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from rockdet.data.images import IMAGE_SUFFIXES
from rockdet.errors import RockdetError

LIST_SUFFIXES = {".txt", ".lst", ".list"}


@dataclass(frozen=True)
class ImageJob:
    path: Path
    #: Relative path (no suffix) the outputs mirror under --out.
    key: str


def collect_inputs(inputs: list[str]) -> list[ImageJob]:
    """Expand every input; a key is the path relative to the folder or glob root it came from."""
    found: list[tuple[Path, Path]] = []  # (path, relative)
    for text in inputs:
        path = Path(text).expanduser()
        if glob.has_magic(text):
            root = _glob_root(text)
            found += [(Path(p), Path(p).relative_to(root)) for p in sorted(glob.glob(text, recursive=True))
                      if Path(p).is_file()]
        elif path.is_dir():
            found += [(p, p.relative_to(path)) for p in sorted(path.rglob("*"))
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found += _read_list(path)
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise RockdetError(f"{text}: input not found (give image files, folders, globs or a .txt list)")
    if not found:
        raise RockdetError(f"no images found in {' '.join(inputs)}")
    jobs, seen = [], set()
    for path, relative in found:
        key = relative.with_suffix("").as_posix()
        base, n = key, 1
        while key in seen:  # same relative name from two inputs
            n += 1
            key = f"{base}__{n}"
        seen.add(key)
        jobs.append(ImageJob(path, key))
    return jobs


def _glob_root(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _read_list(list_file: Path) -> list[tuple[Path, Path]]:
    lines = [line.strip() for line in list_file.read_text().splitlines()]
    paths = [Path(line) if Path(line).is_absolute() else list_file.parent / line
             for line in lines if line and not line.startswith("#")]
    return [(p, Path(p.name)) for p in paths]
