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
import json
import os
import socket
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

#: Spool files are named PREFIX + host + writer's pid (so a later run can clear a killed run's).
SPOOL_PREFIX = "rockdet-inputs-"
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
        with open(self.spool, encoding="utf-8") as handle:
            for index, line in enumerate(handle):
                if index >= self.start and (index - self.start) % self.step == 0:
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
        _remove_orphans(Path(folder or tempfile.gettempdir()))
        descriptor, name = tempfile.mkstemp(prefix=f"{SPOOL_PREFIX}{_host()}-{os.getpid()}-", suffix=".jsonl",
                                            dir=folder)
        self.path = Path(name)
        self._handle = os.fdopen(descriptor, "w", encoding="utf-8")
        self._remover = _SpoolRemover(self.path)
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


def spooled(images: Iterable[InputImage]) -> InputList:
    """An InputList of ``images`` (already distinct, in their order)."""
    spool = InputSpool()
    try:
        for image in images:
            spool.add(image)
    except BaseException:
        spool.abandon()
        raise
    return spool.finish()


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=DIGEST_BYTES).digest()


class _SpoolRemover:
    """Removes a spool file when the last list reading it is gone, in the process that wrote it
    only (a forked worker that drops its copy must not pull the file from under its parent)."""

    def __init__(self, path: Path):
        self._finalizer = weakref.finalize(self, _remove, path, os.getpid())

    def remove(self) -> None:
        self._finalizer()


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def _remove_orphans(folder: Path) -> None:
    """Remove the spools of this machine's runs that were killed (kill -9 skips the clean-up):
    their writer is no longer running. Another machine's spools (a temporary folder a cluster
    shares) and other users' are left alone."""
    for path in folder.glob(f"{SPOOL_PREFIX}{_host()}-*-*.jsonl"):
        try:
            pid = int(path.name[len(SPOOL_PREFIX) + len(_host()) + 1:].split("-", 1)[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            try:
                path.unlink()
            except OSError:
                pass
        except OSError:  # running, as another user
            continue


def _remove(path: Path, writer_pid: int) -> None:
    if os.getpid() == writer_pid:
        try:
            path.unlink()
        except OSError:
            pass
