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

Issue 19 (data-file paths, resume, predict outputs); BAD: wrong before its fix, OK: pinned.
Resume and tampered catalogs:
- a detached-label PDS3 product whose label alone changes (camera 1 m higher), then whose pixel
  file alone changes: redone both times, kept when nothing changed (BAD: "0 done, 1 skipped");
- --camera FILE whose exclusion mask alone changes: redone (BAD); a mask that is gone: refused
  before any work (BAD: every image failed at write time);
- a catalog tampered to ``rocks: [1, 2]`` (BAD: TypeError), a JSON list or string (OK, now
  counted), rocks missing keys, ``x_min: "big"``, a NaN score, a wrong rock_count,
  ``complete: "yes"``, another catalog_version (BAD: kept, copied into rocks.csv): each redone
  and counted in summary.json's ``redone_unusable_catalog``;
- ``--format csv,json,coco``: a rerun skips finished images (BAD: it redid every image);
- a killed run's temporary files: removed by the next run, finished catalogs kept (BAD: left
  behind for ever; the resume itself was OK).
Outputs never overwrite inputs, impossible outputs refused before work:
- --out a folder never used by rockdet holding the user's own ``sfd.png`` image, or own
  ``rocks.csv``: refused, nothing touched (BAD: overwritten);
- an ``overlays`` folder symlinked out of --out, ``catalogs`` a file, ``summary.json`` a folder:
  refused before any work (BAD: every image failed; a traceback after the whole batch);
- --out a symlink to an input image: "--out is a file" (OK, clearer line);
- ``--out ""``: a usage error (BAD: the working directory);
- ``summary.json`` a symlink to a precious file: the link is replaced, the file kept (OK).
Inputs:
- a file named ``[x].png`` (BAD: not found) or ``what?.png`` beside ``whatX.png`` (BAD: both
  catalogued): a path that exists is itself, not a pattern;
- a pattern matching no file among other inputs: named like a missing input (BAD: silently
  nothing);
- 200 patterns of one file: one catalog (OK);
- a list file with a comment, blank lines, CRLF, spaces, a folder (BAD: "image file not found")
  and a missing file (OK: recorded as failed); an empty list (OK: "no images found"); a binary
  list (BAD: UnicodeDecodeError);
- names with a newline, ``#``, ``?``, ``&amp;`` and non-ASCII: catalogued, rocks.csv reads back (OK);
- a zero-byte image (OK: recorded as failed), a folder named ``x.png`` (OK: skipped), a FIFO in a
  folder (OK: skipped, no hang) and given by name (BAD: "input not found"; now "not a regular file");
- an earlier run's output folder inside the input folder: its overlays, thumbnails and plots are
  not images of the batch, by folder or by ``**`` pattern (BAD: 5 images for 1);
- the user's own ``thumbnails/b.jpg`` in an input folder used as --out: read (BAD: left out).
Annotation files (tests/test_hostile_readers.py):
- a COCO ``file_name`` of ``/etc/passwd``, ``../x.png``, an absolute path or ``a/../../x.png``
  leaving the image folder: refused naming the file and ``images[i]`` (BAD: read);
- absolute Linux or Windows file names of the labeller's machine: found by base name inside (OK);
- images beside the annotation folder: read with ``images:`` or ``allow_paths_outside: true``;
- a symlink inside the image folder to a store elsewhere: followed, the user's set-up (OK);
- a YOLO split entry ``/etc``, list lines outside the data YAML's ``path:`` root (absolute or
  ``..``): refused naming the list file and line (BAD: read); ``path: /abs`` with absolute
  entries under it (OK); Roboflow's ``../valid/images`` (BAD: "does not exist"), opt-in (new);
- YOLO class ``nan`` (BAD: ValueError), ``0.5`` (BAD: read as class 0), 4 values (OK), class 7 of
  1 (OK), NaN coordinates (OK: dropped and counted), quoted ids ``'0'`` (OK);
- an empty data YAML (OK), ``names: {a: rock}`` (BAD: ValueError), ``val:`` empty (BAD:
  TypeError), ``val: [images, 3]`` (BAD), ``path: [a, b]`` (BAD), a binary label file or data YAML
  (BAD: UnicodeDecodeError): one line each;
- a mask folder that is the image folder (BAD: each image read as its own mask), a mask folder
  inside the image folder (BAD: masks taken as images), a folder named ``x.png`` (OK: skipped).
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

from rockdet.cli.main import main
from rockdet.data.formats import load_split
from rockdet.errors import DataError
from rockdet.io.images import read_image
from rockdet.training.config import SplitConfig

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
    assert [p for p in own_files(folder) if p.endswith((".png", ".svg"))] == ["a.png", "overlays/a.png.png",
                                                                              "report_sizes.svg", "sfd.png"]


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
    assert "loop.png: symlink loop" in error and "(give image files, folders, globs or a .txt list)" in error


def test_a_string_bbox_is_one_line_naming_the_file(tmp_path):
    save(draw_rocks(40, 40, ROCK), tmp_path / "a.png")
    path = write_coco(tmp_path / "ann.json", [{"id": 1, "file_name": "a.png", "width": 40, "height": 40}],
                      [{"id": 9, "image_id": 1, "category_id": 1, "bbox": "10,10,5,5"}])
    with pytest.raises(DataError, match=r"ann.json: annotation 9 has a malformed bbox '10,10,5,5'"):
        load_split(SplitConfig(annotations=path), ["rock"])


def test_non_finite_numbers_in_config_and_camera_files_are_refused(tmp_path):
    from rockdet.errors import ConfigError
    from rockdet.geometry.cameras import load_camera
    from rockdet.training.config import load_config

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


# --- issue 19: resume keyed on every file of a product, tampered catalogs, outputs vs inputs ---


def write_detached_pds3(folder, stem, values, groups=""):
    """A PDS3 product whose label (.LBL) is a file of its own beside the pixels (.IMG)."""
    height, width = values.shape
    data = folder / f"{stem}.IMG"
    folder.mkdir(parents=True, exist_ok=True)
    data.write_bytes(np.ascontiguousarray(values.astype(">u2")).tobytes())
    (folder / f"{stem}.LBL").write_text("\r\n".join([
        "PDS_VERSION_ID = PDS3", "RECORD_TYPE = FIXED_LENGTH", f"RECORD_BYTES = {2 * width}",
        f"FILE_RECORDS = {height}", f'^IMAGE = ("{data.name}", 1)', groups,
        "OBJECT = IMAGE", "  INTERCHANGE_FORMAT = BINARY", f"  LINES = {height}", f"  LINE_SAMPLES = {width}",
        "  SAMPLE_TYPE = MSB_UNSIGNED_INTEGER", "  SAMPLE_BITS = 16", "  BANDS = 1", "END_OBJECT = IMAGE", "END", ""]))
    return data


def navcam_frame(rocks):
    """12-bit values the oracle sees rocks in after the stretch: a black strip of no features sets
    the low percentile, so rocks (700) come out dark but not featureless."""
    from pds_products import terrain_values

    values = terrain_values(64, 64, rocks, rock=700)
    values[0] = 300
    return values


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_resume_redoes_a_detached_label_product_when_only_its_label_or_only_its_pixels_change(tmp_path, oracle):
    pytest.importorskip("pdr")
    from pds_products import camera_group, navcam_for

    c, a, h, v = navcam_for(64)
    folder, out = tmp_path / "sol609", tmp_path / "out"
    write_detached_pds3(folder, "NLB", navcam_frame([(20, 40, 30, 50)]), camera_group("CAHV", [c, a, h, v]))
    assert predict(out, folder) == 0 and summary_of(out)["done"] == 1
    assert predict(out, folder) == 0 and summary_of(out)["skipped"] == 1  # nothing changed: kept
    label = folder / "NLB.LBL"
    higher = (c[0], c[1], c[2] - 1.0)  # the camera 1 m higher (z is down): same pixels, other sizes
    label.write_text(label.read_text().replace(camera_group("CAHV", [c, a, h, v]), camera_group("CAHV", [higher, a, h, v])))
    assert predict(out, folder) == 0
    assert (summary_of(out)["done"], summary_of(out)["skipped"], summary_of(out)["redone_made_otherwise"]) == (1, 0, 1)
    catalog = json.loads((out / "catalogs" / "NLB.IMG.json").read_text())
    assert catalog["product_files"][str(label.resolve())] == file_sha(label)
    write_detached_pds3(folder, "NLB", navcam_frame([(20, 40, 30, 50), (40, 20, 50, 30)]),
                        camera_group("CAHV", [higher, a, h, v]))  # only the pixel file differs
    assert (folder / "NLB.LBL").read_text() == label.read_text()
    assert predict(out, folder) == 0
    assert (summary_of(out)["done"], summary_of(out)["rocks_total"]) == (1, 2)


def file_sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_resume_redoes_images_when_the_camera_yaml_or_only_its_exclusion_mask_changes(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    mask = tmp_path / "cam" / "hardware.png"
    save(np.zeros((40, 40), np.uint8), mask)
    camera = tmp_path / "cam" / "nadir.yaml"
    camera.write_text("model: nadir\nimage_width: 40\nimage_height: 40\ngsd_m: 0.05\nexclusion_mask: hardware.png\n")
    out, args = tmp_path / "out", ["--camera", str(camera)]
    assert predict(out, tmp_path / "in", extra=args) == 0 and summary_of(out)["done"] == 1
    area = json.loads((out / "catalogs" / "a.png.json").read_text())["ground_area_m2"]
    hidden = np.zeros((40, 40), np.uint8)
    hidden[20:] = 255  # the rover's deck now hides the lower half
    save(hidden, mask)
    assert predict(out, tmp_path / "in", extra=args) == 0 and summary_of(out)["done"] == 1
    assert json.loads((out / "catalogs" / "a.png.json").read_text())["ground_area_m2"] == pytest.approx(area / 2)
    assert predict(out, tmp_path / "in", extra=args) == 0 and summary_of(out)["skipped"] == 1
    mask.unlink()  # a camera whose mask is gone is refused before any work, not image by image
    assert predict(out, tmp_path / "in", extra=args) == 2
    assert "nadir.yaml: exclusion_mask" in capsys.readouterr().err and summary_of(out)["skipped"] == 1


@pytest.mark.parametrize("tamper", [
    lambda doc: {**doc, "rocks": [1, 2], "rock_count": 2},
    lambda doc: [doc],
    lambda doc: "a string",
    lambda doc: {**doc, "rocks": [{"rock_id": 1}]},
    lambda doc: {**doc, "rocks": [{**doc["rocks"][0], "x_min": "big"}]},
    lambda doc: {**doc, "rocks": [{**doc["rocks"][0], "score": float("nan")}]},
    lambda doc: {**doc, "rock_count": 5},
    lambda doc: {**doc, "complete": "yes"},
    lambda doc: {**doc, "catalog_version": 99},
], ids=["rocks-ints", "a-list", "a-string", "missing-keys", "text-number", "nan", "count", "complete-yes", "version"])
def test_a_tampered_catalog_is_redone_and_counted_never_a_traceback(tmp_path, oracle, tamper):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    assert predict(out, tmp_path / "in", extra=["--format", "csv,json,coco"]) == 0
    catalog = out / "catalogs" / "a.png.json"
    catalog.write_text(json.dumps(tamper(json.loads(catalog.read_text()))))
    assert predict(out, tmp_path / "in", extra=["--format", "csv,json,coco"]) == 0
    summary = summary_of(out)
    assert (summary["done"], summary["skipped"], summary["redone_unusable_catalog"]) == (1, 1, 1)
    assert summary["rocks_total"] == 2 and json.loads(catalog.read_text())["rocks"][0]["rock_id"] == 1


def test_inputs_named_like_batch_files_in_an_out_folder_never_used_are_refused_not_overwritten(tmp_path, oracle,
                                                                                                capsys):
    folder = tmp_path / "survey"
    save(draw_rocks(40, 40, ROCK), folder / "a.png")
    save(draw_rocks(40, 40, ROCK), folder / "sfd.png")  # the user's own frame, not rockdet's plot
    before = (folder / "sfd.png").read_bytes()
    assert predict(folder, folder, extra=["--camera", str(_nadir(tmp_path))]) == 2
    assert "survey: --out holds sfd.png, which no rockdet run wrote" in capsys.readouterr().err
    assert (folder / "sfd.png").read_bytes() == before and not (folder / "catalogs").exists()
    counts = tmp_path / "counts"
    save(draw_rocks(40, 40, ROCK), counts / "a.png")
    (counts / "rocks.csv").write_text("my hand counts\n")  # not an input, but the user's
    assert predict(counts, counts) == 2 and (counts / "rocks.csv").read_text() == "my hand counts\n"


def test_outputs_that_would_land_on_or_through_inputs_are_refused_before_any_work(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "overlays").symlink_to(tmp_path / "in")  # overlays "beside the images"
    assert predict(out, tmp_path / "in", extra=["--overlay"]) == 2
    assert "resolves outside --out" in capsys.readouterr().err and oracle.calls == []
    (out / "overlays").unlink()
    (out / "catalogs").write_text("a file where the catalogs go")
    assert predict(out, tmp_path / "in") == 2
    assert "out/catalogs: not a folder" in capsys.readouterr().err and oracle.calls == []
    (out / "catalogs").unlink()
    (out / "summary.json").mkdir()  # before: a traceback after the whole batch
    assert predict(out, tmp_path / "in") == 2
    assert "summary.json: a folder where predict writes the batch summary" in capsys.readouterr().err
    assert oracle.calls == []
    link = tmp_path / "out_link"
    link.symlink_to(tmp_path / "in" / "a.png")
    assert predict(link, tmp_path / "in") == 2
    assert "a.png: --out is a file, not a folder" in capsys.readouterr().err


def test_an_empty_out_is_a_usage_error_not_the_working_directory(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["predict", "--checkpoint", "m.ckpt", "--out", "", "x.png"])
    assert stopped.value.code == 2 and "--out: give a folder" in capsys.readouterr().err


def test_a_summary_symlinked_to_a_precious_file_replaces_the_link_not_the_file(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert predict(out, tmp_path / "in") == 0
    precious = tmp_path / "precious.json"
    precious.write_text("{}")
    (out / "summary.json").unlink()
    (out / "summary.json").symlink_to(precious)
    assert predict(out, tmp_path / "in") == 0
    assert precious.read_text() == "{}" and not (out / "summary.json").is_symlink()


def test_file_names_with_glob_characters_are_themselves(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "[x].png")
    save(draw_rocks(40, 40, ROCK), tmp_path / "what?.png")
    save(draw_rocks(40, 40, ROCK), tmp_path / "whatX.png")  # also matched by 'what?.png' as a pattern
    out = tmp_path / "out"
    assert predict(out, tmp_path / "[x].png", tmp_path / "what?.png") == 0
    assert sorted(p.name for p in (out / "catalogs").glob("*.json")) == ["[x].png.json", "what?.png.json"]


def test_a_pattern_matching_no_file_is_named_like_a_missing_input(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    assert predict(tmp_path / "out", tmp_path / "in", f"{tmp_path}/in/*.PNG") == 2
    error = capsys.readouterr().err
    assert "*.PNG: the pattern matches no file" in error and "(give image files, folders, globs or a .txt list)" in error


def test_two_hundred_patterns_of_one_file_give_one_catalog(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    assert predict(tmp_path / "out", *[f"{tmp_path}/in/{'*' * (1 + n % 3)}.png" for n in range(200)]) == 0
    assert summary_of(tmp_path / "out")["images"] == 1


def test_list_files_with_odd_entries(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "sol1" / "a.png")
    save(draw_rocks(40, 40, ROCK), tmp_path / "sol2" / "b.png")
    listing = tmp_path / "frames.txt"
    listing.write_bytes(b"# frames of the traverse\r\n\r\n  sol1/a.png  \r\nsol2\r\nsol3/gone.png\r\n")
    out = tmp_path / "out"
    assert predict(out, listing) == 0  # a listed folder stands for its images; a gone file is recorded
    summary = summary_of(out)
    assert (summary["done"], summary["failed"]) == (2, 1) and summary["failures"][0]["image"] == "gone.png"
    listing.write_text("")
    assert predict(out, listing) == 2 and "no images found" in capsys.readouterr().err
    listing.write_bytes(b"\xff\xfe\x00binary")
    assert predict(out, listing) == 2
    assert "frames.txt: not a list of paths (not UTF-8" in capsys.readouterr().err


def test_odd_file_names_get_catalogs_that_read_back(tmp_path, oracle):
    names = ["line\nbreak.png", "frame#12.png", "what?.png", "Mörtel — 火星.png", "x&amp;y.png"]
    for name in names:
        save(draw_rocks(40, 40, ROCK), tmp_path / "in" / name)
    out = tmp_path / "out"
    assert predict(out, tmp_path / "in") == 0
    assert summary_of(out)["done"] == len(names)
    from rockdet.catalog.files import read_catalog_csv

    assert sorted(row["image"] for row in read_catalog_csv(out / "rocks.csv")) == sorted(names)


def test_zero_byte_images_folders_named_like_images_and_fifos(tmp_path, oracle, capsys):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    (tmp_path / "in" / "folder.png").mkdir()
    os.mkfifo(tmp_path / "in" / "pipe.png")  # reading it would wait forever
    out = tmp_path / "out"
    assert predict(out, tmp_path / "in") == 0
    summary = summary_of(out)
    assert (summary["images"], summary["done"], summary["failed"]) == (2, 1, 1)
    assert summary["failures"][0]["image"] == "empty.png"
    assert predict(out, tmp_path / "in" / "pipe.png") == 2
    assert "pipe.png: not a regular file" in capsys.readouterr().err


def test_an_earlier_output_folder_inside_the_inputs_is_not_taken_as_images(tmp_path, oracle):
    data = tmp_path / "data"
    save(draw_rocks(40, 40, ROCK), data / "a.png")
    assert predict(data / "run1", data, extra=["--overlay", "--camera", str(_nadir(tmp_path))]) == 0
    assert (data / "run1" / "overlays" / "a.png.png").is_file() and (data / "run1" / "sfd.png").is_file()
    assert predict(tmp_path / "run2", data) == 0
    assert summary_of(tmp_path / "run2")["images"] == 1  # not its overlays, thumbnails or plots
    assert predict(tmp_path / "run3", f"{data}/**/*.png") == 0
    assert summary_of(tmp_path / "run3")["images"] == 1


def test_a_users_own_thumbnails_folder_in_an_input_folder_used_as_out_is_read(tmp_path, oracle):
    folder = tmp_path / "survey"
    save(draw_rocks(40, 40, ROCK), folder / "a.png")
    save(draw_rocks(40, 40, ROCK), folder / "thumbnails" / "b.jpg")  # the user's, not rockdet's
    for _ in range(2):
        assert predict(folder, folder) == 0
        assert summary_of(folder)["images"] == 2
    assert (folder / "thumbnails" / "b.jpg").is_file() and (folder / "thumbnails" / "a.png.jpg").is_file()


def test_a_killed_runs_temporary_files_are_removed_and_its_finished_catalogs_kept(tmp_path, oracle):
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "a.png")
    save(draw_rocks(40, 40, ROCK), tmp_path / "in" / "b.png")
    out = tmp_path / "out"
    assert predict(out, tmp_path / "in") == 0
    (out / "catalogs" / "b.png.json").unlink()  # killed while writing b: its JSON never renamed
    leftovers = [out / "catalogs" / ".b.png.json.k3x9_q2a.tmp", out / ".summary.json.abcdefgh.tmp"]
    for path in leftovers:
        path.write_text('{"half": ')
    assert predict(out, tmp_path / "in") == 0
    assert (summary_of(out)["done"], summary_of(out)["skipped"]) == (1, 1)
    assert not any(path.exists() for path in leftovers)
