"""The Python API as the README shows it: the example runs as written, and a Predictor gives the
same rocks as `rockdet predict` on the same image."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_golden_catalogs import write_legacy_checkpoint, write_scenes

from rockdet import Catalog, ModelInfo, Predictor, PredictSettings, Rock
from rockdet.cli.main import main
from rockdet.errors import SettingsError
from rockdet.models import load_model, write_model_file

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def model_file(tmp_path) -> Path:
    """model.pt of the 0.1.0 fixture's detector (random init: it finds many 'rocks')."""
    write_legacy_checkpoint(tmp_path / "legacy.ckpt")
    model, info = load_model(tmp_path / "legacy.ckpt")
    return write_model_file(tmp_path / "model.pt", model, info)


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, model_file, monkeypatch, capsys):
    scenes = write_scenes(tmp_path / "imgs")
    (tmp_path / "frame.png").write_bytes((scenes / "scene_0.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert re.match(r"\d+ rocks; the first at \(.*\) px, None m", printed[0])
    assert printed[1].startswith("2 images,")
    assert (tmp_path / "out" / "catalogs" / "frame.png.csv").is_file()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["done"] == 2


@pytest.mark.slow
def test_a_predictor_gives_the_rocks_predict_writes(tmp_path, model_file):
    images = write_scenes(tmp_path / "imgs")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(model_file), "--out", str(out), str(images),
                 "--score-threshold", "0.6"]) == 0
    predictor = Predictor.load(model_file, score_threshold=0.6)
    catalog = predictor(images / "scene_0.png")
    written = json.loads((out / "catalogs" / "scene_0.png.json").read_text())
    assert [rock.row(False, False) for rock in catalog.rocks] == written["rocks"]
    assert isinstance(catalog, Catalog) and isinstance(catalog.rocks[0], Rock)
    assert isinstance(predictor.info, ModelInfo) and predictor.info.input_size == 128
    # An array is catalogued like the file it came from, under the name it is given.
    from PIL import Image

    pixels = np.asarray(Image.open(images / "scene_0.png").convert("RGB"))
    from_array = predictor(pixels, name="scene_0")
    assert from_array.rows() == catalog.rows() and from_array.image == "scene_0"
    assert from_array.to_pandas().shape == (len(catalog.rocks), len(catalog.columns()))
    with pytest.raises(dataclasses.FrozenInstanceError):  # rocks are values
        catalog.rocks[0].score = 1.0


def test_settings_are_checked_by_field_name():
    with pytest.raises(SettingsError, match="tile: must be at least 32, got 8") as found:
        PredictSettings.of(tile=8)
    assert found.value.key == "tile"
    with pytest.raises(SettingsError, match="device: choose auto, cpu, cuda or cuda:N"):
        PredictSettings.of(device="gpu")
    with pytest.raises(SettingsError, match="unknown key 'tiles'"):
        PredictSettings.of(tiles=3)
    with pytest.raises(SettingsError, match="image: give a path or 8-bit pixels"):
        from rockdet.predict.predictor import decode

        decode(np.zeros((4, 4, 3), np.float32), None)


def test_a_model_file_of_a_newer_schema_is_refused_in_one_line(tmp_path):
    from rockdet.errors import CheckpointError
    from rockdet.models.files import MODEL_FILE_KEY

    info = ModelInfo("fasterrcnn_mobilenet_v3_large_fpn", {"min_size": 64}, 64, score_threshold=0.5)
    metadata = {**info.to_metadata(), "schema_version": 99, "rockdet_version": "9.0"}
    torch.save({MODEL_FILE_KEY: metadata, "state_dict": {}}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future.pt: written by rockdet 9.0 \(model schema 99\); this rockdet "
                                              r"\S+ reads schema 1 at most: upgrade rockdet"):
        load_model(tmp_path / "future.pt")


def test_a_mask_model_is_asked_for_no_box_below_the_catalogs_threshold_and_gives_the_same_rocks(tmp_path, monkeypatch):
    import contextlib

    import rockdet.predict.detect as detect
    from rockdet.models import build_detector

    torch.manual_seed(0)
    settings = {"arch": "maskrcnn_resnet18_fpn", "fpn_channels": 32, "min_size": 64, "max_size": 64}
    model = build_detector(**settings)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": settings, "input_size": 64, "evaluation": {"score_threshold": 0.3}}},
               tmp_path / "masks.ckpt")
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    predictor = Predictor.load(tmp_path / "masks.ckpt", device="cpu")
    heads = predictor.detector.model.roi_heads
    built_floor, calls, forward = heads.score_thresh, [], heads.forward

    def spied(*args, **kwargs):
        result = forward(*args, **kwargs)
        calls.append((heads.score_thresh, torch.cat([r["scores"] for r in result[0]])))
        return result

    monkeypatch.setattr(heads, "forward", spied)
    # As built, the head returns boxes on both sides of the threshold (a random head: its median).
    monkeypatch.setattr(detect, "scoring_from", lambda model, min_score: contextlib.nullcontext())
    predictor(pixels)
    threshold = float(calls[-1][1].median())
    unfloored = predictor.with_settings(score_threshold=threshold)(pixels)
    assert calls[-1][0] == built_floor and calls[-1][1].min() < threshold
    monkeypatch.undo()
    monkeypatch.setattr(heads, "forward", spied)
    floored = predictor.with_settings(score_threshold=threshold)(pixels)
    assert threshold - 1e-6 < calls[-1][0] < threshold and calls[-1][1].min() >= threshold
    assert heads.score_thresh == built_floor  # left as built: validation ranks every box
    rows = [[rock.row(True, False) for rock in catalog.rocks] for catalog in (floored, unfloored)]
    assert rows[0] and rows[0] == rows[1]


def test_the_detectors_own_floor_is_restored_when_a_run_fails(tmp_path, model_file, monkeypatch):
    predictor = Predictor.load(model_file, score_threshold=0.6, device="cpu")
    heads = predictor.detector.model.roi_heads
    built_floor = heads.score_thresh

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(heads, "forward", broken)
    with pytest.raises(RuntimeError):
        predictor(np.zeros((32, 32, 3), dtype=np.uint8))
    assert heads.score_thresh == built_floor


def test_validation_judges_a_mask_models_boxes_without_making_masks(monkeypatch):
    """Validation, evaluate and the operating point judge boxes: a Mask R-CNN gives them the
    boxes it gives predict, without pasting a mask for each, and predict still gets its masks."""
    from rockdet.models import build_detector
    from rockdet.predict.detect import EVALUATION_SETTINGS, detect_raw, detect_raw_tensors

    torch.manual_seed(0)
    model = build_detector(arch="maskrcnn_resnet18_fpn", fpn_channels=32, min_size=64, max_size=64).eval()
    heads = model.roi_heads
    mask_runs = []
    heads.mask_head.register_forward_hook(lambda *args: mask_runs.append(1))
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255

    judged = detect_raw_tensors(model, [image], 64)[0].predictions[0]
    assert not mask_runs and "masks" not in judged
    predicted = next(detect_raw(model, [pixels], EVALUATION_SETTINGS, 64)).predictions[0]
    assert mask_runs and predicted["masks"].shape[0] == len(predicted["boxes"]) > 0
    assert torch.equal(judged["boxes"], predicted["boxes"]) and torch.equal(judged["scores"], predicted["scores"])

    branch = (heads.mask_roi_pool, heads.mask_head, heads.mask_predictor)
    monkeypatch.setattr(heads, "forward", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(RuntimeError):
        detect_raw_tensors(model, [image], 64)
    assert (heads.mask_roi_pool, heads.mask_head, heads.mask_predictor) == branch
