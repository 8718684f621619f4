"""Train a few steps on generated data → checkpoint → evaluate; resume continues from the step."""

import csv
import json

import pytest
import torch
import yaml

from rockdet.cli import main
from rockdet.models import load_checkpoint_model

from conftest import CONFIGS, tiny_train_overrides

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
    model, hparams = load_checkpoint_model(trained_run / "checkpoints" / "best.ckpt")
    assert hparams["model"]["arch"] == "fasterrcnn_mobilenet_v3_large_fpn"
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
