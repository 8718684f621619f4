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
"""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from conftest import write_coco
from oracle import draw_rocks, save

from rockdet.cli import main


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
    one_line_error(capsys, "cannot write to --out")
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
    (["--score-threshold", "2"], "--score-threshold 2.0: give a score in [0, 1]"),
    (["--batch-size", "0"], ""),
    (["--proposals", "0"], ""),
    (["--ground-z", "1", "--camera", "none"], "--ground-z applies to label camera models"),
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
    assert main(["predict", "--checkpoint", str(tmp_path / "junk.onnx"), "--out", str(tmp_path / "o"), str(image)]) == 2
    one_line_error(capsys, "not a readable ONNX model")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "plain.onnx"))
    assert main(["predict", "--checkpoint", str(tmp_path / "plain.onnx"), "--out", str(tmp_path / "o"), str(image)]) == 2
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
