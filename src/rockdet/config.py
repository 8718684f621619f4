"""Typed configuration loaded from YAML, validated at load time.

Every error names the file and the key. Relative paths inside a YAML file are resolved against
the folder of that file; relative paths given as command-line overrides against the working
directory, as a shell user expects.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rockdet.data.settings import DataConfig, SplitConfig
from rockdet.data.transforms import PRESETS
from rockdet.errors import ConfigError, did_you_mean
from rockdet.models.archs import ARCHS, SMALL_ROCK_ARCHS, has_masks, is_two_stage
from rockdet.typed_yaml import apply_override, build_dataclass, merge_mappings, read_yaml_mapping, to_dict

#: model.anchor_sizes value that derives anchors from the training set's rock sizes.
AUTO = "auto"


@dataclass
class ModelConfig:
    arch: str = "fasterrcnn_mobilenet_v3_large_fpn"
    #: None, a torchvision weights enum name (DEFAULT, COCO_V1, ...) or a local .pth/.ckpt file.
    weights: str | None = None
    weights_backbone: str | None = None
    min_size: int = 800
    max_size: int = 1333
    #: One list of anchor sizes (pixels, in the model's resized input) per feature level; None
    #: keeps the architecture's; "auto" derives them from the training set's rock sizes.
    anchor_sizes: list[list[int]] | Literal["auto"] | None = None
    #: FPN width of rockdet's own small-rock archs (torchvision's detectors are fixed at 256).
    fpn_channels: int = 256
    trainable_backbone_layers: int | None = None
    #: Detections kept per image; rock fields are dense, torchvision's default of 100 is low.
    detections_per_image: int = 300
    #: Further keyword arguments of the torchvision detector class (FasterRCNN, RetinaNet, FCOS,
    #: MaskRCNN), e.g. rpn_post_nms_top_n_test or box_batch_size_per_image.
    options: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if self.arch not in ARCHS:
            suggestion = did_you_mean(self.arch, ARCHS)
            raise ConfigError(f"{where}model.arch: unknown arch '{self.arch}'{suggestion}; "
                              f"choose one of {list(ARCHS)}")
        if self.fpn_channels != 256 and self.arch not in SMALL_ROCK_ARCHS:
            raise ConfigError(f"{where}model.fpn_channels: only {list(SMALL_ROCK_ARCHS)} take "
                              f"another FPN width than 256")
        if self.fpn_channels <= 0:
            raise ConfigError(f"{where}model.fpn_channels: must be positive, got {self.fpn_channels}")
        if self.min_size <= 0 or self.max_size < self.min_size:
            raise ConfigError(f"{where}model.min_size/max_size: need 0 < min_size <= max_size, "
                              f"got {self.min_size}, {self.max_size}")

    @property
    def has_masks(self) -> bool:
        return has_masks(self.arch)


@dataclass
class OptimizerConfig:
    name: Literal["sgd", "adamw", "adam"] = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9


@dataclass
class SchedulerConfig:
    name: Literal["none", "cosine", "step"] = "cosine"
    warmup_steps: int = 0
    #: For name=step: multiply the rate by gamma every step_size epochs.
    step_size: int = 10
    gamma: float = 0.1


@dataclass
class EarlyStoppingConfig:
    enabled: bool = True
    patience: int = 10
    min_delta: float = 0.0


@dataclass
class EvalConfig:
    #: Score above which a detection counts for precision/recall at the operating point.
    score_threshold: float = 0.5
    iou_threshold: float = 0.5


@dataclass
class RunConfig:
    out_dir: Path = Path("runs")
    name: str = "rockdet"
    #: Explicit run folder; default is out_dir/name_TIMESTAMP.
    dir: Path | None = None


@dataclass
class TrainConfig:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    #: Passed to lightning.Trainer as keyword arguments (devices, strategy, precision, ...).
    trainer: dict[str, Any] = field(default_factory=dict)


#: Top-level key naming the config a file builds on (a path relative to the file).
EXTENDS = "extends"


def load_config(path: Path | str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a training config YAML (and the configs it ``extends``), apply ``key.sub=value``
    overrides, validate, return it."""
    path = Path(path)
    config = build_dataclass(TrainConfig, read_config_tree(path), source=path, base_dir=path.parent)
    for override in overrides or []:
        apply_override(config, override, source=path)
    validate_config(config, source=path)
    return config


def read_config_tree(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The file's mapping merged over the one it ``extends`` (recursively; mappings merge key by
    key, anything else is replaced). The base's relative paths are made absolute first, so they
    still point where the base file meant them to."""
    raw = read_yaml_mapping(path, "config")
    base_name = raw.pop(EXTENDS, None)
    if base_name is None:
        return raw
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: {EXTENDS}: expected a file name, got {base_name!r}")
    base_path = (path.parent / base_name).resolve()
    if base_path in chain or base_path == path.resolve():
        raise ConfigError(f"{path}: {EXTENDS}: {base_name} extends this file again (a circle)")
    base_raw = read_config_tree(base_path, chain + (path.resolve(),))
    base = to_dict(build_dataclass(TrainConfig, base_raw, source=base_path, base_dir=base_path.parent))
    return merge_mappings(base, raw)


def validate_config(config: TrainConfig, source: Path | str) -> None:
    where = f"{source}: "
    config.model.validate(where)
    import lightning

    trainer_params = set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}
    for key in config.trainer:
        if key not in trainer_params:
            raise ConfigError(f"{where}unknown key 'trainer.{key}'{did_you_mean(key, trainer_params)}"
                              " (trainer takes lightning.Trainer's arguments)")
    if config.data.ignore_classes and not is_two_stage(config.model.arch):
        raise ConfigError(f"{where}data.ignore_classes: ignore regions need a two-stage arch "
                          f"(fasterrcnn_*, maskrcnn_*), not {config.model.arch}")
    if config.scheduler.name == "step" and config.scheduler.warmup_steps:
        raise ConfigError(f"{where}scheduler.warmup_steps: a warmup needs name cosine or none; "
                          f"with name step it would be ignored")
    for name in ("train", "val"):
        split = getattr(config.data, name)
        if split is not None and split.format == "synthetic" and (split.scenes < 1 or split.size < 32):
            raise ConfigError(f"{where}data.{name}: synthetic scenes need scenes >= 1 and size >= 32, "
                              f"got {split.scenes} and {split.size}")
    for key in ("batch_size", "num_workers"):
        value, least = getattr(config.data, key), 1 if key == "batch_size" else 0
        if value < least:
            raise ConfigError(f"{where}data.{key}: must be at least {least}, got {value}")
    if config.data.augment not in PRESETS:
        raise ConfigError(f"{where}data.augment: unknown preset '{config.data.augment}'"
                          f"{did_you_mean(config.data.augment, PRESETS)}; choose one of {sorted(PRESETS)}")


__all__ = ["AUTO", "ARCHS", "DataConfig", "SplitConfig", "ModelConfig", "TrainConfig", "load_config",
           "validate_config"]
