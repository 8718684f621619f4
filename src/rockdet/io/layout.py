"""Where `rockdet predict` writes, proven to lie inside ``--out``.

Per-image outputs and batch-level files live in separate namespaces, so no input name can
collide with a batch file:

    OUT/summary.json, OUT/rocks.csv, OUT/sfd.json, OUT/sfd.png      the batch
    OUT/journal.jsonl                                               a line per image as it finishes
    OUT/catalogs/<input>.csv|.json|.parquet                         one catalog per input image
    OUT/overlays/<input>.png                                        --overlay

``<input>`` is the image's path relative to the folder or glob it was found in, with its own
suffix kept (``sub/img.v2.tif`` → ``catalogs/sub/img.v2.tif.csv``): two images differing only
in suffix or after a dot never share a catalog.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from rockdet.errors import RockdetError
from rockdet.io.input_list import digest
from rockdet.io.resolved import resolved

log = logging.getLogger(__name__)

CATALOG_DIR = "catalogs"
OVERLAY_DIR = "overlays"
#: Small JPEG overlays for the batch report, one per image.
THUMBNAIL_DIR = "thumbnails"
#: The batch report and the files it loads beside it.
REPORT_FILE = "report.html"
REPORT_FILES = (REPORT_FILE, "report_images.js", "report_sizes.svg")
SUMMARY_FILE = "summary.json"
ROCKS_FILE = "rocks.csv"
SFD_FILES = ("sfd.json", "sfd.png")
#: Rocks of every image with site coordinates, on one map (PDS products with a rover pose).
SITE_MAP_FILE = "site_map.png"
#: The batch's rocks as COCO pre-annotations (--format ...,coco).
COCO_FILE = "predictions.coco.json"
LOCK_FILE = ".rockdet.lock"
#: What happened to each image, a line as it finished: the resume record (predict.journal).
JOURNAL_FILE = "journal.jsonl"
#: Which catalogs the batch files were built from, and those files' stamps (predict.batch_files).
BATCH_RECORD_FILE = ".rockdet.batch.json"
#: Batch files written in place (opened, not replaced by a rename).
APPENDED_FILES = (LOCK_FILE, JOURNAL_FILE)
BATCH_FILES = (SUMMARY_FILE, ROCKS_FILE, *SFD_FILES, SITE_MAP_FILE, COCO_FILE, *REPORT_FILES, LOCK_FILE, JOURNAL_FILE,
               BATCH_RECORD_FILE)
#: What the per-image folders hold: "<input name with its suffix>.<one of these>".
OWN_SUFFIXES = {CATALOG_DIR: (".csv", ".json", ".parquet"), OVERLAY_DIR: (".png",), THUMBNAIL_DIR: (".jpg",)}


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
    #: Output folders already resolved (resolved_inside): asked for every file of every image.
    _folders: dict[str, tuple[str, bool]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def at(cls, out_dir: Path | str) -> OutputLayout:
        return cls(Path(out_dir).expanduser().resolve())

    def catalog_file(self, key: str, fmt: str) -> Path:
        return self._inside(f"{self.root}/{CATALOG_DIR}/{key}.{fmt}")

    def overlay_file(self, key: str) -> Path:
        return self._inside(f"{self.root}/{OVERLAY_DIR}/{key}.png")

    def thumbnail_file(self, key: str) -> Path:
        return self._inside(f"{self.root}/{THUMBNAIL_DIR}/{key}.jpg")

    def batch_file(self, name: str) -> Path:
        return self.root / name

    def is_own_output(self, path: Path) -> bool:
        """True for anything a predict run writes here, so it is never taken as an input: the
        batch files of a folder an earlier run wrote, and per-image files named as rockdet
        names them (``overlays/a.png.png``, not a user's own ``thumbnails/a.jpg``)."""
        real = str(resolved(path))
        folder, name = os.path.split(real)
        if folder == str(self.root) and name in BATCH_FILES:
            return self.holds_a_run()
        for own, suffixes in OWN_SUFFIXES.items():
            if real.startswith(f"{self.root}/{own}/"):
                stem, suffix = os.path.splitext(name)
                return suffix.lower() in suffixes and os.path.splitext(stem)[1] != ""
        return False

    def holds_a_run(self) -> bool:
        """Whether rockdet has written here before: the lock every run leaves, or its summary."""
        if (self.root / LOCK_FILE).is_file():
            return True
        try:
            summary = json.loads((self.root / SUMMARY_FILE).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(summary, dict) and isinstance(summary.get("versions"), dict) \
            and "rockdet" in summary["versions"]

    def resolved_inside(self, path: str, folders: dict[str, tuple[str, bool]], missing_too: bool = False) -> str:
        """``path`` (a string under --out) resolved, its folder looked up in (and added to)
        ``folders``; as _inside, one line when it resolves outside --out. Strings, not Paths:
        refuse_overwriting asks this for every output of an archive's batch. A folder not there yet
        is remembered only with ``missing_too`` (before the run has written anything)."""
        parent, name = os.path.split(path)
        known = folders.get(parent)
        if known is None:
            real = os.path.realpath(parent)
            known = (real, Path(real).is_relative_to(self.root))
            if missing_too or os.path.isdir(real):  # else resolved again once it exists
                folders[parent] = known
        real, inside = known
        resolved_path = os.path.join(real, name)
        if os.path.islink(resolved_path):
            resolved_path = os.path.realpath(resolved_path)
            inside = Path(resolved_path).is_relative_to(self.root)
        if not inside:
            raise RockdetError(f"{path}: resolves outside --out {self.root}; refusing to write there")
        return resolved_path

    def _inside(self, path: str) -> Path:
        # Resolution follows symlinks a user (or an attacker) may have placed under --out.
        self.resolved_inside(path, self._folders)
        return Path(path)


#: What each batch file is, for the line that refuses to overwrite an input with it.
_BATCH_WHAT = {SUMMARY_FILE: "the batch summary", ROCKS_FILE: "the batch's rocks", SITE_MAP_FILE: "the site map",
               COCO_FILE: "the COCO pre-annotations", LOCK_FILE: "the lock", JOURNAL_FILE: "the journal",
               BATCH_RECORD_FILE: "the batch files' record",
               **dict.fromkeys(SFD_FILES, "the SFD fit"),
               **dict.fromkeys(REPORT_FILES, "the report")}


def refuse_overwriting(layout: OutputLayout, keys: Iterable[str], formats: Iterable[str], overlay: bool,
                       reads: Iterable[Path]) -> None:
    """Refuse, with one line and before any work, a run whose outputs would replace a file it
    reads (an image, a label, the checkpoint, the camera), a file in ``--out`` that rockdet did
    not write, or a folder where a file goes."""
    root = layout.root
    if root.exists() and not root.is_dir():
        raise RockdetError(f"{root}: --out is a file, not a folder; predict writes a folder of catalogs")
    for folder in OWN_SUFFIXES:
        if (root / folder).exists() and not (root / folder).is_dir():
            raise RockdetError(f"{root / folder}: not a folder, but predict writes its {folder} there; "
                               f"move it or choose another --out")
    for name in BATCH_FILES:
        if (root / name).is_dir():
            raise RockdetError(f"{root / name}: a folder where predict writes {_BATCH_WHAT[name]}; "
                               f"move it or choose another --out")
    appended = [root / name for name in APPENDED_FILES] + sorted(root.glob(OTHER_JOURNALS)) \
        + sorted(root.glob(".rockdet.shard-*-of-*.lock"))
    for path in appended:  # written in place, not replaced: a link would send them elsewhere
        name = path.name
        if path.is_symlink() or (path.exists() and (not path.is_file() or path.stat().st_nlink > 1)):
            what = "a symbolic link" if path.is_symlink() else "not a plain file" if not path.is_file() \
                else "a hard link to another file"
            written = _BATCH_WHAT.get(name, "a shard's journal or lock")
            raise RockdetError(f"{path}: {what}, where predict writes {written}; "
                               f"remove it or choose another --out")
    if not layout.holds_a_run():
        foreign = [name for name in BATCH_FILES if (root / name).exists()]
        if foreign:
            raise RockdetError(f"{root}: --out holds {', '.join(foreign)}, which no rockdet run wrote (none ran "
                               f"here); predict would overwrite them: choose another --out")
    # By digest of the resolved path: an archive's outputs are checked without holding their paths.
    written = {digest(str((root / name).resolve())): _BATCH_WHAT[name] for name in BATCH_FILES}
    folders: dict[str, tuple[str, bool]] = {}  # each output folder resolved once, not each file (archive scale)
    catalog_formats = [fmt for fmt in formats if f".{fmt}" in OWN_SUFFIXES[CATALOG_DIR]]
    for key in keys:
        outputs = [(f"{root}/{CATALOG_DIR}/{key}.{fmt}", "a catalog") for fmt in catalog_formats]
        outputs.append((f"{root}/{THUMBNAIL_DIR}/{key}.jpg", "a report thumbnail"))
        if overlay:
            outputs.append((f"{root}/{OVERLAY_DIR}/{key}.png", "an overlay"))
        for path, what in outputs:
            written[digest(layout.resolved_inside(path, folders, missing_too=True))] = what
    for path in reads:
        what = written.get(digest(str(resolved(path))))
        if what:
            raise RockdetError(f"{path}: an input of this run, which predict would overwrite with {what}; "
                               f"move it or choose another --out")


#: atomic.atomic_path's temporary files: ".<name>.<8 random characters>.tmp" beside <name>.
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def remove_leftover_temp_files(layout: OutputLayout) -> int:
    """Remove the temporary files a killed run left beside its outputs (hold_output_lock calls
    it once it holds the lock, so no other run is writing them). Returns how many there were."""
    leftovers = [path for path in layout.root.glob(".*.tmp") if _TEMP_FILE.match(path.name)
                 and _TEMP_FILE.match(path.name)["name"] in BATCH_FILES]
    for folder in OWN_SUFFIXES:
        if (layout.root / folder).is_dir():
            leftovers += [path for path in (layout.root / folder).rglob(".*.tmp") if _TEMP_FILE.match(path.name)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d temporary file(s) an interrupted run left in %s", len(leftovers), layout.root)
    return len(leftovers)


#: Set in the environment of the process holding an output folder's lock, so the processes it
#: starts itself (DDP ranks) do not wait on their own parent.
LOCK_HOLDER_ENV = "ROCKDET_OUT_LOCK"
#: Seconds a process of a multi-machine run waits for the lock holder to write its run id.
RUN_ID_WAIT_SECONDS = 10.0


def shared_run_id() -> str | None:
    """The id every process of one run has, on every machine, from the cluster's environment:
    ``ROCKDET_RUN_ID`` if set, torchrun's rendezvous id, or the SLURM job and step. A process of a
    multi-machine run is not a child of the lock holder: this id lets it join the holder's lock."""
    if os.environ.get("ROCKDET_RUN_ID"):
        return "rockdet:" + os.environ["ROCKDET_RUN_ID"]
    if os.environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return "torchrun:" + os.environ["TORCHELASTIC_RUN_ID"]
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', 'batch')}"
    return None


def shard_name(shard: tuple[int, int] | None) -> str:
    """How a shard's own files are named: ``shard-K-of-N``; "" for a whole run."""
    return "" if shard is None else f"shard-{shard[0]}-of-{shard[1]}"


def journal_file(shard: tuple[int, int] | None = None, node: int | None = None) -> str:
    """The journal a process appends to: a shard, and each machine of a multi-node run, has its
    own (appends from many machines to one file on a network file system can interleave)."""
    parts = ([shard_name(shard)] if shard is not None else []) + ([f"node-{node}"] if node is not None else [])
    return f"journal.{'.'.join(parts)}.jsonl" if parts else JOURNAL_FILE


#: Journals other than journal.jsonl: of shards and of the machines of multi-node runs.
OTHER_JOURNALS = "journal.*.jsonl"


def journal_files(layout: OutputLayout) -> list[Path]:
    """Every journal in ``--out``: the shards' and machines' first, then the whole runs' (usually
    the later ones)."""
    return sorted(layout.root.glob(OTHER_JOURNALS)) + [layout.batch_file(JOURNAL_FILE)]


@contextmanager
def hold_output_lock(layout: OutputLayout, wait: bool = False, shard: tuple[int, int] | None = None
                     ) -> Iterator[bool]:
    """An advisory lock on ``--out`` for the whole run: a second run into the same folder
    refuses with one line naming the holder (or waits with ``wait``), so one batch never mixes
    the catalogs of two runs. Also proves the folder writable before any work.

    Shards (``--shard K/N``) share the folder: each holds the run lock shared and its own shard
    lock exclusively, so shards run side by side, a whole run waits for (or refuses) them all, and
    the same shard cannot run twice. Only a whole run removes a killed run's temporary files.

    The processes of one run on other machines (``--num-nodes``) are not children of the holder:
    each joins the lock when the holder's line names the same run id (shared_run_id), and a run
    of another id is still refused.

    Yields whether this process holds the lock itself: one process of a run, where its other
    processes (devices, machines) only join it."""
    if os.environ.get(LOCK_HOLDER_ENV) == str(layout.root):
        yield False
        return
    with _locked(layout, LOCK_FILE, wait, shared=shard is not None,
                 refusal="another rockdet run is writing here") as holds:
        if shard is None:
            if holds:  # only the holder: the processes of its run share its outputs
                remove_leftover_temp_files(layout)
            locks = contextlib.nullcontext(holds)
        else:
            locks = _locked(layout, f".rockdet.{shard_name(shard)}.lock", wait, shared=False,
                            refusal=f"shard {shard[0]}/{shard[1]} is already running here")
        with locks as holder:
            os.environ[LOCK_HOLDER_ENV] = str(layout.root)
            try:
                yield holder
            finally:
                os.environ.pop(LOCK_HOLDER_ENV, None)


@contextmanager
def _locked(layout: OutputLayout, name: str, wait: bool, shared: bool, refusal: str) -> Iterator[bool]:
    """Holds the lock file ``name`` (yields True), or joins the machine of this run that holds it
    (yields False)."""
    path = layout.batch_file(name)
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise RockdetError(f"{layout.root}: cannot write to --out ({exc.strerror or exc})") from None
    run_id = shared_run_id()
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle, run_id) or "shard runs, each named in its .rockdet.shard-*.lock"
            if run_id is not None and holder.endswith(f"; run {run_id}"):
                yield False  # another machine of this very run holds it
                return
            if not wait:
                raise RockdetError(f"{layout.root}: {refusal} ({holder}); "
                                   f"wait for it, use another --out, or pass --wait") from None
            fcntl.flock(handle, mode)
        handle.seek(0)
        handle.truncate()  # shared holders leave it empty: a refused whole run names the shards' files
        if not shared:
            handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                         + (f"; run {run_id}" if run_id else "") + "\n")
        handle.flush()
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(handle, run_id: str | None) -> str:
    """What the lock file says of its holder. A process of a multi-machine run may come just after
    the holder took the lock and before it wrote its name: it waits a little for the name."""
    deadline = time.monotonic() + (RUN_ID_WAIT_SECONDS if run_id else 0)
    while True:
        handle.seek(0)
        holder = handle.read().strip()
        if holder or time.monotonic() >= deadline:
            return holder
        time.sleep(0.1)
