"""`rockdet export` and predict through the exported file: metadata inside, parity with PyTorch,
the same catalogs, and one clear line when the optional runtime is missing."""

import json
import os
import sys

import numpy as np
import pytest
import torch

from rockdet import __version__
from rockdet.cli.main import main
from rockdet.deploy.export import BOX_TOLERANCE_PX, SCORE_TOLERANCE, check_parity, parity_image
from rockdet.models import build_detector
from rockdet.predict.detect import keeping_from
from rockdet.predict.runtimes import exported_format, load_exported

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'rockdet[onnx]') is not installed")


def write_checkpoint(path, arch="fasterrcnn_mobilenet_v3_large_fpn", side=128, **settings):
    torch.manual_seed(0)
    model = build_detector(arch, min_size=side, max_size=side, **settings)
    hparams = {"model": {"arch": arch, "min_size": side, "max_size": side, **settings}, "input_size": side,
               "evaluation": {"score_threshold": 0.3}, "rock_classes": ["rock", "boulder"]}
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": hparams}, path)
    return path, model.eval()


@pytest.mark.parametrize("arch, settings, export_format", [
    ("fasterrcnn_mobilenet_v3_large_fpn", {}, "onnx"),  # the default architecture
    ("fasterrcnn_resnet18_fpn", {"fpn_channels": 32}, "onnx"),  # the CPU recipe's
    ("maskrcnn_resnet18_fpn", {"fpn_channels": 32}, "onnx"),  # its Mask R-CNN twin
    ("fasterrcnn_mobilenet_v3_large_fpn", {}, "torchscript"),
])
def test_export_carries_metadata_and_matches_pytorch(tmp_path, capsys, arch, settings, export_format):
    checkpoint, model = write_checkpoint(tmp_path / "m.ckpt", arch, **settings)
    out = tmp_path / f"m.{export_format}"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", export_format, "--out", str(out)]) == 0
    assert "parity with PyTorch" in capsys.readouterr().out
    exported = load_exported(out)
    info = exported.info
    assert info.arch == arch and info.input_size == 128 and exported_format(out) == export_format
    assert info.score_threshold == 0.3 and info.class_names == ("rock", "boulder")
    assert info.rockdet_version == __version__
    if info.has_masks:  # a Mask R-CNN graph returns nothing below its operating point (see the floor's test)
        assert info.score_floor == 0.3
        model.roi_heads.score_thresh = keeping_from(0.3)
    else:
        assert info.score_floor == model.roi_heads.score_thresh
    parity = check_parity(model, exported, parity_image(128), threshold=0.0)
    assert parity.compared >= 10 and parity.passed, parity.describe()


def test_parity_check_catches_a_different_model(tmp_path):
    checkpoint, model = write_checkpoint(tmp_path / "m.ckpt")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    exported = load_exported(tmp_path / "m.onnx")
    with torch.no_grad():
        model.roi_heads.box_predictor.bbox_pred.bias += 0.5  # boxes move by a few pixels
    assert not check_parity(model, exported, parity_image(128), threshold=0.0).passed


def test_predict_through_onnx_writes_the_same_catalogs(tmp_path):
    from oracle import draw_rocks, save

    checkpoint, _ = write_checkpoint(tmp_path / "m.ckpt")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    for name, rocks in (("a.png", [(10, 10, 30, 30)]), ("b.png", [(40, 20, 70, 60), (100, 100, 120, 110)])):
        save(draw_rocks(160, 128, rocks), tmp_path / "in" / name)
    catalogs = {}
    for model_file in ("m.ckpt", "m.onnx"):
        out = tmp_path / f"out_{model_file}"
        assert main(["predict", "--checkpoint", str(tmp_path / model_file), "--out", str(out), str(tmp_path / "in"),
                     "--score-threshold", "0.05", "--device", "cpu", "--as-trained", "--runtime", "onnxruntime"]) == 0
        catalogs[model_file] = {name: json.loads((out / "catalogs" / f"{name}.json").read_text())
                                for name in ("a.png", "b.png")}
        header = (out / "catalogs" / "a.png.csv").read_text().splitlines()[0]
        catalogs[model_file]["header"] = header
    torch_run, onnx_run = catalogs["m.ckpt"], catalogs["m.onnx"]
    assert torch_run["header"] == onnx_run["header"]
    assert onnx_run["a.png"]["model_form"].startswith("ONNX Runtime")
    assert onnx_run["a.png"]["runtime"] == {"runtime": "onnxruntime", "chosen": "asked for (--runtime)"}
    assert torch_run["a.png"]["runtime"]["runtime"] == "pytorch"
    for name in ("a.png", "b.png"):
        expected, got = torch_run[name]["rocks"], onnx_run[name]["rocks"]
        assert len(expected) == len(got) > 0 and list(expected[0]) == list(got[0])
        for mine, theirs in zip(sorted(expected, key=lambda r: (r["x_min"], r["y_min"])),
                                sorted(got, key=lambda r: (r["x_min"], r["y_min"]))):
            box = np.array([mine[k] - theirs[k] for k in ("x_min", "y_min", "x_max", "y_max")])
            assert np.abs(box).max() <= BOX_TOLERANCE_PX and abs(mine["score"] - theirs["score"]) <= SCORE_TOLERANCE


#: OpenVINO runs in a child process: its native thread pools, torn down whenever Python collects
#: the compiled model, must not share the test process with the DDP and DataLoader tests' forks.
OPENVINO_PARITY = """
import json, sys
from pathlib import Path
import torch
from rockdet.deploy.export import check_parity, parity_image
from rockdet.models import load_model
from rockdet.predict.runtimes import exported_format, load_exported
folder = Path(sys.argv[1])
model, _ = load_model(folder / "m.ckpt")
openvino = load_exported(folder / "m.onnx", runtime="openvino")
parity = check_parity(model, openvino, parity_image(128), threshold=0.0)
# Tiles of one call run side by side in OpenVINO's request queue: the same detections as one by one.
tiles = [parity_image(128).roll(shift, dims=2) for shift in (0, 17, 40, 77)]
together, alone = openvino(tiles), [openvino([tile])[0] for tile in tiles]
same = all(set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(together, alone))
# Tiles at the model's input size ran on a graph fixed to it: the same rocks as the size-free graph.
size_free = load_exported(folder / "m.onnx", runtime="openvino", fixed_size=False)
fixed_parity = check_parity(size_free, openvino, parity_image(128), threshold=0.0)
# Other sizes run on the size-free graph, whatever came before.
odd = torch.rand(3, 96, 128)
odd_same = all(torch.equal(a, b) for a, b in zip(openvino([odd])[0].values(), size_free([odd])[0].values()))
print(json.dumps({"describe": openvino.describe(), "arch": openvino.info.arch, "requests": openvino.requests,
                  "queue_same": same, "detections": [len(d["boxes"]) for d in together],
                  "compared": parity.compared, "passed": parity.passed, "detail": parity.describe(),
                  "fixed_shape": list(openvino.fixed_shape), "fixed_built": openvino.compiled_for((3, 128, 128))
                  is not openvino.compiled, "odd_size_free": openvino.compiled_for((3, 96, 128)) is openvino.compiled,
                  "odd_same": odd_same, "fixed_compared": fixed_parity.compared, "fixed_passed": fixed_parity.passed,
                  "fixed_detail": fixed_parity.describe(), "size_free_shape": size_free.fixed_shape}))
"""


def test_openvino_runs_the_export_like_onnx_runtime(tmp_path, capsys):
    pytest.importorskip("openvino", reason="the openvino extra (pip install 'rockdet[openvino]') is not installed")
    import subprocess

    from oracle import draw_rocks, save

    checkpoint, _ = write_checkpoint(tmp_path / "m.ckpt")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    cache = tmp_path / "cache"
    environment = {**os.environ, "ROCKDET_CACHE_DIR": str(cache)}
    child = subprocess.run([sys.executable, "-c", OPENVINO_PARITY, str(tmp_path)], capture_output=True, text=True,
                           env=environment)
    assert child.returncode == 0, child.stderr
    cached = sorted((cache / "openvino").iterdir())
    assert cached, "OpenVINO kept no compiled model in the cache folder"
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["describe"].startswith("OpenVINO CPU, ") and result["arch"] == "fasterrcnn_mobilenet_v3_large_fpn"
    assert result["compared"] >= 10 and result["passed"], result["detail"]
    assert result["queue_same"] and sum(result["detections"]) > 0, result
    assert result["fixed_shape"] == [3, 128, 128] and result["fixed_built"] and result["odd_size_free"], result
    assert result["fixed_compared"] >= 10 and result["fixed_passed"], result["fixed_detail"]
    assert result["size_free_shape"] is None and result["odd_same"], result
    assert result["requests"] == min(2, os.cpu_count() or 1) or result["requests"] >= 2  # a stream per core
    # No --runtime below: an export runs in OpenVINO when it is installed, and the run says so.
    save(draw_rocks(160, 128, [(40, 20, 70, 60)]), tmp_path / "in" / "a.png")
    child = subprocess.run([sys.executable, "-m", "rockdet.cli.main", "predict", "--checkpoint", str(tmp_path / "m.onnx"),
                            "--out", str(tmp_path / "out"), str(tmp_path / "in"),
                            "--score-threshold", "0.05", "--device", "cpu"], capture_output=True, text=True,
                           env=environment)
    assert child.returncode == 0, child.stderr
    assert sorted((cache / "openvino").iterdir()) == cached  # the same model: its compiled form reused
    catalog = json.loads((tmp_path / "out" / "catalogs" / "a.png.json").read_text())
    assert catalog["model_form"] == result["describe"] and catalog["rock_count"] > 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["runtime"]["runtime"] == catalog["runtime"]["runtime"] == "openvino"
    assert summary["runtime"]["chosen"].startswith("auto: the fastest runtime measured")
    assert main(["predict", "--checkpoint", str(checkpoint), "--runtime", "openvino", "--out",
                 str(tmp_path / "o2"), str(tmp_path / "in")]) == 2
    assert "runs exported .onnx files" in capsys.readouterr().err


def test_a_missing_runtime_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    checkpoint, _ = write_checkpoint(tmp_path / "m.ckpt")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["predict", "--checkpoint", str(tmp_path / "m.onnx"), "--runtime", "onnxruntime",
                 "--out", str(tmp_path / "o"), str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install 'rockdet[onnx]'" in err


def test_auto_runtime_falls_back_to_onnx_runtime_without_openvino(tmp_path, monkeypatch):
    from rockdet.predict.runtimes import choose_runtime, load_detector

    checkpoint, _ = write_checkpoint(tmp_path / "m.ckpt")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 0
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    runtime, why = choose_runtime(tmp_path / "m.onnx", "auto", "cpu")
    assert runtime == "onnxruntime" and "pip install 'rockdet[openvino]'" in why
    detector = load_detector(tmp_path / "m.onnx", device="cpu")
    assert detector.describe().startswith("ONNX Runtime")
    assert detector.runtime == {"runtime": "onnxruntime", "chosen": why}
    assert choose_runtime(tmp_path / "m.onnx", "auto", "cuda")[0] == "onnxruntime"  # its CUDA provider on a GPU


def test_an_export_returns_no_score_below_its_floor_and_predict_says_so(tmp_path, capsys):
    from oracle import draw_rocks, save

    from rockdet import Predictor
    from rockdet.errors import SettingsError

    checkpoint, model = write_checkpoint(tmp_path / "m.ckpt", "fasterrcnn_resnet18_fpn", fpn_channels=32)
    with torch.inference_mode():
        scores = model([parity_image(128)])[0]["scores"]  # this random head: 0.58-0.66
    floor = round(float(scores.median()), 3)
    assert (scores < floor).sum() >= 10 and (scores >= floor).sum() >= 10  # boxes to remove and to keep
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["evaluation"]["score_threshold"] = 0.9  # the operating point
    torch.save(saved, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                 "--score-floor", str(floor)]) == 0
    assert f"scores from {floor:g}" in capsys.readouterr().out
    exported = load_exported(tmp_path / "m.onnx")
    assert exported.info.score_floor == floor
    got = exported([parity_image(128)])[0]["scores"]
    # Every box from the floor up, and none below (the 300-a-tile cap now keeps only those).
    assert bool((got >= floor).all()) and len(got) >= int((scores >= floor).sum())
    save(draw_rocks(160, 128, [(40, 20, 70, 60)]), tmp_path / "in" / "a.png")
    run = ["predict", "--checkpoint", str(tmp_path / "m.onnx"), "--runtime", "onnxruntime", str(tmp_path / "in")]
    assert main([*run, "--out", str(tmp_path / "o"), "--score-threshold", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--score-threshold" in err and "m.onnx" in err and "--score-floor 0.1" in err, err
    assert main([*run, "--out", str(tmp_path / "o2"), "--score-threshold", str(floor)]) == 0  # at the floor: fine
    capsys.readouterr()
    # Above the operating point, predict's own default would lose rocks: refused before any work.
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "high.onnx"),
                 "--score-floor", "0.95"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--score-floor 0.95 is above the model's operating point 0.9" in err, err
    assert not (tmp_path / "high.onnx").exists()
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "high.onnx"),
                 "--score-floor", "-0.1"]) == 2
    assert "--score-floor -0.1: give a score in 0..1" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "low.onnx"),
                 "--score-floor", str(floor), "--parity-threshold", "0.1"]) == 2
    err = capsys.readouterr().err
    assert f"--parity-threshold 0.1 is below the graph's score floor {floor:g}" in err, err
    assert not (tmp_path / "low.onnx").exists()
    # The Python API refuses the same, where a loaded predictor is given another threshold.
    predictor = Predictor.load(tmp_path / "m.onnx", runtime="onnxruntime")
    assert predictor.settings.score_threshold == 0.9
    with pytest.raises(SettingsError, match=r"score_threshold: 0.1 is below 0\.\d+, the lowest score .*m\.onnx"):
        predictor.with_settings(score_threshold=0.1)
    # With the flip, a view's box below the floor counts 0 in the fused score: said once, with the way out.
    # With the flip at 0.9, a view's box from 2 * 0.9 - 1 = 0.8 up can lift a pair to 0.9: this
    # graph keeps those (its floor is lower). Just above the floor it would cut them.
    capsys.readouterr()
    predictor.with_settings(tta="flip")
    assert "tta flip" not in capsys.readouterr().err
    near_floor = floor + 0.05
    predictor.with_settings(tta="flip", score_threshold=near_floor)
    err = capsys.readouterr().err
    assert f"returns no score below {floor:g}, so with tta flip a view's box below it counts 0" in err, err
    assert f"--score-floor {2 * near_floor - 1:g}" in err, err


def test_a_mask_rcnn_export_without_an_operating_point_needs_a_floor(tmp_path, capsys):
    checkpoint, _ = write_checkpoint(tmp_path / "m.ckpt", "maskrcnn_resnet18_fpn", fpn_channels=32)
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["evaluation"]["score_threshold"] = "auto"  # training never chose one
    torch.save(saved, checkpoint)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "operating point was never chosen" in err and "--score-floor" in err, err
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"),
                 "--score-floor", "0.05", "--parity-threshold", "0.05"]) == 0
    assert load_exported(tmp_path / "m.onnx").info.score_floor == 0.05


def test_an_export_of_the_previous_release_is_read_by_the_one_reader():
    from pathlib import Path

    from rockdet.models.info import ModelInfo

    fixture = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "export_0.1.0_metadata.json").read_text())
    info = ModelInfo.from_metadata(json.loads(fixture["metadata_props"]["rockdet"]), "m.onnx")
    assert (info.arch, info.input_size, info.class_names) == ("fasterrcnn_resnet18_fpn", 128, ("rock",))
    assert info.score_threshold == pytest.approx(0.50647, abs=1e-5) and info.head == {"proposals": 500, "detections": 300}
    assert info.threshold_choice.rule == "best_f1 (dense labels)" and info.rockdet_version == "0.1.0"


def write_scenes(folder, count=3, side=160):
    from PIL import Image

    from rockdet.synthetic.scenes import SceneSpec, generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        scene = generate_scene(np.random.default_rng(seed), SceneSpec(width=side, height=side))
        Image.fromarray(scene.image).save(folder / f"scene_{seed}.png")
    return folder


def test_int8_export_passes_its_parity_report_and_predict_runs_it(tmp_path, capsys):
    import onnx

    from rockdet.predict.runtimes import METADATA_KEY

    # A random model scores every box alike: with the usual 300 detections a tile, FP32 and INT8
    # would each keep a different 300 of some 800 near-equal boxes, and pairing would measure that.
    checkpoint, model = write_checkpoint(tmp_path / "m.ckpt", "fasterrcnn_resnet18_fpn", fpn_channels=32,
                                         detections_per_image=1000)
    calibration = write_scenes(tmp_path / "calibration")
    out = tmp_path / "m.int8.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--quantize", "int8",
                 "--calibration", str(calibration), "--calibration-tiles", "18"]) == 0
    printed = capsys.readouterr().out
    assert "parity of int8 with FP32:" in printed and "paired at IoU 0.5" in printed
    document = onnx.load(str(out))
    metadata = json.loads(next(entry.value for entry in document.metadata_props if entry.key == METADATA_KEY))
    how = metadata["quantization"]
    assert how["calibration"] == str(calibration) and how["calibration_tiles"] == 18  # two ranges of 9
    assert how["parity_with_fp32"]["passed"] and how["parity_with_fp32"]["fp32_rocks"] >= 20
    assert any(node.op_type == "QuantizeLinear" for node in document.graph.node)
    # The heads' output layers (scores and box deltas) stay FP32; the backbone runs in INT8.
    dequantized = {name for node in document.graph.node if node.op_type == "DequantizeLinear" for name in node.output}
    int8_inputs = {node.name: any(name in dequantized for name in node.input) for node in document.graph.node
                   if node.op_type in ("Conv", "Gemm")}
    assert len(how["fp32_layers"]) == 12  # the RPN's logits and deltas at five levels, the box predictor's two
    assert {"/model/roi_heads/box_predictor/cls_score/Gemm", "/model/rpn/head/bbox_pred_4/Conv"} <= set(how["fp32_layers"])
    assert not any(int8_inputs[name] for name in how["fp32_layers"])
    assert int8_inputs["/model/backbone/body/conv1/Conv"] and int8_inputs["/model/roi_heads/box_head/fc6/Gemm"]
    assert metadata["score_floor"] == model.roi_heads.score_thresh  # the FP32 graph's, kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibration", "m.ckpt", "m.int8.onnx"]  # no leftovers
    assert main(["predict", "--checkpoint", str(out), "--runtime", "onnxruntime", "--out", str(tmp_path / "o"),
                 str(calibration / "scene_0.png"), "--score-threshold", "0.05"]) == 0
    catalog = json.loads((tmp_path / "o" / "catalogs" / "scene_0.png.json").read_text())
    assert catalog["model_form"].endswith("INT8 weights") and catalog["rock_count"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--quantize", "int8"], "--quantize int8 needs --calibration DATA"),
    (["--quantize", "int8", "--format", "torchscript", "--calibration", "x"], "use --format onnx"),
    (["--quantize", "int8", "--calibration", "missing_folder"], "--calibration: missing_folder"),
])
def test_quantized_export_refuses_what_it_cannot_do_in_one_line(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    checkpoint, _ = write_checkpoint(tmp_path / "m.ckpt")
    suffix = "torchscript" if "torchscript" in extra else "onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", f"m.{suffix}", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / f"m.{suffix}").exists()
