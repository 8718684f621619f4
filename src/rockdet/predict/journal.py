"""The batch's journal, ``OUT/journal.jsonl``: one JSON line per image as it finishes (catalogued or
failed), appended and flushed at once, so a run killed at any point (kill -9 included) leaves a
record of every image it finished.

A resumed run reads it to keep finished catalogs without hashing their inputs again: an input
whose files have the size, modification time, change time and inode the journal recorded when it
was catalogued is taken as unchanged. Times too close to that moment are not trusted (a file rewritten
within the clock's resolution keeps its times), nor a journal line that does not name the very
catalog found; those inputs are hashed as before, and so is every input with ``verify``.

A line also records its catalog: how it was made (a digest of what makes its rocks: checkpoint,
settings, camera), and its JSON file's size, times and inode right after it was written. A catalog
found as the line recorded it is kept without being read (a no-op resume of an archive reads each
catalog once, for the batch files, not twice); any other is read and checked as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from rockdet.catalog.files import CATALOG_VERSION
from rockdet.io.archives.pds import product_files
from rockdet.io.resolved import resolved

log = logging.getLogger(__name__)

#: A file modified this close to (or after) the moment its times were recorded may change again
#: without its times changing (coarse clocks, FAT's 2 s): it is hashed instead.
RACY_NANOSECONDS = 2_000_000_000


def file_stamps(path: Path) -> dict[str, list[int]]:
    """Size, modification time, change time (ns) and inode of every file the input at ``path`` is
    made of. Each file is opened, not only stat'ed: on NFS an open revalidates the attributes a
    bare stat may answer from the client's cache."""
    try:
        files = product_files(Path(path))
    except OSError:
        files = [resolved(path)]
    stamps = {}
    for file in files:
        stamp = file_stamp(file)
        if stamp is not None:
            stamps[str(file)] = stamp
    return stamps


def file_stamp(file: Path | str) -> list[int] | None:
    """[size, modification time, change time (ns), inode] of one file, or None when it cannot be opened."""
    try:
        descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
        try:
            status = os.fstat(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]


class CatalogStamps:
    """A digest of a batch's finished catalogs, in input order: each key and its JSON's stamp. What
    the batch files were built from (predict.batch_files), and what a resume finds unchanged."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)

    def add(self, key: str, stamp: list[int]) -> None:
        self._hash.update(json.dumps([key, stamp]).encode() + b"\n")

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def catalog_record(made_with: str, json_file: Path, sized: bool, stamp: list[int] | None = None
                   ) -> dict[str, Any] | None:
    """What a journal line says of the catalog it names: ``made_with`` (resume.made_with_digest),
    the catalog version, whether it has metric columns, and its JSON file's stamp (taken now, right
    after the file was written, unless given). None when the file cannot be stamped."""
    stamp = stamp if stamp is not None else file_stamp(json_file)
    if stamp is None:
        return None
    return {"made_with": made_with, "version": CATALOG_VERSION, "sized": sized, "json": stamp}


def entry(key: str, status: str, *, source: Path | None = None, sha256: str | None = None,
          stamps: dict[str, list[int]] | None = None, stamped_at: int | None = None, rocks: int = 0,
          reason: str | None = None, catalog: dict[str, Any] | None = None) -> dict[str, Any]:
    """One journal line. ``stamps`` were taken at ``stamped_at`` (ns), before the input was read;
    ``catalog`` is catalog_record's, of the catalog the line names."""
    line: dict[str, Any] = {"image": key, "status": status, "rocks": rocks}
    if reason is not None:
        line["reason"] = reason
    if source is not None:
        line.update(source=str(Path(source).resolve()), sha256=sha256, files=stamps, stamped_at=stamped_at)
    if catalog is not None:
        line["catalog"] = catalog
    return line


class Journal:
    """Appends lines to the journal: one ``write`` each to a file opened for appending, so the
    processes of a multi-device run (each its own Journal) never interleave within a line."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None
        self.broken = False

    def record(self, line: dict[str, Any]) -> None:
        """Append one line. A journal that cannot be written (full disk) is given up with one
        warning: the catalogs still are written, and a resume hashes what it cannot look up."""
        if self.broken:
            return
        try:
            if self._fd is None:
                self._fd = self._open()
            data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            if os.write(self._fd, data) != len(data):
                raise OSError("short write")
        except OSError as exc:
            self.broken = True
            log.warning("%s: cannot be written (%s); no more journal lines this run (a resume will hash "
                        "the inputs of the images it misses)", self.path, exc.strerror or exc)

    def _open(self) -> int:
        # Never through a symlink (layout refuses one up front; this closes the race), never blocking.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                             0o644)
        size = os.fstat(descriptor).st_size
        if size:
            with open(self.path, "rb") as handle:
                handle.seek(size - 1)
                cut_short = handle.read(1) != b"\n"
            if cut_short:  # a line a kill cut short stays alone, not glued to the next one
                os.write(descriptor, b"\n")
        return descriptor

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JournalLines:
    """The last journal line of each image. Kept as the line's text and parsed when looked up: a
    no-op resume of an archive holds one line per image, and a parsed line takes several times
    the memory of its text."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def add(self, key: str, text: str) -> None:
        self._texts[key] = text  # a later line replaces an earlier one

    def get(self, key: str) -> dict[str, Any] | None:
        text = self._texts.get(key)
        return None if text is None else json.loads(text)


def read_journals(paths: list[Path]) -> JournalLines:
    """The last line of each image over the journals in order (a later line replaces an earlier
    one; a stale line only costs a hash, since it must match the catalog found)."""
    latest = JournalLines()
    for path in paths:
        read_journal(path, latest)
    return latest


def read_journal(path: Path, latest: JournalLines | None = None) -> JournalLines:
    """The last line of each image (a later run's line replaces an earlier one). A line cut off
    by a kill, or not a journal line, is skipped: its image is simply checked by hashing."""
    latest = JournalLines() if latest is None else latest
    try:
        handle = os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return latest
    except OSError as exc:
        log.warning("%s: not readable (%s); finished images are checked by hashing", path, exc.strerror or exc)
        return latest
    skipped = 0
    with handle:
        for text in handle:
            try:
                line = json.loads(text)
            except ValueError:
                skipped += 1
                continue
            if isinstance(line, dict) and isinstance(line.get("image"), str):
                latest.add(line["image"], text.strip())
            else:
                skipped += 1
    if skipped:
        log.info("%s: %d line(s) cut off or not a journal's, ignored", path, skipped)
    return latest


def unchanged_since_journal(line: dict[str, Any] | None, path: Path, catalog: dict[str, Any]) -> bool:
    """Whether the journal shows the input at ``path`` unchanged since ``catalog`` was made from it,
    by its files' sizes and times alone."""
    if not line or line.get("source") != catalog.get("source") or line.get("sha256") != catalog.get("sha256"):
        return False
    return _input_unchanged(line, path)


def vouched_by_journal(line: dict[str, Any] | None, path: Path, made_with: str, json_file: Path,
                       other_files: list[Path]) -> bool:
    """Whether the journal alone shows the image's catalog finished, made as ``made_with`` asks,
    still the very file written then (its JSON's size, times and inode as the line recorded them,
    its other formats there), and its input unchanged since: then it is kept unread."""
    record = line.get("catalog") if line else None
    if not isinstance(record, dict) or record.get("made_with") != made_with or record.get("version") != CATALOG_VERSION:
        return False
    stamp = file_stamp(json_file)
    if stamp is None or record.get("json") != stamp:
        return False
    return all(os.path.isfile(file) for file in other_files) and _input_unchanged(line, path)


def _input_unchanged(line: dict[str, Any], path: Path) -> bool:
    if line.get("status") != "done" or not isinstance(line.get("files"), dict):
        return False
    stamped_at = line.get("stamped_at")
    if not isinstance(stamped_at, int) or line.get("source") != str(resolved(path)):
        return False
    recorded = line["files"]
    if any(not isinstance(stamp, list) or len(stamp) != 4 or max(stamp[1:3]) >= stamped_at - RACY_NANOSECONDS
           for stamp in recorded.values()):
        return False
    return file_stamps(path) == recorded


def now_ns() -> int:
    return time.time_ns()
