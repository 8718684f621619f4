"""Predict's inputs are enumerated lazily into a spool file (issue 21): the same images, keys and
order as a list would give, read back by shards, devices and workers, in flat memory."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from rockdet.errors import RockdetError
from rockdet.io.inputs import collect_inputs


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def keys(images) -> list[str]:
    return [image.key for image in images]


def test_a_tree_comes_in_path_order_with_one_key_per_file(tmp_path):
    for name in ["b/2.png", "a.png", "a/9.png", "a/10.png", "b/1.JPG", "a b/x.png", ".hidden.png", "c/notes.txt"]:
        touch(tmp_path / "in" / name)
    touch(tmp_path / "other" / "a.png")
    (tmp_path / "in" / "link").symlink_to(tmp_path / "other")  # a linked folder is not entered
    images = collect_inputs([str(tmp_path / "in"), str(tmp_path / "other"), str(tmp_path / "in" / "a.png")])
    assert keys(images) == ["a/10.png", "a/9.png", "a b/x.png", "a.png", "b/1.JPG", "b/2.png", "a.png__2"]
    assert [image.path for image in images][-1] == tmp_path / "other" / "a.png"
    assert len(images) == 7


def test_shards_devices_and_workers_part_the_list_as_slices_of_a_list(tmp_path):
    for n in range(23):
        touch(tmp_path / "in" / f"{n:03d}.png")
    images = collect_inputs([str(tmp_path / "in")])
    every = keys(images)
    for shard, rank, worker in [(slice(0, None, 3), slice(1, None, 2), slice(0, None, 2)),
                                (slice(2, None, 3), slice(0, None, 1), slice(1, None, 4))]:
        part = images[shard][rank][worker]
        assert keys(part) == every[shard][rank][worker] and len(part) == len(every[shard][rank][worker])
    assert len(images[30::2]) == 0 and not images[30::2] and list(images[30::2]) == []
    with pytest.raises(TypeError, match=r"\[first::step\]"):
        images[1:5]


def test_a_worker_process_reads_the_list_and_only_its_writer_removes_the_spool(tmp_path):
    for n in range(5):
        touch(tmp_path / "in" / f"{n}.png")
    images = collect_inputs([str(tmp_path / "in")])
    spool = images.spool
    assert pickle.loads(pickle.dumps(images[1::2])).spool == spool
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(keys, (images[1::2],)) == ["1.png", "3.png"]
    child = os.fork()
    if child == 0:  # a forked worker whose copy of the list is collected: the file must stay
        images._owner.remove()
        os._exit(0)
    os.waitpid(child, 0)
    part = images[::2]
    del images
    gc.collect()
    assert spool.exists() and keys(part) == ["0.png", "2.png", "4.png"]  # a slice keeps it
    del part
    gc.collect()
    assert not spool.exists()


def test_an_archive_folder_costs_a_digest_per_image_not_its_paths(tmp_path):
    count = 5000
    for n in range(count):
        touch(tmp_path / "in" / f"{n // 1000:02d}" / f"frame_with_a_long_archive_name_{n:07d}.png")
    # In a fresh interpreter: what other tests imported or left running must not count.
    measure = f"""
import tracemalloc
from rockdet.io.inputs import collect_inputs
from rockdet.io.resolved import folders_resolved_once
tracemalloc.start()
with folders_resolved_once():
    images = collect_inputs([{str(tmp_path / "in")!r}])
print(len(images), tracemalloc.get_traced_memory()[1])
"""
    found, peak = map(int, subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True,
                                          check=True).stdout.split())
    assert found == count
    # Held in a list, the inputs peaked at about 1,500 bytes an image (a Path, a key, the sorted
    # list of every file). Spooled: about 600 at this size, 400 at 20,000 (two 16-byte digests an
    # image in sets, one folder listing at a time, Python's table of interned path parts).
    assert peak / count < 800, f"{peak / count:.0f} bytes an image"


def test_a_missing_input_fails_before_any_folder_is_walked(tmp_path, monkeypatch):
    import rockdet.io.inputs as inputs

    touch(tmp_path / "in" / "a.png")
    monkeypatch.setattr(inputs, "_images_under", lambda folder: pytest.fail("walked a folder"))
    with pytest.raises(RockdetError, match=r"gone\.png: input not found \(give image files"):
        collect_inputs([str(tmp_path / "in"), str(tmp_path / "gone.png")])


def test_a_killed_runs_spool_is_cleared_by_the_next_run_and_a_live_ones_is_not(tmp_path, monkeypatch):
    import tempfile

    from rockdet.io.input_list import SPOOL_PREFIX, InputSpool

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    touch(tmp_path / "in" / "a.png")
    killed, young = touch(temporary / f"{SPOOL_PREFIX}killed.jsonl"), touch(temporary / f"{SPOOL_PREFIX}young.jsonl")
    os.utime(killed, (1, 1))  # an hour old and more, and nobody holds its lock
    live = InputSpool()  # its writer is running (this process): it holds the lock
    os.utime(live.path, (1, 1))
    (temporary / f"{SPOOL_PREFIX}link.jsonl").symlink_to(tmp_path / "in" / "a.png")
    os.utime(temporary / f"{SPOOL_PREFIX}link.jsonl", (1, 1), follow_symlinks=False)
    images = collect_inputs([str(tmp_path / "in")])
    assert not killed.exists() and young.exists() and live.path.exists()
    assert (temporary / f"{SPOOL_PREFIX}link.jsonl").is_symlink() and (tmp_path / "in" / "a.png").exists()
    assert images.spool.parent == temporary and keys(images) == ["a.png"]
    live.abandon()
    assert not live.path.exists()


def test_a_list_with_a_byte_order_mark_and_old_mac_line_ends_reads_line_by_line(tmp_path):
    touch(tmp_path / "a.png")
    touch(tmp_path / "sub" / "x.png")
    listing = tmp_path / "frames.txt"
    listing.write_bytes(b"\xef\xbb\xbf# frames of sol 12\ra.png\r\rsub\r  # an indented comment\n")
    assert keys(collect_inputs([str(listing)])) == ["a.png", "sub/x.png"]
    listing.write_bytes(b"a.png\nsub\n\xff.png\n")
    with pytest.raises(RockdetError, match=r"frames\.txt: not a list of paths \(not UTF-8 text at line 3, byte 1\)"):
        collect_inputs([str(listing)])


def test_a_spool_removed_from_the_temporary_folder_mid_run_is_still_read(tmp_path):
    for n in range(3):
        touch(tmp_path / "in" / f"{n}.png")
    images = collect_inputs([str(tmp_path / "in")])
    images.spool.unlink()  # a cleaner of old temporary files, during a long run
    assert keys(images) == ["0.png", "1.png", "2.png"] and keys(images[1::1]) == ["1.png", "2.png"]


def test_a_temporary_folder_that_cannot_be_written_is_one_line_naming_it(tmp_path, monkeypatch):
    import tempfile

    touch(tmp_path / "in" / "a.png")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    with pytest.raises(RockdetError, match=r"gone.*cannot hold the list of inputs .*set TMPDIR"):
        collect_inputs([str(tmp_path / "in")])
