"""Train a few steps on generated data → checkpoint → evaluate; resume continues from the step."""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONFIGS, tiny_train_overrides
from torchvision.ops import box_iou

from rockdet.cli.main import main
from rockdet.models import load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(synthetic_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    code = main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"),
                 *tiny_train_overrides(synthetic_data, run_dir, **{"trainer.max_epochs": 2})])
    assert code == 0
    return run_dir


def test_train_writes_run_folder(trained_run):
    for name in ("config.yaml", "metrics.csv", "training_curves.png", "summary.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (trained_run / name).is_file(), name
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 2 and saved["model"]["min_size"] == 96
    rows = list(csv.DictReader((trained_run / "metrics.csv").open()))
    val_rows = [r for r in rows if r.get("val_map_50")]
    assert [int(r["epoch"]) for r in val_rows] == [0, 1]
    for key in ("val_map", "val_map_small", "val_map_medium", "val_map_large", "val_recall_50"):
        assert all(0.0 <= float(r[key]) <= 1.0 or float(r[key]) == -1.0 for r in val_rows), key
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["monitor"] == "val_map_50"


def test_checkpoint_loads_for_inference_and_evaluate(trained_run, synthetic_data, tmp_path, capsys):
    model, info = load_model(trained_run / "checkpoints" / "best.ckpt")
    assert info.arch == "fasterrcnn_mobilenet_v3_large_fpn" and info.input_size == 96
    with torch.no_grad():
        model([torch.rand(3, 96, 96)])
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(trained_run / "checkpoints" / "best.ckpt"),
                 "--data", str(synthetic_data["val"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "map_50" in printed and "recall_50" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 3 and result["rocks"] > 0
    assert set(result["metrics"]) >= {"map", "map_50", "map_small", "recall_50", "recall_at_score"}
    assert len(result["pr_curve"]["recall"]) == 101
    assert (tmp_path / "metrics_pr.png").is_file()


def test_training_writes_a_weights_only_model_file_that_predicts_as_the_checkpoint(trained_run, synthetic_data):
    from rockdet import Predictor

    model_file, checkpoint = trained_run / "model.pt", trained_run / "checkpoints" / "best.ckpt"
    assert json.loads((trained_run / "summary.json").read_text())["model_file"] == str(model_file)
    # No optimizer state: a third of the checkpoint (AdamW keeps two moments per weight).
    assert model_file.stat().st_size < 0.5 * checkpoint.stat().st_size
    image = next(Path(synthetic_data["val"]).parent.glob("*.png"))
    from_file = Predictor.load(model_file, score_threshold=0.01)(image)
    from_checkpoint = Predictor.load(checkpoint, score_threshold=0.01)(image)
    assert from_file.rows() == from_checkpoint.rows() and from_file.context["arch"] == from_checkpoint.context["arch"]


def test_resume_continues_from_saved_step(trained_run, synthetic_data):
    last = trained_run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4
    code = main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), "--resume", str(last),
                 *tiny_train_overrides(synthetic_data, trained_run, **{"trainer.max_epochs": 3})])
    assert code == 0
    assert json.loads((trained_run / "summary.json").read_text())["global_step"] == 6
    epochs = [int(r["epoch"]) for r in csv.DictReader((trained_run / "metrics.csv").open()) if r.get("val_map_50")]
    assert epochs == [0, 1, 2]  # earlier epochs kept, the resumed one appended


def test_bad_checkpoint_is_one_clear_error(tmp_path, synthetic_data, capsys):
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"state_dict": {}}, bogus)
    assert main(["evaluate", "--checkpoint", str(bogus), "--data", str(synthetic_data["val"])]) == 2
    assert "not a rockdet checkpoint" in capsys.readouterr().err


def _predict_inputs(synthetic_data, folder):
    """The validation images, plus one 2x2 mosaic larger than the training images (tiled)."""
    import numpy as np
    from PIL import Image

    images = sorted(synthetic_data["val"].parent.glob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    tiles = [np.asarray(Image.open(p).convert("RGB")) for p in images[:2]] * 2
    Image.fromarray(np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])).save(folder / "mosaic.png")
    for path in images:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def test_trained_checkpoint_predicts_catalogs_we_can_read_back(trained_run, synthetic_data, tmp_path):
    from rockdet.catalog.files import read_catalog_csv

    inputs = _predict_inputs(synthetic_data, tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(trained_run / "checkpoints" / "last.ckpt"), "--out", str(out),
                 str(inputs), "--score-threshold", "0.0", "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 4 and summary["failed"] == 0
    mosaic = json.loads((out / "catalogs" / "mosaic.png.json").read_text())
    # training images were 96 px: 3x3 tiles of 96 px cover 192 px with at least 20 % overlap
    assert mosaic["tiles"] == 9 and mosaic["tiling"]["tile"] == 96
    rows = read_catalog_csv(out / "catalogs" / "mosaic.png.csv")
    for row in rows:
        assert 0 <= row["x_min"] < row["x_max"] <= 192 and 0 <= row["y_min"] < row["y_max"] <= 192
        assert row["diameter_px"] == pytest.approx((row["width_px"] + row["height_px"]) / 2, abs=1e-2)
    assert summary["rocks_total"] == sum(len(read_catalog_csv(p)) for p in (out / "catalogs").glob("*.csv"))
    # The faster inference form (batch norms folded, channels-last) finds the same rocks as the
    # model run exactly as trained.
    assert "batch norms folded" in mosaic["model_form"]
    exact = tmp_path / "exact"
    assert main(["predict", "--checkpoint", str(trained_run / "checkpoints" / "last.ckpt"), "--out", str(exact),
                 str(inputs), "--score-threshold", "0.0", "--device", "cpu", "--as-trained"]) == 0
    assert json.loads((exact / "catalogs" / "mosaic.png.json").read_text())["model_form"] == "as trained"

    def boxes_scores(catalog):
        return (torch.tensor([[r["x_min"], r["y_min"], r["x_max"], r["y_max"]] for r in catalog]),
                torch.tensor([r["score"] for r in catalog]))

    # The mosaic repeats tiles, so its rocks tie in score and rounding may break a tie either
    # way; the single-tile images have no such ties.
    for image in sorted(p.stem for p in inputs.glob("*.png") if p.stem != "mosaic"):
        (boxes, scores) = boxes_scores(read_catalog_csv(out / "catalogs" / f"{image}.png.csv"))
        (exact_boxes, exact_scores) = boxes_scores(read_catalog_csv(exact / "catalogs" / f"{image}.png.csv"))
        assert len(boxes) == len(exact_boxes) > 0
        overlap, partner = box_iou(boxes, exact_boxes).max(dim=1)  # rock ids may swap on near-ties
        assert overlap.min() > 0.99 and partner.unique().numel() == len(boxes)
        assert (scores - exact_scores[partner]).abs().max() < 1e-3


def test_predict_on_two_processes_with_ddp_catalogues_each_image_once(trained_run, synthetic_data, tmp_path):
    import subprocess
    import sys

    inputs = _predict_inputs(synthetic_data, tmp_path / "in")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rockdet.cli.main", "-q", "predict", "--checkpoint",
               str(trained_run / "checkpoints" / "last.ckpt"), "--out", str(out), str(inputs),
               "--device", "cpu", "--devices", "2", "--score-threshold", "0.0"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["done"], summary["failed"]) == (4, 4, 0)
    assert sorted(p.stem for p in (out / "catalogs").glob("*.json")) == \
        sorted(p.name for p in inputs.glob("*.png"))


def test_run_that_stops_before_validation_keeps_last_checkpoint(synthetic_data, tmp_path, capsys):
    # Early stopping and the best checkpoint watch val_map_50, which a run stopped mid-epoch never
    # logs: they must wait for validation instead of failing at the end of the epoch.
    run_dir = tmp_path / "run"
    code = main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"),
                 *tiny_train_overrides(synthetic_data, run_dir, **{"trainer.max_steps": 1,
                                                                   "early_stopping.enabled": "true"})])
    assert code == 0
    assert "no validation ran" in capsys.readouterr().out
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 1


def test_pseudo_label_command_writes_a_training_file_the_next_run_reads(trained_run, synthetic_data,
                                                                         tmp_path, capsys):
    from rockdet.data.formats import load_split
    from rockdet.training.config import SplitConfig

    checkpoint = str(trained_run / "checkpoints" / "last.ckpt")
    out = tmp_path / "pseudo" / "train.json"
    assert main(["pseudo-label", "--checkpoint", checkpoint, "--data", str(synthetic_data["train"]),
                 "--out", str(out), "--min-score", "0.0"]) == 0
    printed = capsys.readouterr().out
    assert "pseudo-labelled rocks added" in printed
    original = json.loads(synthetic_data["train"].read_text())["annotations"]
    document = json.loads(out.read_text())
    added = document["annotations"][len(original):]
    assert document["annotations"][:len(original)] == original and added
    assert all(a["pseudo_label"] and a["score"] >= 0.0 for a in added)
    assert f"data.train.images={synthetic_data['train'].parent}" in printed
    assert load_split(SplitConfig(annotations=out, images=synthetic_data["train"].parent), ["rock"]).report.rocks == \
        sum(1 for a in original if a["category_id"] == 1) + len(added)
    assert main(["pseudo-label", "--checkpoint", checkpoint, "--data", str(synthetic_data["train"]),
                 "--out", str(out), "--min-score", "2"]) == 2
    assert "--min-score must lie in 0..1" in capsys.readouterr().err


def test_tensorboard_logger_writes_event_files_beside_metrics_csv(synthetic_data, tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run_dir = tmp_path / "run"
    overrides = tiny_train_overrides(synthetic_data, run_dir, **{"trainer.max_steps": 2, "run.logger": "tensorboard"})
    assert main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), *overrides]) == 0
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*")) and (run_dir / "metrics.csv").is_file()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the mlflow extra were not installed
    overrides = tiny_train_overrides(synthetic_data, tmp_path / "run2", **{"trainer.max_steps": 1, "run.logger": "mlflow"})
    assert main(["train", "--config", str(CONFIGS / "tiny_cpu.yaml"), *overrides]) == 2
    assert "run.logger: mlflow needs the mlflow package: pip install 'rockdet[mlflow]'" in capsys.readouterr().err
