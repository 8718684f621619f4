"""A batch's input images spooled to a file as they are found, read back in order when needed.

An archive holds hundreds of thousands of frames. Holding each as a Path and a key costs about
0.6 KiB of memory an image, in every process of a run, for the whole run. Here they cost a line in
a temporary file: the list is written once, while the inputs are enumerated, and each reader
(a shard, a device's process, a decoding worker, the batch files' final pass) streams the lines
it needs. What stays in memory while enumerating is one short digest per file and per key, so
that each file is catalogued once under a key of its own.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from rockdet.errors import RockdetError

try:
    import fcntl
except ImportError:  # Windows: no locks, so no clean-up of a killed run's spool
    fcntl = None  # type: ignore[assignment]

SPOOL_PREFIX = "rockdet-inputs-"
#: A spool this young is never taken for a killed run's (its writer may not hold the lock yet).
ORPHAN_MIN_AGE_SECONDS = 60
#: Bytes of the digests that tell files and keys apart (a collision needs ~2**64 inputs).
DIGEST_BYTES = 16


@dataclass(frozen=True)
class InputImage:
    path: Path
    #: Relative path (suffix kept) the outputs mirror under --out; never climbs out of it.
    key: str


class InputList:
    """Input images in a stable order, read from a spool file: ``len``, iteration and strided
    slices (``images[first::step]``, how shards, devices and workers part a batch). Pickles as its
    file's path, so DataLoader workers read the same spool; the process that wrote the spool
    removes it when the list is garbage-collected."""

    def __init__(self, spool: Path, count: int, start: int = 0, step: int = 1, owner: object = None):
        self.spool, self.count, self.start, self.step = spool, count, start, step
        self._owner = owner  # keeps the spool's remover alive as long as any view of it

    def __len__(self) -> int:
        return len(range(self.start, self.count, self.step))

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[InputImage]:
        if not self:
            return
        opened = self._owner.reopen() if isinstance(self._owner, _SpoolRemover) else None
        with opened or open(self.spool, encoding="utf-8") as handle:
            for line in itertools.islice(handle, self.start, None, self.step):
                path, key = json.loads(line)
                yield InputImage(Path(path), key)

    def __getitem__(self, part: slice) -> InputList:
        if not isinstance(part, slice) or part.stop is not None or (part.step or 1) < 1 or (part.start or 0) < 0:
            raise TypeError("an InputList is read in order: only [first::step] slices with step >= 1")
        return InputList(self.spool, self.count, self.start + (part.start or 0) * self.step,
                         self.step * (part.step or 1), self._owner)

    def __reduce__(self):
        return InputList, (self.spool, self.count, self.start, self.step)

    def __repr__(self) -> str:
        return f"InputList({len(self)} images from {self.spool})"


class InputSpool:
    """Writes an InputList: ``add`` each image as it is found, then ``finish``."""

    def __init__(self, folder: str | None = None):
        try:
            _remove_orphans(Path(folder or tempfile.gettempdir()))
            descriptor, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".jsonl", dir=folder)
        except OSError as exc:
            raise RockdetError(f"{folder or tempfile.tempdir or 'the temporary folder'}: cannot hold the list of "
                               f"inputs ({exc.strerror or exc}); set TMPDIR to a writable folder") from None
        self.path = Path(name)
        self._remover = _SpoolRemover(self.path, descriptor)
        self._handle = os.fdopen(os.dup(descriptor), "w", encoding="utf-8")
        self.count = 0

    def add(self, image: InputImage) -> None:
        # JSON keeps any file name on one line (a newline in a name is escaped; undecodable bytes
        # travel as their surrogate escapes and come back the same).
        self._handle.write(json.dumps([str(image.path), image.key]) + "\n")
        self.count += 1

    def finish(self) -> InputList:
        self._handle.close()
        return InputList(self.path, self.count, owner=self._remover)

    def abandon(self) -> None:
        self._handle.close()
        self._remover.remove()


def digest(text: str) -> bytes:
    """A short digest that tells paths or keys apart without holding them."""
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=DIGEST_BYTES).digest()


class _SpoolRemover:
    """Holds a lock on a spool file while any list reads it, and removes the file when the last
    list is gone: in the process that wrote it only (a forked worker that drops its copy must not
    pull the file from under its parent). The lock is what tells a later run that the file is
    not an orphan."""

    def __init__(self, path: Path, descriptor: int):
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a file mkstemp just made: free
            except OSError:  # a file system without locks: clean-up then leaves every spool alone
                pass
        self.descriptor = descriptor
        self._finalizer = weakref.finalize(self, _remove, path, descriptor, os.getpid())

    def reopen(self) -> TextIO | None:
        """The spool opened afresh through the descriptor this process holds: the file is read
        even if something removed its name from the temporary folder (a cleaner of old files
        during a long run). None where there is no /proc (the caller opens it by name)."""
        if not self._finalizer.alive:
            return None
        try:
            return open(f"/proc/self/fd/{self.descriptor}", encoding="utf-8")
        except OSError:
            return None

    def remove(self) -> None:
        self._finalizer()


def _remove(path: Path, descriptor: int, writer_pid: int) -> None:
    if os.getpid() != writer_pid:
        return
    try:
        path.unlink()
    except OSError:
        pass
    os.close(descriptor)


def _remove_orphans(folder: Path) -> None:
    """Remove the spools that killed runs left (kill -9 skips the clean-up): this user's plain
    files, older than a minute, whose lock no process holds. A running writer, on this machine or
    another sharing the folder, holds its file's lock for as long as it lives."""
    if fcntl is None:
        return
    for path in folder.glob(f"{SPOOL_PREFIX}*.jsonl"):
        try:
            status = os.lstat(path)
            if not stat.S_ISREG(status.st_mode) or status.st_uid != os.getuid() \
                    or time.time() - status.st_mtime < ORPHAN_MIN_AGE_SECONDS:
                continue
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its run is alive
            os.close(descriptor)
            continue
        try:
            if os.path.samestat(os.fstat(descriptor), os.lstat(path)):
                path.unlink()
        except OSError:
            pass
        finally:
            os.close(descriptor)
