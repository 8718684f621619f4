"""Turn predict's INPUTS (files, folders, globs, list files) into input images with output keys."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from rockdet.errors import RockdetError
from rockdet.io.images import IMAGE_SUFFIXES
from rockdet.io.input_list import InputImage, InputList, InputSpool, digest
from rockdet.io.layout import LOCK_FILE, OutputLayout, safe_key
from rockdet.io.resolved import resolved

log = logging.getLogger(__name__)

LIST_SUFFIXES = {".txt", ".lst", ".list"}


def collect_inputs(inputs: list[str], exclude: Callable[[Path], bool] = lambda path: False) -> InputList:
    """Expand every input into one InputImage per distinct image file (by resolved path), in a
    stable order: the inputs in the order given, a folder's images sorted by path, a list's in its
    order. They stream into a spool file as they are found (io.input_list), so an archive's
    million frames are never held in memory.

    A key is the path relative to the folder or glob root it came from, or the file name when
    the path leaves that root (``..`` in a glob, a symlink); ``exclude`` drops files such as
    rockdet's own earlier outputs."""
    earlier = partial(_earlier_output, locks={})
    missing = [f"{text}: {problem}" for text in inputs if (problem := _input_problem(text, earlier))]
    if missing:  # before walking any folder: a typo in one input fails at once
        raise RockdetError(f"{'; '.join(missing)} (give image files, folders, globs or a .txt list)")
    distinct = _Distinct(exclude)
    spool = InputSpool()
    try:
        for path, relative in _found(inputs, earlier):
            image = distinct.image(path, relative)
            if image is not None:
                spool.add(image)
    except BaseException:
        spool.abandon()
        raise
    distinct.log()
    images = spool.finish()
    if not images:
        raise RockdetError(f"no images found in {' '.join(inputs)}")
    return images


def _input_problem(text: str, earlier: Callable[[Path, Path], bool]) -> str | None:
    """Why an input names nothing to read (None: it does). A pattern's matches are looked at
    until the first file that is not an earlier run's output."""
    path = Path(text).expanduser()
    if glob.has_magic(text) and not path.exists():  # a file named 'what?.png' is itself
        root = _glob_root(text)
        if any(os.path.isfile(match) and not earlier(Path(match), root) for match in glob.iglob(text, recursive=True)):
            return None
        return "the pattern matches no file"
    if path.is_dir() or path.is_file():
        return None
    return _why_missing(path)


def _found(inputs: list[str], earlier: Callable[[Path, Path], bool]) -> Iterator[tuple[Path, Path]]:
    """(path, relative path) of every file the inputs name, in order, duplicates and all, but
    for an earlier run's outputs (``earlier``)."""
    for text in inputs:
        path = Path(text).expanduser()
        if glob.has_magic(text) and not path.exists():
            root = _glob_root(text)
            # A glob's matches are listed (and sorted) before they stream; archives are given as
            # folders or lists.
            for match in sorted(glob.glob(text, recursive=True)):
                if Path(match).is_file() and not earlier(Path(match), root):
                    yield Path(match), _relative(Path(match), root)
        elif path.is_dir():
            yield from ((p, relative) for p, relative in _images_under(path) if not earlier(p, path))
        elif path.suffix.lower() in LIST_SUFFIXES:
            yield from _read_list(path)
        else:
            yield path, Path(path.name)


class _Distinct:
    """Keeps one InputImage per resolved file, each under a key of its own. Remembers a short
    digest of each file and key, not the paths (io.input_list)."""

    def __init__(self, exclude: Callable[[Path], bool]):
        self.exclude = exclude
        self.files: set[bytes] = set()
        self.keys: set[bytes] = set()
        self.excluded = self.repeated = 0

    def image(self, path: Path, relative: Path) -> InputImage | None:
        real = resolved(path)
        if self.exclude(real):
            self.excluded += 1
            return None
        file = digest(str(real))
        if file in self.files:  # the same file reached twice: one catalog
            self.repeated += 1
            return None
        self.files.add(file)
        key = base = safe_key(relative)
        n, named = 1, digest(key)
        while named in self.keys:  # different files with the same relative name from two inputs
            n += 1
            key = f"{base}__{n}"
            named = digest(key)
        self.keys.add(named)
        return InputImage(path, key)

    def log(self) -> None:
        if self.excluded:
            log.info("left out %d of rockdet's own output files found among the inputs", self.excluded)
        if self.repeated:
            log.info("%d input(s) named a file already among the inputs (same resolved path): each file "
                     "is catalogued once", self.repeated)


def _images_under(folder: Path) -> Iterator[tuple[Path, Path]]:
    """(path, path relative to ``folder``) of every image file under ``folder``, in path order,
    skipping hidden files and not entering linked folders (as ``rglob`` does). Walked one folder
    at a time, each listing sorted by name (which is path order), and told apart by the listing's
    entry types: an archive's folder of 100,000 frames costs no stat per frame."""
    pending = [iter(_listing(str(folder)))]
    prefixes = [""]
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
            prefixes.pop()
            continue
        relative = prefixes[-1] + entry.name
        if entry.is_dir(follow_symlinks=False):
            pending.append(iter(_listing(entry.path)))
            prefixes.append(relative + "/")
        elif not entry.name.startswith(".") and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES \
                and entry.is_file():
            yield Path(entry.path), Path(relative)


def _listing(directory: str) -> list[os.DirEntry]:
    try:
        with os.scandir(directory) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return []


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


def _read_list(list_file: Path) -> Iterator[tuple[Path, Path]]:
    """The files a list names, one a line (``#`` starts a comment line), relative to the list's
    folder, read a line at a time; a listed folder stands for its images. A listed file that is
    missing is recorded as failed when its turn comes, as any unreadable image is."""
    try:
        handle = list_file.open("rb")
    except OSError as exc:
        raise RockdetError(f"{list_file}: cannot be read ({exc.strerror or exc})") from None
    with handle:
        for number, raw in enumerate(_lines(handle, list_file), start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise RockdetError(f"{list_file}: not a list of paths (not UTF-8 text at line {number}, "
                                   f"byte {exc.start + 1})") from None
            for line in text.splitlines():  # \r alone ends a line too (old Mac lists)
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                path = Path(line).expanduser()
                path = path if path.is_absolute() else list_file.parent / path
                if path.is_dir():
                    yield from ((p, path.name / relative) for p, relative in _images_under(path))
                else:
                    yield path, Path(path.name)


def _lines(handle, list_file: Path) -> Iterator[bytes]:
    try:
        yield from handle
    except OSError as exc:
        raise RockdetError(f"{list_file}: cannot be read ({exc.strerror or exc})") from None


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
