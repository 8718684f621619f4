"""Where `rockdet predict` writes, proven to lie inside ``--out``.

Per-image outputs and batch-level files live in separate namespaces, so no input name can
collide with a batch file:

    OUT/summary.json, OUT/rocks.csv, OUT/sfd.json, OUT/sfd.png      the batch
    OUT/catalogs/<input>.csv|.json|.parquet                         one catalog per input image
    OUT/overlays/<input>.png                                        --overlay

``<input>`` is the image's path relative to the folder or glob it was found in, with its own
suffix kept (``sub/img.v2.tif`` → ``catalogs/sub/img.v2.tif.csv``): two images differing only
in suffix or after a dot never share a catalog.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from rockdet.errors import RockdetError

CATALOG_DIR = "catalogs"
OVERLAY_DIR = "overlays"
#: Small JPEG overlays for the batch report, one per image.
THUMBNAIL_DIR = "thumbnails"
#: The batch report and the files it loads beside it.
REPORT_FILE = "report.html"
REPORT_FILES = (REPORT_FILE, "report_images.js", "report_sizes.png")
SUMMARY_FILE = "summary.json"
ROCKS_FILE = "rocks.csv"
SFD_FILES = ("sfd.json", "sfd.png")
#: Rocks of every image with site coordinates, on one map (PDS products with a rover pose).
SITE_MAP_FILE = "site_map.png"
#: The batch's rocks as COCO pre-annotations (--format ...,coco).
COCO_FILE = "predictions.coco.json"
LOCK_FILE = ".rockdet.lock"
BATCH_FILES = (SUMMARY_FILE, ROCKS_FILE, *SFD_FILES, SITE_MAP_FILE, COCO_FILE, *REPORT_FILES, LOCK_FILE)


def safe_key(relative: PurePosixPath | Path | str) -> str:
    """A relative path with no parent references, root or empty parts: a key that cannot climb
    out of the folder it is joined to."""
    parts = [part for part in PurePosixPath(Path(relative).as_posix()).parts
             if part not in ("", ".", "..", "/")]
    if not parts:
        raise RockdetError(f"{relative}: no usable file name for its outputs")
    return "/".join(parts)


@dataclass(frozen=True)
class OutputLayout:
    root: Path

    @classmethod
    def at(cls, out_dir: Path | str) -> OutputLayout:
        return cls(Path(out_dir).expanduser().resolve())

    def catalog_file(self, key: str, fmt: str) -> Path:
        return self._inside(self.root / CATALOG_DIR / f"{key}.{fmt}")

    def overlay_file(self, key: str) -> Path:
        return self._inside(self.root / OVERLAY_DIR / f"{key}.png")

    def thumbnail_file(self, key: str) -> Path:
        return self._inside(self.root / THUMBNAIL_DIR / f"{key}.jpg")

    def batch_file(self, name: str) -> Path:
        return self.root / name

    def is_own_output(self, path: Path) -> bool:
        """True for anything a predict run writes here, so it is never taken as an input."""
        resolved = Path(path).resolve()
        if resolved.parent == self.root and resolved.name in BATCH_FILES:
            return True
        return any(resolved.is_relative_to(self.root / folder) for folder in (CATALOG_DIR, OVERLAY_DIR, THUMBNAIL_DIR))

    def _inside(self, path: Path) -> Path:
        # Resolution follows symlinks a user (or an attacker) may have placed under --out.
        if not path.resolve().is_relative_to(self.root):
            raise RockdetError(f"{path}: resolves outside --out {self.root}; refusing to write there")
        return path


#: Set in the environment of the process holding an output folder's lock, so the processes it
#: starts itself (DDP ranks) do not wait on their own parent.
LOCK_HOLDER_ENV = "ROCKDET_OUT_LOCK"


@contextmanager
def hold_output_lock(layout: OutputLayout, wait: bool = False) -> Iterator[None]:
    """An advisory lock on ``--out`` for the whole run: a second run into the same folder
    refuses with one line naming the holder (or waits with ``wait``), so one batch never mixes
    the catalogs of two runs. Also proves the folder writable before any work."""
    if os.environ.get(LOCK_HOLDER_ENV) == str(layout.root):
        yield
        return
    path = layout.batch_file(LOCK_FILE)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise RockdetError(f"{layout.root}: cannot write to --out ({exc.strerror or exc})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            raise RockdetError(f"{layout.root}: another rockdet run is writing here ({holder}); "
                               f"wait for it, use another --out, or pass --wait") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        os.environ[LOCK_HOLDER_ENV] = str(layout.root)
        try:
            yield
        finally:
            os.environ.pop(LOCK_HOLDER_ENV, None)
            fcntl.flock(handle, fcntl.LOCK_UN)
