"""Hostile and careless input to every command gets one clear line (exit 2) or a correct result.
Cases tried (each a test below; the first nine are issue 11's findings):

- predict --out naming an existing regular file;
- predict --device cuda (and cuda:1) on a machine without a GPU;
- train with optimizer.lr=-1, weight_decay=-0.1, data.batch_size=0, eval.score_threshold=1.5;
- a config YAML that is not UTF-8;
- predict --score-threshold 2, --batch-size 0;
- the same image twice on the command line (and as ./a.png): one catalog, said in the log;
- a COCO file listing the same image twice: a data-report problem, refused by training naming it;
- an annotation whose category_id is not among the categories: a problem line naming the id;
- train with a config key of the wrong type ("5" for an integer), an unknown trainer key;
- export with an unknown --format, of a missing checkpoint, of a file that is not a checkpoint;
- predict with an .onnx file that is not ONNX, and with one that carries no rockdet metadata;
- predict --proposals 0, --proposals with an exported model, --ground-z with --camera none;
- predict --camera naming a missing YAML;
- sfd of a folder without catalogs;
- data-report of a COCO file that is a JSON list;
- pseudo-label --min-score 2.

Issue 19's findings on export, runtimes, sfd, report, pseudo-label and config (each BAD before):
- export --out naming its own checkpoint (also through a symlink): refused, the checkpoint kept;
- export to a name whose suffix is not the format's (ONNX to model.ckpt, to "model", TorchScript
  to .onnx): refused, with the name predict can run (the suffix picks the runtime);
- export under a regular file, onto a folder, into a read-only folder: refused before the export;
- predict with a foreign .onnx carrying rockdet's full metadata (KeyError 'scores'), partial
  metadata (KeyError 'input_size'), metadata with input_size "big"; metadata that is a list (OK);
- predict --runtime openvino with a .torchscript file (ran TorchScript silently);
- sfd: six diameters near 1e300 among 200 (k at the search bound, zero-width interval): left out
  and counted, above MAX_DIAMETER_M = 100 m; diameters 1e150-1e290 (matplotlib OverflowError);
  sfd_statistics given such sizes, NaN, or an area of 1e300 or inf: one line;
- sfd: catalog areas 10 and -9.5 m² (summed to 0.5): the negative one left out, named; areas
  1e308 + 1e308 (N = nan D^-nan, status ok): refused; a fit at a search bound: status at_bound;
- sfd --out under a file or read-only: refused before reading;
- train: model.options.box_score_thresh=.inf (saved as null), a NaN in a list under
  model.options; trainer.max_epochs=abc (failed in configure_optimizers after the run folder was
  made), and the other Trainer keys of a wrong type or out of range: max_epochs=-5,
  max_steps=1.5, devices=abc, precision=17, accumulate_grad_batches=0, gradient_clip_val=.inf,
  accelerator=gpus, strategy=dpp, callbacks=[] (each refused at load, no run folder made);
- a chain of 1,200 extends: files (RecursionError): a depth limit of 16; circles named;
- report links for frame#12.png, what?.png, x&amp;y.png (and 100%.png, "sp ace.png"): every path
  segment percent-encoded, thumbnails and overlays too;
- report with a truncated catalog (its image dropped from the table), a catalog with
  rocks: [1, 2] or diameter_px "big": a row marked unreadable; summary.json that is [] or random
  bytes: one line; a failure without "image", tiling that is a list, images that is text:
  the page is written; report.html that is a folder: one line;
- pseudo-label with empty lists (StopIteration), no categories key, a missing --data file.

Own hostile pass (BAD: fixed here; OK: pinned):
- extends: pointing at a folder (OK-ish before: "not found"; now "is a folder"), at itself (OK);
- YAML alias bomb inside model.options (BAD: expanded when overrides were applied, 10^6 values
  took 13 s and 870 MB), an alias containing itself (BAD): one line each;
- a config that is a list (OK), a unicode key (OK, nearest key suggested), an override with "="
  in its value (OK: run.name=a=b), Trainer values of the right type still pass (OK);
- report of a symlinked report.html: the link is replaced, its target (summary.json) kept (OK);
- report of a folder without summary.json (OK), of one without catalogs (OK: empty table), of
  3,000 catalogs (OK: quick, the page stays small);
- pseudo-label --out naming the checkpoint (BAD: overwrote it with JSON), --out a folder (BAD:
  failed after the whole inference), an image without id (BAD: KeyError), string annotation ids
  (BAD: int('a1') ValueError);
- sfd of one catalog JSON with rocks: [1, 2] (BAD: TypeError), --area-m2 1e300 (BAD: fitted),
  a batch whose areas are all 0 (OK), --out beside the catalogs (OK), the input sfd.json as the
  --out's own file (refused), one rock or twenty equal rocks (OK: insufficient_data);
- a TorchScript file with rockdet metadata whose module returns no detections (BAD: failed
  deep in tiling): one line naming the file;
- evaluate with weights of another arch than its hparams say (OK: "weights do not fit");
- data-report of an empty folder, a YAML without names, binary bytes named .json, a missing file
  (OK: one line each).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from conftest import write_coco
from oracle import draw_rocks, save, use_model

from rockdet.cli.main import main


def one_line_error(capsys, pattern: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("rockdet: error:")]
    assert len(lines) == 1 and pattern in lines[0], err
    return lines[0]


@pytest.fixture
def image(tmp_path):
    save(draw_rocks(64, 48, [(10, 10, 20, 20)]), tmp_path / "a.png")
    return tmp_path / "a.png"


def predict(tmp_path, image, *extra):
    return main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path / "out"), str(image), *extra])


def test_out_naming_an_existing_file(tmp_path, image, oracle, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(tmp_path / "taken"), str(image)]) == 2
    one_line_error(capsys, "--out is a file, not a folder")
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu(tmp_path, image, oracle, capsys, device):
    assert predict(tmp_path, image, "--device", device) == 2
    one_line_error(capsys, "CUDA GPU(s) visible")


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=-1", "optimizer.lr: must be greater than 0"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay: must be at least 0"),
    ("data.batch_size=0", "data.batch_size: must be at least 1"),
    ("eval.score_threshold=1.5", "eval.score_threshold: must be at most 1"),
    ("seed='5'", "seed: expected an integer"),
    ("trainer.max_epoch=3", "unknown key 'trainer.max_epoch'"),
])
def test_train_config_values_out_of_range(tmp_path, capsys, override, message):
    config = tmp_path / "c.yaml"
    config.write_text("model: {arch: fasterrcnn_mobilenet_v3_large_fpn}\n")
    assert main(["train", "--config", str(config), override]) == 2
    one_line_error(capsys, message)


def test_config_not_utf8(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("run: {name: r\xe9gion}\n".encode("latin-1"))
    assert main(["train", "--config", str(config)]) == 2
    one_line_error(capsys, "latin1.yaml: not UTF-8 text")


@pytest.mark.parametrize("option, message", [
    (["--score-threshold", "2"], "--score-threshold: must be at most 1.0, got 2.0"),
    (["--batch-size", "0"], ""),
    (["--proposals", "0"], ""),
    (["--ground-z", "1", "--camera", "none"], "--ground-z: applies to label camera models"),
    (["--camera", "missing.yaml"], "missing.yaml: camera file not found"),
])
def test_predict_option_values(tmp_path, image, oracle, capsys, option, message):
    with pytest.raises(SystemExit) if not message else nullcontext():  # argparse rejects the first ones
        assert predict(tmp_path, image, *option) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_same_image_twice_is_catalogued_once(tmp_path, image, oracle, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", "out", str(image), "./a.png", "a.png"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == 1 and sorted(p.name for p in (tmp_path / "out" / "catalogs").iterdir()) == \
        ["a.png.csv", "a.png.json"]
    assert "2 input(s) named a file already among the inputs" in capsys.readouterr().err


def coco_with_problems(tmp_path, image):
    entry = {"file_name": image.name, "width": 64, "height": 48}
    return write_coco(tmp_path / "c.json", [{"id": 1, **entry}, {"id": 2, **entry}],
                      [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10]},
                       {"id": 2, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]}],
                      [{"id": 1, "name": "rock"}])


def test_coco_problems_are_reported_and_duplicates_refused_for_training(tmp_path, image, capsys):
    coco = coco_with_problems(tmp_path, image)
    assert main(["data-report", str(coco)]) == 0
    out = capsys.readouterr().out
    assert "category_id 9 (1 annotation) is not among the categories [1]" in out
    assert "image a.png is listed 2 times" in out
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{train: {{annotations: {coco}}}, val: {{annotations: {coco}}}}}\n"
                      f"run: {{dir: {tmp_path / 'run'}}}\n")
    assert main(["train", "--config", str(config)]) == 2
    one_line_error(capsys, "image a.png is listed more than once")


def test_export_refusals(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", "m.ckpt", "--format", "tflite", "--out", str(tmp_path / "m")])
    assert main(["export", "--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    one_line_error(capsys, "checkpoint file not found")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert main(["export", "--checkpoint", str(tmp_path / "junk.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2
    one_line_error(capsys, "not a readable PyTorch checkpoint")
    assert not (tmp_path / "m.onnx").exists()


def test_predict_with_a_bad_onnx_file(tmp_path, image, capsys):
    pytest.importorskip("onnxruntime")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert main(["predict", "--checkpoint", str(tmp_path / "junk.onnx"), "--runtime", "onnxruntime",
                 "--out", str(tmp_path / "o"), str(image)]) == 2
    one_line_error(capsys, "not a readable ONNX model")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    assert main(["predict", "--checkpoint", str(tmp_path / "plain.onnx"), "--runtime", "onnxruntime",
                 "--out", str(tmp_path / "o"), str(image)]) == 2
    one_line_error(capsys, "carries no rockdet metadata")


def test_sfd_and_data_report_of_wrong_things(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["sfd", str(tmp_path / "empty"), "--out", str(tmp_path / "s")]) == 2
    assert "rockdet: error:" in capsys.readouterr().err
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    assert main(["data-report", str(tmp_path / "list.json")]) == 2
    one_line_error(capsys, "not a COCO file")


def test_pseudo_label_min_score_out_of_range(tmp_path, image, capsys):
    coco = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": image.name, "width": 64, "height": 48}], [])
    code = main(["pseudo-label", "--checkpoint", "m.ckpt", "--data", str(coco), "--out", str(tmp_path / "o.json"),
                 "--min-score", "2"])
    assert code == 2 and "min-score" in capsys.readouterr().err


# --- issue 19: export, runtimes, sfd, report, pseudo-label and config --------------------------

def export(tmp_path, out, *extra, checkpoint=None):
    """Export of a file that is not a checkpoint: every refusal below comes before it is read."""
    checkpoint = checkpoint or tmp_path / "best.ckpt"
    if not checkpoint.exists():
        checkpoint.write_bytes(b"checkpoint bytes")
    return main(["export", "--checkpoint", str(checkpoint), "--out", str(out), *extra])


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path, capsys):
    checkpoint = tmp_path / "best.ckpt"
    assert export(tmp_path, checkpoint) == 2
    one_line_error(capsys, "is the input")
    (tmp_path / "link.onnx").symlink_to(checkpoint)
    assert export(tmp_path, tmp_path / "link.onnx") == 2
    one_line_error(capsys, "is the input")
    assert checkpoint.read_bytes() == b"checkpoint bytes"


@pytest.mark.parametrize("name, export_format, message", [
    ("model.ckpt", "onnx", "try --out model.onnx"),
    ("model", "onnx", "try --out model.onnx"),
    ("model.onnx", "torchscript", "try --out model.torchscript"),
])
def test_export_suffix_must_be_the_formats(tmp_path, capsys, name, export_format, message):
    assert export(tmp_path, tmp_path / name, "--format", export_format) == 2
    one_line_error(capsys, message)


def test_export_to_impossible_places_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert export(tmp_path, tmp_path / "file" / "m.onnx") == 2
    one_line_error(capsys, "is a file, so nothing can be written under it")
    (tmp_path / "folder.onnx").mkdir()
    assert export(tmp_path, tmp_path / "folder.onnx") == 2
    one_line_error(capsys, "is a folder; give a file name")
    read_only(monkeypatch)
    assert export(tmp_path, tmp_path / "ro" / "m.onnx") == 2
    one_line_error(capsys, "cannot write in")


def read_only(monkeypatch):
    """Every folder as if read-only (the tests run as root, for whom permission bits do not count)."""
    from rockdet.io import output_guard
    class ReadOnly:
        @staticmethod
        def mkstemp(**_):
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(output_guard, "tempfile", ReadOnly)


def metadata_onnx(path, metadata, outputs=("y",)):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], [name]) for name in outputs], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in outputs])
    model = helper.make_model(graph)
    entry = model.metadata_props.add()
    entry.key, entry.value = "rockdet", json.dumps(metadata)
    onnx.save(model, str(path))
    return path


FULL_METADATA = {"format": "onnx", "arch": "fasterrcnn_mobilenet_v3_large_fpn", "input_size": 64,
                 "model": {"arch": "fasterrcnn_mobilenet_v3_large_fpn"}, "class_names": ["rock"],
                 "evaluation": {"score_threshold": 0.5}}


@pytest.mark.parametrize("metadata, outputs, message", [
    (FULL_METADATA, ("y",), "not a rockdet detector graph"),  # copied metadata: KeyError 'scores' before
    ({"model": {"arch": "fasterrcnn_mobilenet_v3_large_fpn"}}, ("boxes", "scores", "labels"),
     "metadata lacks ['input_size', 'class_names', 'score_threshold']"),  # partial: KeyError 'input_size'
    ({**FULL_METADATA, "input_size": "big"}, ("boxes", "scores", "labels"), "input_size 'big' is not a positive integer"),
    ([1, 2], ("boxes",), "carries no rockdet metadata"),
])
def test_predict_with_a_foreign_onnx_carrying_rockdet_metadata(tmp_path, image, capsys, metadata, outputs, message):
    pytest.importorskip("onnxruntime")
    model = metadata_onnx(tmp_path / "foreign.onnx", metadata, outputs)
    assert main(["predict", "--checkpoint", str(model), "--runtime", "onnxruntime", "--out", str(tmp_path / "o"),
                 str(image)]) == 2
    line = one_line_error(capsys, message)
    assert "foreign.onnx" in line


def test_openvino_refuses_a_torchscript_file(tmp_path, image, capsys):
    (tmp_path / "m.torchscript").write_bytes(b"scripted")
    assert main(["predict", "--checkpoint", str(tmp_path / "m.torchscript"), "--runtime", "openvino",
                 "--out", str(tmp_path / "o"), str(image)]) == 2
    one_line_error(capsys, "--runtime: openvino runs exported .onnx files")


def catalog(folder, name, rocks, area, complete=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"complete": complete, "ground_area_m2": area, "rocks": rocks}))


def golombek_rapp_rocks(count=200, k=0.08, area=400.0):
    import numpy as np

    from rockdet.stats.sfd import sample_golombek_rapp

    diameters = sample_golombek_rapp(np.random.default_rng(5), k, area, d_min=0.1, d_max=2.0)
    return [{"diameter_m": float(d)} for d in diameters[:count]]


def sfd(folder, out, *extra):
    return main(["sfd", str(folder), "--out", str(out), "--bootstrap", "20", *extra])


def test_sfd_leaves_out_absurd_diameters_instead_of_fitting_them(tmp_path, capsys):
    rocks = golombek_rapp_rocks() + [{"diameter_m": 1e300 * (1 + i / 10)} for i in range(6)]
    catalog(tmp_path / "run" / "catalogs", "a.png.json", rocks, 400.0)
    assert sfd(tmp_path / "run", tmp_path / "s") == 0
    assert "left out 6 diameters above 100 m" in capsys.readouterr().out
    result = json.loads((tmp_path / "s" / "sfd.json").read_text())
    assert result["status"] == "ok" and result["k"] < 0.5 and result["k_ci95"][1] > result["k_ci95"][0]
    assert result["left_out"]["diameters_above_100_m"] == 6


def test_sfd_of_huge_diameters_draws_no_overflow(tmp_path, capsys):
    from rockdet.catalog.files import write_rows_csv

    rows = [{"rock_id": i, "diameter_m": 10.0 ** (150 + 20 * i)} for i in range(8)]
    write_rows_csv(tmp_path / "rocks.csv", ["rock_id", "diameter_m"], rows)
    assert main(["sfd", str(tmp_path / "rocks.csv"), "--out", str(tmp_path / "s"), "--area-m2", "50"]) == 0
    captured = capsys.readouterr()
    assert "left out 8 diameters above 100 m" in captured.out and "Traceback" not in captured.err
    assert (tmp_path / "s" / "sfd.png").is_file()


def test_sfd_statistics_refuses_sizes_no_rock_has():
    from rockdet.errors import RockdetError
    from rockdet.stats.sfd import sfd_statistics

    for diameters, area in (([0.3, 1e200], 10.0), ([0.3, float("nan")], 10.0), ([0.3], 1e300), ([0.3], float("inf"))):
        with pytest.raises(RockdetError):
            sfd_statistics(diameters, area)


def test_sfd_refuses_negative_and_overflowing_areas(tmp_path, capsys):
    catalogs = tmp_path / "run" / "catalogs"
    catalog(catalogs, "a.png.json", golombek_rapp_rocks(), 10.0)
    catalog(catalogs, "b.png.json", [{"diameter_m": 0.5}], -9.5)
    assert sfd(tmp_path / "run", tmp_path / "s") == 0
    out = capsys.readouterr().out
    assert "b.png.json: ground_area_m2 -9.5 is not a finite area >= 0" in out
    assert json.loads((tmp_path / "s" / "sfd.json").read_text())["area_m2"] == 10.0  # not 0.5
    catalog(catalogs, "a.png.json", golombek_rapp_rocks(), 1e308)
    catalog(catalogs, "b.png.json", golombek_rapp_rocks(), 1e308)
    assert sfd(tmp_path / "run", tmp_path / "s") == 2
    one_line_error(capsys, "ground areas sum to inf")


def test_a_fit_at_the_search_bound_is_not_ok(tmp_path, capsys):
    from rockdet.stats.sfd import sfd_statistics

    crowded = [1.0 + 0.05 * i for i in range(40)]  # 40 boulders of 1-3 m on 10 m²: F > 1
    result = sfd_statistics(crowded, 10.0, min_diameter_m=1.0, bootstrap=10)
    assert result.status == "at_bound" and "search bound k = 0.99" in result.message
    catalog(tmp_path / "run" / "catalogs", "a.png.json", [{"diameter_m": d} for d in crowded], 10.0)
    assert sfd(tmp_path / "run", tmp_path / "s", "--min-diameter-m", "1") == 0
    assert "no fit (at_bound)" in capsys.readouterr().out


def test_sfd_out_under_a_file_or_read_only(tmp_path, capsys, monkeypatch):
    catalog(tmp_path / "run" / "catalogs", "a.png.json", golombek_rapp_rocks(), 400.0)
    (tmp_path / "file").write_text("x")
    assert sfd(tmp_path / "run", tmp_path / "file" / "s") == 2
    one_line_error(capsys, "is a file, so nothing can be written under it")
    read_only(monkeypatch)
    assert sfd(tmp_path / "run", tmp_path / "s") == 2
    one_line_error(capsys, "cannot write in")
    assert not (tmp_path / "s").exists()


def train_config(tmp_path, text="model: {arch: fasterrcnn_mobilenet_v3_large_fpn}\n"):
    config = tmp_path / "c.yaml"
    config.write_text(text + f"run: {{dir: {tmp_path / 'run'}}}\n")
    return config


@pytest.mark.parametrize("override, message", [
    ("model.options.box_score_thresh=.inf", "model.options.box_score_thresh: inf is not a finite number"),
    ("model.options.sizes=[1, .nan]", "model.options.sizes[1]: nan is not a finite number"),
    ("trainer.max_epochs=abc", "trainer.max_epochs: expected an integer, got 'abc'"),
    ("trainer.max_epochs=-5", "trainer.max_epochs: must be at least -1"),
    ("trainer.max_steps=1.5", "trainer.max_steps: expected an integer"),
    ("trainer.devices=abc", "trainer.devices: expected a count, a list of GPU ids"),
    ("trainer.precision=17", "trainer.precision: expected 64, 32 or 16"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches: must be at least 1"),
    ("trainer.gradient_clip_val=.inf", "trainer.gradient_clip_val: expected a finite number"),
    ("trainer.accelerator=gpus", "(did you mean 'gpu'?)"),
    ("trainer.strategy=dpp", "(did you mean 'ddp'?)"),
    ("trainer.callbacks=[]", "trainer.callbacks: is set by rockdet"),
])
def test_train_values_lightning_checks_late_are_refused_before_the_run_folder(tmp_path, capsys, override, message):
    assert main(["train", "--config", str(train_config(tmp_path)), override]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "run").exists()


def test_trainer_values_of_the_right_type_pass(tmp_path):
    from rockdet.training.config import load_config

    values = ["trainer.devices=[0,1]", "trainer.devices=0,1", "trainer.precision=16-mixed", "trainer.precision=16",
              "trainer.max_epochs=-1", "trainer.val_check_interval=0.5", "trainer.limit_train_batches=2",
              "trainer.deterministic=warn", "trainer.max_time=00:01:00:00", "trainer.strategy=ddp",
              "model.options.box_score_thresh=0.001", "run.name=a=b"]
    config = load_config(train_config(tmp_path), values)
    assert config.trainer["devices"] == "0,1" and config.trainer["precision"] == 16
    assert config.run.name == "a=b" and config.model.options == {"box_score_thresh": 0.001}


def test_a_long_or_circular_extends_chain_is_one_line(tmp_path, capsys):
    for i in range(1200):
        (tmp_path / f"c{i}.yaml").write_text(f"extends: c{i + 1}.yaml\n" if i < 1199 else "seed: 1\n")
    assert main(["train", "--config", str(tmp_path / "c0.yaml")]) == 2
    one_line_error(capsys, "a chain of more than 16 files")
    for name, base in (("x", "y"), ("y", "z"), ("z", "x"), ("self", "self")):
        (tmp_path / f"{name}.yaml").write_text(f"extends: {base}.yaml\n")
    assert main(["train", "--config", str(tmp_path / "x.yaml")]) == 2
    one_line_error(capsys, "a circle: x.yaml -> y.yaml -> z.yaml -> x.yaml")
    assert main(["train", "--config", str(tmp_path / "self.yaml")]) == 2
    one_line_error(capsys, "a circle: self.yaml -> self.yaml")
    (tmp_path / "folder").mkdir()
    (tmp_path / "d.yaml").write_text("extends: folder\n")
    assert main(["train", "--config", str(tmp_path / "d.yaml")]) == 2
    one_line_error(capsys, "folder is a folder, not a config file")


#: "Billion laughs": ten times the level before, nine levels deep, inside a free mapping (the
#: old loader expanded it when applying overrides: 10^6 values took 13 s and 870 MB).
ALIAS_BOMB = "model: {options: {a: &a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)) + "}}\n"


@pytest.mark.parametrize("text, message", [
    (ALIAS_BOMB, "expands to more than 100,000 values through YAML aliases"),
    ("model: {options: &x {y: *x}}\n", "a YAML alias refers to the value that contains it"),
    ("- model\n- seed\n", "expected a mapping at the top level, got list"),
    ("modèl: {}\n", "unknown key 'modèl' (did you mean 'model'?)"),
])
def test_hostile_config_files(tmp_path, capsys, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "seed=1"]) == 2
    one_line_error(capsys, message)


def report_folder(tmp_path, image, oracle, *names):
    from oracle import draw_rocks, save

    for name in names:
        save(draw_rocks(64, 48, [(10, 10, 20, 20)]), tmp_path / "in" / name)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", "m.ckpt", "--out", str(out), str(tmp_path / "in"), "--overlay"]) == 0
    return out


def report_rows(out):
    data = (out / "report_images.js").read_text()
    return json.loads(data[data.index("=") + 1:].strip().rstrip(";"))


def test_report_links_survive_legal_file_names(tmp_path, image, oracle):
    import html
    from urllib.parse import unquote, urljoin, urlparse

    names = ["frame#12.png", "what?.png", "x&amp;y.png", "100%.png", "sp ace.png"]
    out = report_folder(tmp_path, image, oracle, *names)
    rows = report_rows(out)
    assert sorted(r["image"] for r in rows) == sorted(names)
    page = out.resolve().as_uri() + "/report.html"
    for row in rows:
        for key in ("thumbnail", "overlay", "catalog"):
            # as a browser reads the link: HTML attribute text, then a URL relative to the page
            target = urlparse(urljoin(page, html.unescape(row[key])))
            assert not target.fragment and not target.query, row[key]
            assert Path(unquote(target.path)).is_file(), row[key]
    assert "encodeURI" not in (out / "report.html").read_text()


def test_report_shows_unreadable_catalogs_as_rows(tmp_path, image, oracle, capsys):
    out = report_folder(tmp_path, image, oracle, "a.png", "b.png", "c.png", "d.png")
    catalogs = out / "catalogs"
    text = (catalogs / "a.png.json").read_text()
    (catalogs / "a.png.json").write_text(text[: len(text) // 2])  # truncated
    (catalogs / "b.png.json").write_text(json.dumps({"complete": True, "rocks": [1, 2]}))
    (catalogs / "c.png.json").write_text(json.dumps({"complete": True, "rocks": [{"diameter_px": "big"}]}))
    assert main(["report", str(out)]) == 0
    rows = {row["image"]: row for row in report_rows(out)}
    assert sorted(rows) == ["a.png", "b.png", "c.png", "d.png"]
    assert "not readable JSON" in rows["a.png"]["unreadable"]
    assert "rocks[0] is '1', not a rock" in rows["b.png"]["unreadable"]
    assert "rocks[0].diameter_px is 'big'" in rows["c.png"]["unreadable"]
    assert "unreadable" not in rows["d.png"] and rows["d.png"]["rocks"] == 1


@pytest.mark.parametrize("summary, message", [
    (b"[]", "not a rockdet predict summary (expected an object, got list)"),
    (bytes(range(256)) * 4, "not readable JSON"),
])
def test_report_of_a_damaged_summary(tmp_path, image, oracle, capsys, summary, message):
    out = report_folder(tmp_path, image, oracle, "a.png")
    (out / "summary.json").write_bytes(summary)
    assert main(["report", str(out)]) == 2
    one_line_error(capsys, message)


def test_report_of_an_odd_summary_and_a_report_that_is_a_folder(tmp_path, image, oracle, capsys):
    out = report_folder(tmp_path, image, oracle, "a.png")
    (out / "summary.json").write_text(json.dumps({"failures": [{"reason": "no image key"}, "text", {"image": 5}],
                                                  "tiling": [1, 2], "images": "many"}))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "no image key" in page and "many" in page
    (out / "report.html").unlink()
    (out / "report.html").mkdir()
    assert main(["report", str(out)]) == 2
    one_line_error(capsys, "report.html exists and is not a regular file")


def test_report_through_a_symlinked_page_keeps_its_target(tmp_path, image, oracle):
    out = report_folder(tmp_path, image, oracle, "a.png")
    summary = (out / "summary.json").read_text()
    (out / "report.html").unlink()
    (out / "report.html").symlink_to(out / "summary.json")
    assert main(["report", str(out)]) == 0
    assert (out / "summary.json").read_text() == summary and not (out / "report.html").is_symlink()


def test_report_of_folders_without_a_batch(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    one_line_error(capsys, "no summary.json")
    (tmp_path / "empty" / "summary.json").write_text("{}")
    assert main(["report", str(tmp_path / "empty")]) == 0  # no catalogs folder: an empty table
    assert report_rows(tmp_path / "empty") == []


def test_report_of_many_catalogs_is_quick(tmp_path):
    import time

    out = tmp_path / "big"
    (out / "catalogs").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    rock = {"diameter_px": 12.5, "diameter_m": None}
    for i in range(3000):
        (out / "catalogs" / f"{i:05d}.png.json").write_text(json.dumps({"complete": True, "rocks": [rock] * 3}))
    started = time.monotonic()
    assert main(["report", str(out)]) == 0
    assert time.monotonic() - started < 20 and len(report_rows(out)) == 3000
    assert len((out / "report.html").read_text()) < 20_000  # the rows live in the data file


def pseudo_label(tmp_path, coco, *extra, out=None):
    return main(["pseudo-label", "--checkpoint", str(tmp_path / "m.ckpt"), "--data", str(coco),
                 "--out", str(out or tmp_path / "round1.json"), "--min-score", "0.5", *extra])


@pytest.fixture
def oracle_checkpoint(tmp_path, monkeypatch):
    """pseudo-label loads the fixed-output detector; m.ckpt exists so it can be named."""
    from oracle import DarkBlobDetector, oracle_info


    (tmp_path / "m.ckpt").write_bytes(b"checkpoint bytes")
    use_model(monkeypatch, DarkBlobDetector(), oracle_info())


@pytest.mark.parametrize("document, message", [
    ({"images": [], "annotations": [], "categories": []}, "no category named one of ['rock', 'boulder']"),
    ({"images": [], "annotations": [], "categories": [{"id": 1, "name": "rock"}]}, "lists no images"),
    ({"images": [], "annotations": []}, "has no 'categories' list"),
    ({"images": [{"file_name": "a.png", "width": 64, "height": 48}], "annotations": [],
      "categories": [{"id": 1, "name": "rock"}]}, "images[0] has no id"),
])
def test_pseudo_label_of_hostile_coco_files(tmp_path, image, oracle_checkpoint, capsys, document, message):
    (tmp_path / "c.json").write_text(json.dumps(document))
    assert pseudo_label(tmp_path, tmp_path / "c.json") == 2
    one_line_error(capsys, message)


def test_pseudo_label_refusals_before_the_model_runs(tmp_path, image, oracle_checkpoint, capsys):
    coco = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": image.name, "width": 64, "height": 48}], [])
    assert pseudo_label(tmp_path, tmp_path / "missing.json") == 2
    one_line_error(capsys, "--data")
    assert pseudo_label(tmp_path, coco, out=tmp_path / "m.ckpt") == 2
    one_line_error(capsys, "is the input")
    assert (tmp_path / "m.ckpt").read_bytes() == b"checkpoint bytes"
    (tmp_path / "folder.json").mkdir()
    assert pseudo_label(tmp_path, coco, out=tmp_path / "folder.json") == 2
    one_line_error(capsys, "is a folder")


def test_pseudo_label_with_string_annotation_ids(tmp_path, image, oracle_checkpoint):
    coco = write_coco(tmp_path / "c.json", [{"id": "img-1", "file_name": image.name, "width": 64, "height": 48}],
                      [{"id": "a1", "image_id": "img-1", "category_id": 1, "bbox": [40, 30, 5, 5]}])
    assert pseudo_label(tmp_path, coco) == 0
    added = [a for a in json.loads((tmp_path / "round1.json").read_text())["annotations"] if a.get("pseudo_label")]
    assert len(added) == 1 and added[0]["image_id"] == "img-1" and added[0]["id"] == 1


def test_sfd_of_odd_single_catalogs_and_areas(tmp_path, capsys):
    (tmp_path / "ints.json").write_text(json.dumps({"ground_area_m2": 10.0, "rocks": [1, 2]}))
    assert main(["sfd", str(tmp_path / "ints.json"), "--out", str(tmp_path / "s")]) == 2  # TypeError before
    one_line_error(capsys, "no diameter_m column")
    (tmp_path / "rocks.json").write_text(json.dumps({"ground_area_m2": 10.0, "rocks": [{"diameter_m": 0.2}]}))
    assert main(["sfd", str(tmp_path / "rocks.json"), "--out", str(tmp_path / "s"), "--area-m2", "1e300"]) == 2
    one_line_error(capsys, "larger than any planetary scene")
    catalog(tmp_path / "zero" / "catalogs", "a.png.json", [{"diameter_m": 0.3}], 0.0)
    assert sfd(tmp_path / "zero", tmp_path / "s") == 2
    one_line_error(capsys, "no catalog with a ground area")
    catalog(tmp_path / "run" / "catalogs", "a.png.json", golombek_rapp_rocks(), 400.0)
    assert sfd(tmp_path / "run", tmp_path / "run") == 0  # beside the catalogs, as predict writes it
    assert sfd(tmp_path / "run" / "sfd.json", tmp_path / "run") == 2
    one_line_error(capsys, "is the input")


def test_sfd_of_one_rock_or_equal_rocks_gives_no_fit(tmp_path, capsys):
    for name, rocks in (("one", [{"diameter_m": 0.4}]), ("equal", [{"diameter_m": 0.3}] * 20)):
        catalog(tmp_path / name / "catalogs", "a.png.json", rocks, 50.0)
        assert sfd(tmp_path / name, tmp_path / f"s_{name}") == 0
        assert "no fit (insufficient_data)" in capsys.readouterr().out


def test_a_torchscript_model_that_is_no_detector_is_one_line(tmp_path):
    from rockdet.errors import CheckpointError
    from rockdet.predict.runtimes import load_exported

    class NotADetector(torch.nn.Module):
        def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
            return images[0].sum()

    path = tmp_path / "foreign.torchscript"
    torch.jit.save(torch.jit.script(NotADetector()), str(path), _extra_files={"rockdet.json": json.dumps(FULL_METADATA)})
    detector = load_exported(path)
    with pytest.raises(CheckpointError, match="foreign.torchscript: returns Tensor, not a detector's boxes"):
        detector([torch.zeros(3, 8, 8)])


def test_evaluate_with_weights_of_another_arch(tmp_path, image, capsys):
    from rockdet.models import build_detector

    weights = build_detector("fasterrcnn_resnet18_fpn", min_size=64, max_size=64, fpn_channels=32).state_dict()
    hparams = {"model": {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 64, "max_size": 64},
               "input_size": 64, "evaluation": {"score_threshold": 0.5}}
    torch.save({"state_dict": {f"model.{k}": v for k, v in weights.items()}, "hyper_parameters": hparams},
               tmp_path / "other.ckpt")
    coco = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": image.name, "width": 64, "height": 48}], [])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "other.ckpt"), "--data", str(coco)]) == 2
    one_line_error(capsys, "weights do not fit fasterrcnn_mobilenet_v3_large_fpn")


@pytest.mark.parametrize("setup, message", [
    (lambda d: (d / "empty").mkdir() or d / "empty", "cannot tell the annotation format"),
    (lambda d: (d / "x.yaml").write_text("foo: 1\n") and d / "x.yaml", "not a YOLO data YAML (no 'names')"),
    (lambda d: (d / "x.json").write_bytes(b"\x00\x01garbage") and d / "x.json", "not valid JSON"),
    (lambda d: d / "missing.json", "annotation file not found"),
])
def test_data_report_of_wrong_things(tmp_path, capsys, setup, message):
    assert main(["data-report", str(setup(tmp_path))]) == 2
    one_line_error(capsys, message)
