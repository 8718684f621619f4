"""Turn predict's INPUTS (files, folders, globs, list files) into input images with output keys."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from rockdet.errors import RockdetError
from rockdet.io.images import IMAGE_SUFFIXES
from rockdet.io.layout import LOCK_FILE, OutputLayout, safe_key
from rockdet.io.resolved import resolved

log = logging.getLogger(__name__)

LIST_SUFFIXES = {".txt", ".lst", ".list"}


@dataclass(frozen=True)
class InputImage:
    path: Path
    #: Relative path (suffix kept) the outputs mirror under --out; never climbs out of it.
    key: str


def collect_inputs(inputs: list[str], exclude: Callable[[Path], bool] = lambda path: False
                   ) -> list[InputImage]:
    """Expand every input into one InputImage per distinct image file (by resolved path).

    A key is the path relative to the folder or glob root it came from, or the file name when
    the path leaves that root (``..`` in a glob, a symlink); ``exclude`` drops files such as
    rockdet's own earlier outputs."""
    found: list[tuple[Path, Path]] = []  # (path, relative)
    missing: list[str] = []
    earlier = partial(_earlier_output, locks={})
    for text in inputs:
        path = Path(text).expanduser()
        if glob.has_magic(text) and not path.exists():  # a file named 'what?.png' is itself
            root = _glob_root(text)
            matched = [(Path(p), _relative(Path(p), root)) for p in sorted(glob.glob(text, recursive=True))
                       if Path(p).is_file() and not earlier(Path(p), root)]
            found += matched
            if not matched:
                missing.append(f"{text}: the pattern matches no file")
        elif path.is_dir():
            found += [(p, relative) for p, relative in _images_under(path) if not earlier(p, path)]
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found += _read_list(path)
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            missing.append(f"{text}: {_why_missing(path)}")
    if missing:
        raise RockdetError(f"{'; '.join(missing)} (give image files, folders, globs or a .txt list); "
                           f"the other {len(inputs) - len(missing)} input(s) hold {len(found)} file(s)")
    images = _distinct_images(found, exclude)
    if not images:
        raise RockdetError(f"no images found in {' '.join(inputs)}")
    return images


def _distinct_images(found: list[tuple[Path, Path]], exclude: Callable[[Path], bool]) -> list[InputImage]:
    images, keys, files, excluded, repeated = [], set(), set(), 0, 0
    for path, relative in found:
        real = resolved(path)
        if exclude(real):
            excluded += 1
            continue
        if real in files:  # the same file reached twice: one catalog
            repeated += 1
            continue
        files.add(real)
        key = base = safe_key(relative)
        n = 1
        while key in keys:  # different files with the same relative name from two inputs
            n += 1
            key = f"{base}__{n}"
        keys.add(key)
        images.append(InputImage(path, key))
    if excluded:
        log.info("left out %d of rockdet's own output files found among the inputs", excluded)
    if repeated:
        log.info("%d input(s) named a file already among the inputs (same resolved path): each file "
                 "is catalogued once", repeated)
    return images


def _images_under(folder: Path) -> list[tuple[Path, Path]]:
    """(path, path relative to ``folder``) of every image file under ``folder``, sorted, skipping
    hidden files and not entering linked folders (as ``rglob`` does). Told apart by the folder
    listing's entry types: an archive's folder of 100,000 frames costs no stat per frame."""
    found, pending = [], [(str(folder), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            relative = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, relative + "/"))
            elif not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES \
                    and entry.is_file():
                found.append((Path(entry.path), relative))
    return sorted((path, Path(relative)) for path, relative in found)


def _relative(path: Path, root: Path) -> Path:
    normal, normal_root = Path(os.path.normpath(path)), Path(os.path.normpath(root))
    return normal.relative_to(normal_root) if normal.is_relative_to(normal_root) else Path(path.name)


def _earlier_output(path: Path, root: Path, locks: dict[Path, bool]) -> bool:
    """A file an earlier predict run wrote into a folder under ``root`` (its overlays, plots and
    thumbnails are images, but not inputs). ``locks``: which folders hold a run's lock file."""
    for folder in path.parents:
        if folder not in locks:
            locks[folder] = (folder / LOCK_FILE).is_file()
        if locks[folder] and OutputLayout.at(folder).is_own_output(path):
            return True
        if folder == root or not folder.is_relative_to(root):
            return False
    return False


def _why_missing(path: Path) -> str:
    if path.exists():
        return "not a regular file (a FIFO, socket or device is never read)"
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except (RuntimeError, OSError) as exc:
            if "loop" in str(exc).lower() or getattr(exc, "errno", None) == 40:
                return "symlink loop"
        return f"broken symlink to {os.readlink(path)}"
    return "input not found"


def _glob_root(pattern: str) -> Path:
    parts = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _read_list(list_file: Path) -> list[tuple[Path, Path]]:
    """The files a list names, one a line (``#`` starts a comment line), relative to the list's
    folder; a listed folder stands for its images. A listed file that is missing is recorded as
    failed when its turn comes, as any unreadable image is."""
    try:
        lines = [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise RockdetError(f"{list_file}: not a list of paths (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise RockdetError(f"{list_file}: cannot be read ({exc.strerror or exc})") from None
    found = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        path = path if path.is_absolute() else list_file.parent / path
        if path.is_dir():
            found += [(p, path.name / relative) for p, relative in _images_under(path)]
        else:
            found.append((path, Path(path.name)))
    return found


def product_sha256(path: Path, known: str | None = None) -> dict[str, str | None]:
    """SHA-256 of every file the input at ``path`` is made of (``archives.pds.product_files``:
    a PDS product's data file and its detached label; any other image is its one file), keyed
    by resolved path. ``known``: the hash of ``path`` itself, when it was already computed."""
    from rockdet.io.archives.pds import product_files

    own = resolved(path)
    return {str(file): known if known and file == own else file_sha256(file) for file in product_files(Path(path))}


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file read in blocks (checkpoints can be large); None when it is not a file."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
