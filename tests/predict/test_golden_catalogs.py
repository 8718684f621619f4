"""Catalogs keep their format and their rocks across releases and redesigns, and a checkpoint
written by the previous release (0.1.0) still loads.

The checkpoint is rebuilt from ``fixtures/checkpoint_0.1.0.json``: the exact settings and tensor
names and shapes a 0.1.0 `rockdet train` wrote, filled with the detector's own seeded initial
weights (a random-init model scores every box, so the rocks are many and depend on every step
of the pipeline). The catalogs it gives on two seeded scenes (one tiled, one whole) are compared
with ``fixtures/golden_catalogs.json``: same files, same columns, same rocks. A deliberate change
of the rocks rewrites the golden file with ``ROCKDET_WRITE_GOLDEN=1 pytest tests/test_golden_catalogs.py``
and says why in its commit.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rockdet.cli.main import main
from rockdet.models import build_detector
from rockdet.synthetic.scenes import SceneSpec, generate_scene

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = FIXTURES / "golden_catalogs.json"
#: Scores above this make the catalogs (a random-init model scores every box 0.5-0.7).
THRESHOLD = "0.6"


def write_legacy_checkpoint(path: Path) -> dict:
    """A checkpoint laid out as rockdet 0.1.0 wrote it; returns its hyper-parameters."""
    fixture = json.loads((FIXTURES / "checkpoint_0.1.0.json").read_text())
    hparams = fixture["hyper_parameters"]
    torch.manual_seed(0)
    model = build_detector(**{k: v for k, v in hparams["model"].items() if k not in ("weights", "weights_backbone")})
    state = {f"model.{name}": tensor for name, tensor in model.state_dict().items()}
    assert {name: list(t.shape) for name, t in state.items()} == \
        {name: spec["shape"] for name, spec in fixture["state_dict"].items()}, "the detector's tensors changed"
    torch.save({"epoch": fixture["epoch"], "global_step": fixture["global_step"],
                "pytorch-lightning_version": fixture["pytorch-lightning_version"], "state_dict": state,
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": [], "hparams_name": "kwargs",
                "hyper_parameters": hparams}, path)
    return hparams


def write_scenes(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for index, (width, height) in enumerate([(256, 200), (128, 128)]):
        scene = generate_scene(np.random.default_rng([99, index]), SceneSpec(width=width, height=height,
                                                                             empty_fraction=0.0))
        Image.fromarray(scene.image).save(folder / f"scene_{index}.png")
    return folder


def catalogs_of(out: Path) -> dict:
    found = {"files": sorted(str(p.relative_to(out)) for p in (out / "catalogs").rglob("*") if p.is_file()),
             "rocks_csv_columns": next(csv.reader(open(out / "rocks.csv"))), "images": {}}
    for path in sorted((out / "catalogs").glob("*.json")):
        document = json.loads(path.read_text())
        with open(path.with_suffix(".csv")) as handle:
            columns = next(csv.reader(handle))
        found["images"][path.name] = {"json_keys": sorted(document), "csv_columns": columns,
                                      "rocks": document["rocks"]}
    return found


@pytest.mark.slow
def test_the_previous_release_checkpoint_gives_the_same_catalogs(tmp_path):
    write_legacy_checkpoint(tmp_path / "legacy.ckpt")
    images = write_scenes(tmp_path / "images")
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tmp_path / "legacy.ckpt"), "--out", str(out), str(images),
                 "--score-threshold", THRESHOLD]) == 0
    found = catalogs_of(out)
    if os.environ.get("ROCKDET_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(found, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert found["files"] == golden["files"] and found["rocks_csv_columns"] == golden["rocks_csv_columns"]
    for name, expected in golden["images"].items():
        got = found["images"][name]
        assert got["json_keys"] == expected["json_keys"] and got["csv_columns"] == expected["csv_columns"], name
        assert len(got["rocks"]) == len(expected["rocks"]), name
        for rock, want in zip(got["rocks"], expected["rocks"]):
            assert rock.keys() == want.keys()
            for key, value in want.items():
                assert rock[key] == pytest.approx(value, abs=2e-3) if isinstance(value, float) else rock[key] == value
