"""Hostile and careless inputs: results are never lost, never written outside --out, never mixed,
and no file runs code. Cases tried (each a test below that fails without its fix):

- a glob with ``..`` that leads outside the input folder: outputs stay under --out, one catalog
  for one file reached three ways;
- ``img.v2.png`` and ``img.v3.png``: two catalogs, not one overwritten;
- the same file name with other bytes in another folder, into the same --out: redone, not skipped;
- inputs named ``summary.png`` and ``rocks.png``: their catalogs and the batch files coexist;
- --out equal to the input folder with --overlay, run twice: overlays are never inputs;
- a second run into an --out another run holds: refused with one line naming the holder;
- a --out that cannot be written: refused before any work;
- a float image with NaN nodata: stretched over finite pixels, the masked count recorded;
- an animated GIF: its frame count recorded;
- catalog files under a umask of 022: readable by the group and others;
- a checkpoint that runs code when unpickled: refused, the code never runs;
- a hand-made checkpoint with an unknown model key, one whose weights do not fit: one short line;
- a symlink loop among the inputs: named as a loop, with what the other inputs hold;
- a COCO annotation whose bbox is a string: one line naming the file and the annotation;
- NaN or infinity in a config or camera file, data.batch_size=0: refused naming file and key;
- --workers -1, --devices 0, sfd --area-m2 nan: one usage error;
- sfd over invalid JSON, a JSON list, and non-numeric or negative diameters: counted and named;
- training on a split without a single rock: refused naming the split.
"""

from __future__ import annotations

import fcntl
import json
import os

import numpy as np
import pytest
import torch
from conftest import write_coco
from oracle import draw_rocks, save
from PIL import Image

from rockdet.cli import main
from rockdet.config import SplitConfig
from rockdet.data.formats import load_split
from rockdet.data.images import read_image
from rockdet.errors import DataError

ROCK = [(10, 10, 20, 20)]


def predict(out, *inputs, extra=()):
    return main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), *map(str, inputs), *extra])


def own_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_outputs_never_escape_out_and_one_file_gets_one_catalog(tmp_path, oracle):
    for folder in ("A", "B", "C"):
        (tmp_path / "in" / folder).mkdir(parents=True)
    save(draw_rocks(40, 40, ROCK), tmp_path / "victim" / "v.png")
    (tmp_path / "victim" / "v.csv").write_text("precious\n")
    out = tmp_path / "out"
    assert predict(out, f"{tmp_path}/in/*/../../victim/v.png") == 0
    assert (tmp_path / "victim" / "v.csv").read_text() == "precious\n"
    assert sorted(p.name for p in (tmp_path / "victim").iterdir()) == ["v.csv", "v.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == summary["done"] == 1
    assert (out / "catalogs" / "v.png.json").is_file()


def test_dotted_names_get_a_catalog_each(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "img.v2.png")
    save(draw_rocks(40, 40, ROCK * 0), tmp_path / "in" / "img.v3.png")
    assert predict(tmp_path / "out", tmp_path / "in") == 0
    catalogs = tmp_path / "out" / "catalogs"
    assert json.loads((catalogs / "img.v2.png.json").read_text())["rock_count"] == 1
    assert json.loads((catalogs / "img.v3.png.json").read_text())["rock_count"] == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rocks_total"] == 1


def test_resume_redoes_a_catalog_made_from_another_file_of_the_same_name(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "A" / "same.png")
    save(draw_rocks(40, 40, ROCK + [(25, 25, 35, 35)]), tmp_path / "B" / "same.png")
    out = tmp_path / "out"
    assert predict(out, tmp_path / "A") == 0
    assert predict(out, tmp_path / "B") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["skipped"], summary["rocks_total"]) == (1, 0, 2)
    assert predict(out, tmp_path / "B") == 0  # now the same file: kept
    assert json.loads((out / "summary.json").read_text())["skipped"] == 1


def test_inputs_named_like_batch_files_keep_their_catalogs(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "summary.png")
    save(draw_rocks(40, 40, ROCK + [(25, 25, 35, 35)]), tmp_path / "in" / "rocks.png")
    assert predict(tmp_path / "out", tmp_path / "in") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["done"] == 2 and summary["rocks_total"] == 3
    assert json.loads((tmp_path / "out" / "catalogs" / "rocks.png.json").read_text())["rock_count"] == 2


def test_out_inside_the_input_folder_never_takes_its_own_outputs_as_inputs(tmp_path, oracle):
    folder = tmp_path / "shared"
    save(draw_rocks(40, 40, ROCK), folder / "a.png")
    for _ in range(2):
        assert predict(folder, folder, extra=["--overlay", "--camera", str(_nadir(tmp_path))]) == 0
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["images"] == 1
    assert [p for p in own_files(folder) if p.endswith(".png")] == ["a.png", "overlays/a.png.png", "report_sizes.png",
                                                                    "sfd.png"]


def _nadir(tmp_path):
    camera = tmp_path / "nadir.yaml"
    camera.write_text("model: nadir\nimage_width: 40\nimage_height: 40\ngsd_m: 0.05\n")
    return camera


def test_a_second_run_into_a_held_out_folder_refuses_naming_the_holder(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".rockdet.lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("pid 4242 on survey-node since 2026-11-24 10:00:00\n")
        holder.flush()
        assert predict(out, tmp_path / "in") == 2
    error = capsys.readouterr().err
    assert "another rockdet run is writing here (pid 4242 on survey-node" in error and "--wait" in error
    assert not (out / "catalogs").exists()
    assert predict(out, tmp_path / "in") == 0  # released: the next run goes ahead


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert predict(blocker / "out", tmp_path / "in") == 2
    assert "cannot write to --out" in capsys.readouterr().err
    assert oracle.calls == []


def test_float_nodata_is_masked_not_blackening_the_image(tmp_path):
    values = np.linspace(0, 1000, 40 * 40, dtype=np.float32).reshape(40, 40)
    values[0, 0] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "dem.tif")
    image = read_image(tmp_path / "dem.tif")
    assert image.pixels.max() == 255 and image.pixels[0, 0].tolist() == [0, 0, 0]
    assert int(image.pixels[20, 20, 0]) == pytest.approx(128, abs=3)
    assert "1 non-finite pixel values (nodata) masked to 0" in image.notes


def test_animated_gif_records_the_frame_used(tmp_path):
    frames = [Image.fromarray(draw_rocks(20, 20, [(i, i, i + 5, i + 5)])) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert "first of 3 frames used" in read_image(tmp_path / "anim.gif").notes


def test_catalogs_follow_the_umask(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    previous = os.umask(0o022)
    try:
        assert predict(tmp_path / "out", tmp_path / "in") == 0
    finally:
        os.umask(previous)
    for name in ("catalogs/a.png.csv", "catalogs/a.png.json", "summary.json", "rocks.csv"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o644, name


class RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"arch": "x"}}, "x": RunsCode(marker)},
               checkpoint)
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    code = main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                 str(tmp_path / "in")])
    assert code == 2 and not marker.exists()
    assert "could run code; refused" in capsys.readouterr().err


def test_hand_made_checkpoints_get_one_short_line(tmp_path, capsys):
    unknown = tmp_path / "unknown.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"arch": "fasterrcnn_resnet18_fpn",
                                                                 "colour": "red"}}}, unknown)
    misfit = tmp_path / "misfit.ckpt"
    torch.save({"state_dict": {"model.backbone.body.conv1.weight": torch.zeros(1)},
                "hyper_parameters": {"model": {"arch": "fasterrcnn_resnet18_fpn", "min_size": 64,
                                               "max_size": 64}}}, misfit)
    data = tmp_path / "val.json"
    write_coco(data, [], [])
    for checkpoint, message in ((unknown, "unknown model setting(s) ['colour']"),
                                (misfit, "weights do not fit fasterrcnn_resnet18_fpn")):
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data)]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert message in error and len(error) < 300


def test_a_symlink_loop_is_named_as_such(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    assert predict(tmp_path / "out", tmp_path / "in", loop) == 2
    error = capsys.readouterr().err
    assert "loop.png: symlink loop" in error and "the other 1 input(s) hold 1 file(s)" in error


def test_a_string_bbox_is_one_line_naming_the_file(tmp_path):
    save(draw_rocks(40, 40, ROCK), tmp_path / "a.png")
    path = write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 40, "height": 40}],
                      [{"id": 9, "image_id": 1, "category_id": 1, "bbox": "10,10,5,5"}])
    with pytest.raises(DataError, match=r"ann.json: annotation 9 has a malformed bbox '10,10,5,5'"):
        load_split(SplitConfig(annotations=path), ["rock"])


def test_non_finite_numbers_in_config_and_camera_files_are_refused(tmp_path):
    from rockdet.config import load_config
    from rockdet.errors import ConfigError
    from rockdet.geometry import load_camera

    camera = tmp_path / "cam.yaml"
    camera.write_text("image_width: 64\nimage_height: 48\nhfov_deg: 60\nheight_m: .nan\npitch_deg: 20\n")
    with pytest.raises(ConfigError, match=r"cam.yaml: height_m: expected a finite number, got nan"):
        load_camera(camera)
    config = tmp_path / "c.yaml"
    config.write_text("optimizer: {lr: .inf}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: optimizer.lr: expected a finite number"):
        load_config(config)
    config.write_text("data: {batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: data.batch_size: must be at least 1, got 0"):
        load_config(config)


def test_bad_command_line_numbers_are_one_usage_error(tmp_path, capsys):
    for args, message in ((["predict", "--checkpoint", "m", "--out", "o", "x", "--workers", "-1"],
                           "--workers: must be at least 0, got -1"),
                          (["predict", "--checkpoint", "m", "--out", "o", "x", "--devices", "0"],
                           "--devices: must be at least 1, got 0"),
                          (["sfd", "x", "--out", "o", "--area-m2", "nan"],
                           "--area-m2: must be a finite number above 0, got nan")):
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_sfd_over_broken_catalogs_says_what_it_left_out(tmp_path, capsys):
    catalogs = tmp_path / "batch" / "catalogs"
    catalogs.mkdir(parents=True)
    rocks = [{"diameter_m": d} for d in (0.3, 0.5, 0.2, 0.8, 1.1, 0.4)]
    rocks += [{"diameter_m": "big"}, {"diameter_m": -1}, {"diameter_m": None}]
    (catalogs / "a.png.json").write_text(json.dumps({"complete": True, "ground_area_m2": 50, "rocks": rocks}))
    (catalogs / "b.png.json").write_text("{not json")
    (catalogs / "c.png.json").write_text("[1, 2]")
    assert main(["sfd", str(tmp_path / "batch"), "--out", str(tmp_path / "sfd"), "--bootstrap", "5"]) == 0
    printed = capsys.readouterr().out
    assert "6 rocks with a metric size on 50.00 m^2" in printed
    assert "b.png.json: not readable JSON" in printed and "c.png.json: not a rockdet catalog" in printed
    assert "left out 2 diameters" in printed
    json.loads((tmp_path / "sfd" / "sfd.json").read_text())  # strict JSON, no NaN


def test_training_on_a_split_without_rocks_is_refused(tmp_path, capsys):
    from conftest import CONFIGS

    save(draw_rocks(40, 40, []), tmp_path / "a.png")
    empty = write_coco(tmp_path / "empty.json", [{"id": 1, "file_name": "a.png", "width": 40, "height": 40}], [])
    code = main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), f"data.train.annotations={empty}",
                 f"data.val.annotations={empty}", f"run.dir={tmp_path / 'run'}"])
    assert code == 2 and "empty.json: the training split has no rock" in capsys.readouterr().err
