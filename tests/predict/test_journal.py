"""The batch journal: a line per image as it finishes, the record a resumed run trusts instead of
hashing every finished input again (unless --verify), and what survives a kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from oracle import draw_rocks, save, tiny_checkpoint

from rockdet.catalog.files import read_catalog_csv
from rockdet.cli.main import main
from rockdet.predict.journal import RACY_NANOSECONDS

ROCKS = [(20, 20, 40, 40), (70, 60, 95, 90), (10, 80, 30, 100)]
SMALL_ROCKS = [(5, 5, 20, 20), (30, 30, 50, 50), (10, 40, 25, 60)]


def write_inputs(folder, count, size=(130, 120), suffix="png"):
    rocks = ROCKS if size[0] > 100 else SMALL_ROCKS
    for i in range(count):
        save(draw_rocks(*size, rocks[: i % 3 + 1]), folder / f"img{i:03d}.{suffix}")
    return folder


def settle():
    """Archive inputs are old; a file written this very moment may change again unseen (its times
    are too close to when they were recorded), so resume would hash it."""
    time.sleep(RACY_NANOSECONDS / 1e9 + 0.1)


def predict(out, folder, *extra):
    return main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(folder), "--tile", "64", *extra])


def journal_lines(out):
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_each_finished_or_failed_image_is_one_journal_line(tmp_path, oracle):
    folder = write_inputs(tmp_path / "in", 3)
    (folder / "broken.png").write_bytes(b"not a png")
    assert predict(tmp_path / "out", folder) == 0
    lines = {line["image"]: line for line in journal_lines(tmp_path / "out")}
    assert sorted(lines) == ["broken.png", "img000.png", "img001.png", "img002.png"]
    assert lines["broken.png"]["status"] == "failed" and lines["broken.png"]["reason"]
    done = lines["img002.png"]
    assert (done["status"], done["rocks"], done["source"]) == ("done", 3, str((folder / "img002.png").resolve()))
    size = (folder / "img002.png").stat().st_size
    assert done["files"][str((folder / "img002.png").resolve())][0] == size


def test_resume_trusts_unchanged_inputs_by_size_and_times_and_hashes_with_verify(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 4), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0 and summary_of(out)["done"] == 4
    assert predict(out, folder) == 0
    assert (summary_of(out)["skipped"], summary_of(out)["kept_by_file_times"], summary_of(out)["kept_by_hash"]) == (4, 4, 0)
    assert predict(out, folder, "--verify") == 0
    assert (summary_of(out)["skipped"], summary_of(out)["kept_by_file_times"], summary_of(out)["kept_by_hash"]) == (4, 0, 4)


def test_a_no_op_resume_keeps_catalogs_the_journal_vouches_for_without_reading_them(tmp_path, oracle, monkeypatch):
    import rockdet.predict.resume as resume

    folder, out = write_inputs(tmp_path / "in", 3), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    recorded = {line["image"]: line["catalog"] for line in journal_lines(out)}
    catalog = out / "catalogs" / "img001.png.json"
    assert recorded["img001.png"]["json"][:2] == [catalog.stat().st_size, catalog.stat().st_mtime_ns]
    read = []
    with monkeypatch.context() as patched:
        patched.setattr(resume, "earlier_catalog", lambda *args: read.append(args) or (None, "read"))
        assert predict(out, folder) == 0
    assert read == [] and (summary_of(out)["skipped"], summary_of(out)["rocks_total"]) == (3, 1 + 2 + 3)
    # A catalog changed since its line was written is read and checked again, not vouched for.
    os.utime(catalog, ns=(catalog.stat().st_atime_ns, catalog.stat().st_mtime_ns + 1))
    assert predict(out, folder) == 0
    assert (summary_of(out)["skipped"], summary_of(out)["kept_by_file_times"]) == (3, 3)
    assert journal_lines(out)[-1]["catalog"]["json"][1] == catalog.stat().st_mtime_ns  # vouched next time


def test_journal_lines_written_before_catalogs_were_recorded_still_keep_their_catalogs(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 3), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    old_lines = [{k: v for k, v in line.items() if k != "catalog"} for line in journal_lines(out)]
    (out / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in old_lines))
    assert predict(out, folder) == 0
    assert (summary_of(out)["skipped"], summary_of(out)["kept_by_file_times"], summary_of(out)["kept_by_hash"]) == (3, 3, 0)
    assert all("catalog" in line for line in journal_lines(out)[3:]) and len(journal_lines(out)) == 6


def test_catalogs_made_with_another_threshold_are_redone_even_when_the_journal_vouches_for_the_file(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 2), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    assert predict(out, folder, "--score-threshold", "0.9") == 0
    assert (summary_of(out)["done"], summary_of(out)["redone_made_otherwise"]) == (2, 2)


def test_a_no_op_resume_keeps_the_batch_files_built_from_the_same_catalogs_and_rebuilds_changed_ones(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 3), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    rocks, report_data = out / "rocks.csv", out / "report_images.js"
    built = rocks.read_text(), rocks.stat().st_ino, report_data.stat().st_ino
    assert predict(out, folder) == 0
    summary = summary_of(out)
    assert (summary["done"], summary["skipped"], summary["rocks_total"]) == (0, 3, 6)
    assert (rocks.read_text(), rocks.stat().st_ino, report_data.stat().st_ino) == built  # kept, not rewritten
    assert "3 skipped (already complete)" in (out / "report.html").read_text()  # the page tells this run
    # A batch file edited by hand, or a catalog changed since, and the batch files are built again.
    rocks.write_text("image\n")
    assert predict(out, folder) == 0 and rocks.read_text() == built[0]
    catalog = out / "catalogs" / "img000.png.json"
    os.utime(catalog, ns=(catalog.stat().st_atime_ns, catalog.stat().st_mtime_ns + 1))
    inode = rocks.stat().st_ino
    assert predict(out, folder) == 0 and rocks.stat().st_ino != inode and rocks.read_text() == built[0]
    # Asking for a COCO file builds it, though every catalog is kept.
    assert predict(out, folder, "--format", "csv,json,coco") == 0
    assert summary_of(out)["skipped"] == 3 and len(json.loads((out / "predictions.coco.json").read_text())["annotations"]) == 6


def test_a_batch_record_naming_files_outside_out_is_not_followed(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 2), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    record = json.loads((out / ".rockdet.batch.json").read_text())
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    status = outside.stat()  # its true stamp: followed, the record would still hold
    record["files"]["../secret.txt"] = [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]
    (out / ".rockdet.batch.json").write_text(json.dumps(record))
    rocks = out / "rocks.csv"
    inode = rocks.stat().st_ino
    assert predict(out, folder) == 0
    assert rocks.stat().st_ino != inode and outside.read_text() == "x"  # a record it cannot trust: rebuilt
    assert "../secret.txt" not in (out / ".rockdet.batch.json").read_text()


def test_kept_batch_files_of_a_sized_batch_keep_its_sfd_and_another_rockdet_version_builds_them_again(
        tmp_path, oracle, monkeypatch):
    import rockdet

    camera = tmp_path / "nadir.yaml"
    camera.write_text("model: nadir\nimage_width: 130\nimage_height: 120\ngsd_m: 0.05\n")
    folder, out = write_inputs(tmp_path / "in", 3), tmp_path / "out"
    settle()
    assert predict(out, folder, "--camera", str(camera)) == 0
    first, rocks = summary_of(out), out / "rocks.csv"
    inode = rocks.stat().st_ino
    assert predict(out, folder, "--camera", str(camera)) == 0
    kept = summary_of(out)
    assert rocks.stat().st_ino == inode and kept["skipped"] == 3
    assert (kept["sfd"], kept["site_map"], kept["rocks_total"]) == (first["sfd"], first["site_map"], first["rocks_total"])
    assert "diameter_m" in rocks.read_text().splitlines()[0]
    monkeypatch.setattr(rockdet, "__version__", rockdet.__version__ + ".dev1")
    assert predict(out, folder, "--camera", str(camera)) == 0
    assert rocks.stat().st_ino != inode and summary_of(out)["sfd"] == first["sfd"]


@pytest.mark.parametrize("hostile", ["no rocks_total", "extra summary key", "symlink", "fifo", "deep", "huge"])
def test_a_batch_record_rockdet_did_not_write_means_the_batch_files_are_built_again(tmp_path, oracle, hostile):
    folder, out = write_inputs(tmp_path / "in", 2), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    path = out / ".rockdet.batch.json"
    record = json.loads(path.read_text())
    if hostile == "no rocks_total":
        del record["summary"]["rocks_total"]
        path.write_text(json.dumps(record))
    elif hostile == "extra summary key":
        record["summary"]["done"] = 999
        path.write_text(json.dumps(record))
    elif hostile == "symlink":
        real = tmp_path / "record.json"
        real.write_text(json.dumps(record))
        path.unlink()
        path.symlink_to(real)
    elif hostile == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif hostile == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_text(json.dumps({**record, "padding": "x" * (2 << 20)}))
    inode = (out / "rocks.csv").stat().st_ino
    assert predict(out, folder) == 0
    summary = summary_of(out)
    assert (out / "rocks.csv").stat().st_ino != inode
    assert (summary["done"], summary["skipped"], summary["rocks_total"]) == (0, 2, 3)


def test_a_journal_line_vouching_for_a_catalog_that_is_gone_does_not_keep_it(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 2), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0
    lines = journal_lines(out)
    for line in lines:
        line["catalog"]["json"] = None
    (out / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (out / "catalogs" / "img000.png.json").unlink()
    assert predict(out, folder) == 0
    assert (summary_of(out)["done"], summary_of(out)["skipped"]) == (1, 1)


def test_a_no_op_resume_never_imports_lightning(tmp_path):
    folder, out = write_inputs(tmp_path / "in", 2, size=(64, 64)), tmp_path / "out"
    model = tiny_checkpoint(tmp_path / "tiny.ckpt", score_threshold=0.0)
    arguments = ["--quiet", "predict", "--checkpoint", str(model), "--out", str(out), str(folder), "--device", "cpu"]
    settle()
    assert main(arguments) == 0
    script = f"import sys\nfrom rockdet.cli.main import main\nprint(main({arguments!r}), 'pytorch_lightning' in sys.modules)\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.splitlines()[-1] == "0 False", result.stderr[-2000:]
    assert summary_of(out)["skipped"] == 2


def test_an_input_rewritten_with_its_old_size_and_modification_time_is_redone(tmp_path, oracle):
    folder, out = write_inputs(tmp_path / "in", 2, suffix="bmp"), tmp_path / "out"
    settle()
    assert predict(out, folder) == 0 and summary_of(out)["rocks_total"] == 1 + 2
    image = folder / "img000.bmp"
    before = image.stat()
    save(draw_rocks(130, 120, ROCKS[:2]), image)  # another rock; uncompressed, so the same size
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `rsync -t` leave it
    assert image.stat().st_size == before.st_size and image.stat().st_mtime_ns == before.st_mtime_ns
    assert predict(out, folder) == 0
    summary = summary_of(out)
    assert (summary["done"], summary["skipped"], summary["redone_made_otherwise"]) == (1, 1, 1)


def run_predict(model, out, folder) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rockdet.cli.main", "predict", "--checkpoint", str(model),
                             "--out", str(out), str(folder), "--device", "cpu", "--batch-size", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_journal_to_the_catalogs_of_an_uninterrupted_run(tmp_path):
    folder, model = write_inputs(tmp_path / "in", 40, size=(64, 64)), tiny_checkpoint(tmp_path / "m.ckpt", score_threshold=0.0)
    settle()
    killed = run_predict(model, tmp_path / "killed", folder)
    journal = tmp_path / "killed" / "journal.jsonl"
    deadline = time.monotonic() + 300
    while killed.poll() is None and time.monotonic() < deadline:
        if journal.is_file() and journal.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finished = [line["image"] for line in journal_lines(tmp_path / "killed") if line["status"] == "done"]
    assert 3 <= len(finished) < 40 and not (tmp_path / "killed" / "summary.json").exists()

    assert run_predict(model, tmp_path / "killed", folder).wait() == 0
    resumed = summary_of(tmp_path / "killed")
    # Every image the journal names is kept unhashed; one catalogued just before the kill, its
    # journal line not yet written, is kept by hashing.
    assert resumed["kept_by_file_times"] == len(finished)
    assert resumed["skipped"] - resumed["kept_by_hash"] == len(finished)
    assert resumed["done"] + resumed["skipped"] == 40 and resumed["failed"] == 0
    assert run_predict(model, tmp_path / "whole", folder).wait() == 0
    assert read_catalog_csv(tmp_path / "killed" / "rocks.csv") == read_catalog_csv(tmp_path / "whole" / "rocks.csv")
    assert summary_of(tmp_path / "killed")["rocks_total"] == summary_of(tmp_path / "whole")["rocks_total"]


def test_a_journal_symlinked_to_a_file_elsewhere_is_refused_in_one_line_and_the_file_untouched(tmp_path, oracle,
                                                                                                capsys):
    folder, out = write_inputs(tmp_path / "in", 1), tmp_path / "out"
    assert predict(out, folder) == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (out / "journal.jsonl").unlink()
    (out / "journal.jsonl").symlink_to(precious)
    assert predict(out, folder, "--overwrite") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "journal.jsonl: a symbolic link, where predict writes the journal" in error
    assert precious.read_text() == "keep me"


def test_a_journal_hard_linked_to_another_file_is_refused(tmp_path, oracle, capsys):
    folder, out = write_inputs(tmp_path / "in", 1), tmp_path / "out"
    assert predict(out, folder) == 0
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep me")
    (out / "journal.jsonl").unlink()
    os.link(elsewhere, out / "journal.jsonl")
    assert predict(out, folder, "--overwrite") == 2
    assert "journal.jsonl: a hard link to another file" in capsys.readouterr().err
    assert elsewhere.read_text() == "keep me"


def test_a_journal_that_cannot_be_written_costs_a_warning_not_the_batch(tmp_path, oracle, monkeypatch, capsys):
    import rockdet.predict.journal as journal

    def disk_full(descriptor, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal.os, "write", disk_full)
    assert predict(tmp_path / "out", write_inputs(tmp_path / "in", 3)) == 0
    summary = summary_of(tmp_path / "out")
    assert (summary["done"], summary["failed"]) == (3, 0)
    assert capsys.readouterr().err.count("journal.jsonl: cannot be written (No space left on device)") == 1


def test_an_input_that_changes_while_it_is_read_fails_instead_of_being_catalogued(tmp_path, oracle, monkeypatch):
    import rockdet.predict.lightning_run as run

    real_stamps, calls = run.file_stamps, []

    def rewritten_meanwhile(path):
        calls.append(path.name)
        stamps = real_stamps(path)
        if calls.count("img001.png") > 1 and path.name == "img001.png":  # between the read and the catalog
            stamps = {name: [size + 1, *rest] for name, (size, *rest) in stamps.items()}
        return stamps

    monkeypatch.setattr(run, "file_stamps", rewritten_meanwhile)
    out = tmp_path / "out"
    assert predict(out, write_inputs(tmp_path / "in", 2)) == 0
    summary = summary_of(out)
    assert (summary["done"], summary["failed"]) == (1, 1)
    assert summary["failures"][0] == {"image": "img001.png", "reason": "the input changed while it was being read; "
                                                                       "run again to catalogue it"}
    assert not (out / "catalogs" / "img001.png.json").exists()


def rows_of(out):
    return read_catalog_csv(out / "rocks.csv")


def test_shards_then_one_run_without_a_shard_equal_a_single_run(tmp_path, oracle):
    folder = write_inputs(tmp_path / "in", 7)
    settle()
    out = tmp_path / "sharded"
    for k in (1, 2, 3):  # array jobs, in any order
        assert predict(out, folder, "--shard", f"{k}/3") == 0
        assert not (out / "summary.json").exists()  # the batch files wait for the last step
    shards = {line["image"] for k in (1, 2, 3) for line in journal_lines_of(out / f"journal.shard-{k}-of-3.jsonl")}
    assert len(shards) == 7
    assert predict(out, folder) == 0
    final = summary_of(out)
    assert (final["done"], final["skipped"], final["kept_by_file_times"], final["kept_by_hash"]) == (0, 7, 7, 0)
    assert predict(tmp_path / "single", folder) == 0
    assert rows_of(out) == rows_of(tmp_path / "single") and final["rocks_total"] == summary_of(tmp_path / "single")["rocks_total"]
    for catalog in (tmp_path / "single" / "catalogs").glob("*.csv"):
        assert read_catalog_csv(out / "catalogs" / catalog.name) == read_catalog_csv(catalog)


def journal_lines_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_shards_run_side_by_side_but_a_whole_run_or_the_same_shard_is_refused(tmp_path, oracle, capsys):
    folder, out = write_inputs(tmp_path / "in", 4), tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from rockdet.io.layout import OutputLayout, hold_output_lock\n"
                               "with hold_output_lock(OutputLayout.at(sys.argv[1]), shard=(1, 2)):\n"
                               "    print('held', flush=True); time.sleep(60)\n", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert predict(out, folder, "--shard", "2/2") == 0  # another shard: side by side
        capsys.readouterr()
        assert predict(out, folder, "--shard", "1/2") == 2
        assert "shard 1/2 is already running here (pid" in capsys.readouterr().err
        assert predict(out, folder) == 2
        assert "another rockdet run is writing here (shard runs" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert predict(out, folder) == 0  # the shards are done: the whole run writes the batch files


SBATCH = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "predict_shards.sbatch"


@pytest.mark.slow
def test_the_slurm_array_example_catalogues_each_image_once_and_the_last_job_writes_the_batch(tmp_path):
    folder, model = write_inputs(tmp_path / "in", 5, size=(64, 64)), tiny_checkpoint(tmp_path / "m.ckpt")
    out = tmp_path / "out"
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "2", "SLURM_CPUS_PER_TASK": "1"}
    for task in ("2", "1"):
        done = subprocess.run(["bash", str(SBATCH), str(model), str(out), str(folder), "--device", "cpu"],
                              env={**environment, "SLURM_ARRAY_TASK_ID": task}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert f"shard {task}/2: " in done.stdout
    journals = [journal_lines_of(out / f"journal.shard-{k}-of-2.jsonl") for k in (1, 2)]
    assert sorted(line["image"] for lines in journals for line in lines) == [f"img{i:03d}.png" for i in range(5)]
    assert subprocess.run([sys.executable, "-m", "rockdet.cli.main", "predict", "--checkpoint", str(model), "--out",
                           str(out), str(folder), "--device", "cpu"], capture_output=True).returncode == 0
    assert (summary_of(out)["images"], summary_of(out)["done"], summary_of(out)["skipped"]) == (5, 0, 5)
