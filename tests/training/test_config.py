from pathlib import Path

import pytest
from conftest import CONFIGS

from rockdet.cli.main import main
from rockdet.errors import ConfigError
from rockdet.training.config import load_config


def write_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_every_shipped_config_loads():
    for path in sorted(CONFIGS.glob("*.yaml")):
        config = load_config(path)
        assert config.model.arch


def test_paths_resolve_against_the_config_file(tmp_path):
    path = write_yaml(tmp_path, "data:\n  train: {annotations: sub/train.json}\n")
    assert load_config(path).data.train.annotations == tmp_path / "sub" / "train.json"


def test_overrides_set_typed_values_and_trainer_options(tmp_path):
    path = write_yaml(tmp_path, "model: {arch: fcos_resnet50_fpn}\n")
    config = load_config(path, ["trainer.devices=2", "trainer.strategy=ddp",
                                "trainer.precision=16-mixed", "optimizer.lr=0.01",
                                "model.anchor_sizes=[[8],[16],[32],[64],[128]]"])
    assert config.trainer == {"devices": 2, "strategy": "ddp", "precision": "16-mixed"}
    assert config.optimizer.lr == 0.01
    assert config.model.anchor_sizes[0] == [8]


@pytest.mark.parametrize("text, message", [
    ("modle: {}\n", r"config.yaml: unknown key 'modle' \(did you mean 'model'\?\)"),
    ("model: {arch: fasterrcnn_mobilenet_v3_large_fpn, min_sise: 3}\n",
     r"unknown key 'model.min_sise' \(did you mean 'model.min_size'\?\)"),
    ("trainer: {max_epoch: 3}\n", r"unknown key 'trainer.max_epoch' \(did you mean 'max_epochs'\?\)"),
    ("model: {arch: fastercnn_mobilenet_v3_large_fpn}\n", r"unknown arch 'fastercnn_mobilenet_v3_large_fpn'"),
    ("optimizer: {lr: fast}\n", r"optimizer.lr: expected a number, got 'fast'"),
    ("optimizer: {name: adagrad}\n", r"optimizer.name: 'adagrad' is not one of"),
    ("data: {augment: terain_default}\n", r"did you mean 'terrain_default'"),
    ("model: [1, 2]\n", r"'model' must be a mapping"),
    ("model: {arch: [unclosed\n", r"config.yaml: not valid YAML"),
    ("model: {anchor_sizes: aut}\n", r"model.anchor_sizes: expected a list or 'auto', got 'aut'"),
    ("model: {anchor_sizes: [[8], [x]]}\n", r"model.anchor_sizes\[1\]\[0\]: expected an integer, got 'x'"),
    ("model: {min_size: 900, max_size: 800}\n", r"model.max_size: must be at least min_size \(900\), got 800"),
    ("scheduler: {name: step, warmup_steps: 5}\n", r"scheduler.warmup_steps: a warmup needs name cosine"),
    ("seed: '5'\n", r"seed: expected an integer, got '5'"),
    ("eval: {score_threshold: 1.5}\n", r"eval.score_threshold: must be at most 1.0, got 1.5"),
    ("data: {train: {format: synthetic, size: 8}}\n", r"data.train.size: must be at least 32, got 8"),
])
def test_bad_config_names_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_yaml(tmp_path, text))


def test_override_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    path = write_yaml(tmp_path, "data:\n  val: {annotations: sub/val.json}\n")
    monkeypatch.chdir(tmp_path / "..")
    config = load_config(path, ["data.train.annotations=elsewhere/train.json", "run.dir=runs/x"])
    assert config.data.train.annotations == Path.cwd() / "elsewhere" / "train.json"
    assert config.run.dir == Path.cwd() / "runs" / "x"
    assert config.data.val.annotations == tmp_path / "sub" / "val.json"  # the file's stay the file's
    with pytest.raises(ConfigError, match=r"config.yaml with overrides: optimizer.lr: expected a number, got 'fast'"):
        load_config(path, ["optimizer.lr=fast"])


def test_bad_override_suggests_nearest_key(tmp_path):
    path = write_yaml(tmp_path, "{}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer.lrate' \(did you mean 'optimizer.lr'\?\)"):
        load_config(path, ["optimizer.lrate=0.1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["optimizer.lr"])


def test_an_override_below_a_list_of_sources_names_an_item_or_is_refused(tmp_path, monkeypatch):
    path = write_yaml(tmp_path, "data:\n  train:\n    - {annotations: a.json}\n    - {annotations: b.json, weight: 4}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(path, ["data.train.1.weight=2", "data.train.0.annotations=other.json"])
    assert [source.weight for source in config.data.train] == [1.0, 2.0]
    assert [source.annotations.name for source in config.data.train] == ["other.json", "b.json"]
    # A key straight below the list would replace both sources with one: refused, with the way out.
    with pytest.raises(ConfigError, match=r"data.train is a list of 2; name an item by its index "
                                          r"\(data.train.0.annotations=...\) or give the whole list"):
        load_config(path, ["data.train.annotations=x.json"])
    with pytest.raises(ConfigError, match="data.train is a list of 2"):
        load_config(path, ["data.train.2.weight=1"])
    assert len(load_config(path, ["data.train=[{annotations: c.json}]"]).data.train) == 1


def test_cli_reports_config_error_in_one_line(tmp_path, capsys):
    path = write_yaml(tmp_path, "modle: {}\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rockdet: error:") and "modle" in err and "\n" not in err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_a_config_extends_its_base_with_paths_kept_where_the_base_meant_them(tmp_path):
    base_dir = tmp_path / "shared"
    base_dir.mkdir()
    (base_dir / "base.yaml").write_text(
        "model: {arch: fasterrcnn_resnet50_fpn_v2, min_size: 640}\n"
        "data: {train: {annotations: data/train.json}, batch_size: 8}\n"
        "trainer: {max_epochs: 30, precision: 16-mixed}\n")
    child = tmp_path / "child.yaml"
    child.write_text("extends: shared/base.yaml\nmodel: {arch: fcos_resnet50_fpn}\ntrainer: {max_epochs: 5}\n")
    config = load_config(child, ["data.batch_size=2"])
    assert config.model.arch == "fcos_resnet50_fpn" and config.model.min_size == 640  # merged key by key
    assert config.trainer == {"max_epochs": 5, "precision": "16-mixed"}
    assert config.data.train.annotations == base_dir / "data" / "train.json"  # relative to the base
    assert config.data.batch_size == 2
    (base_dir / "base.yaml").write_text("extends: ../child.yaml\n")
    with pytest.raises(ConfigError, match="extends this file again"):
        load_config(child)


def test_per_architecture_configs_differ_from_their_base_only_in_arch_and_name():
    for name in ("fasterrcnn_mobilenet", "fasterrcnn_resnet50", "fcos_resnet50", "maskrcnn_resnet50",
                 "retinanet_resnet50"):
        config = load_config(CONFIGS / f"{name}.yaml")
        assert config.run.name == name and config.model.weights == "DEFAULT"
        assert config.trainer["precision"] == "16-mixed" and config.data.rock_classes == ["rock", "boulder"]
