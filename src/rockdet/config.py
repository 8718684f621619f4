"""Typed training configuration: pydantic models loaded from YAML, validated at load time.

Every error names the file and the key. Relative paths inside a YAML file are resolved against
the folder of that file; relative paths given as command-line overrides against the working
directory, as a shell user expects. A file may ``extends:`` a base file.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from rockdet.data.settings import DataConfig, SplitConfig
from rockdet.data.transforms import PRESETS
from rockdet.errors import ConfigError, did_you_mean
from rockdet.models.archs import ARCHS, SMALL_ROCK_ARCHS, has_masks, is_two_stage
from rockdet.typed_yaml import (
    ConfigPath,
    KeyProblem,
    Settings,
    as_plain_data,
    merge_mappings,
    read_yaml_mapping,
    set_values,
    validate_mapping,
)

#: model.anchor_sizes value that derives anchors from the training set's rock sizes.
AUTO = "auto"


class ModelConfig(Settings):
    arch: str = "fasterrcnn_mobilenet_v3_large_fpn"
    #: None, a torchvision weights enum name (DEFAULT, COCO_V1, ...) or a local .pth/.ckpt file.
    weights: str | None = None
    weights_backbone: str | None = None
    min_size: int = Field(800, gt=0)
    max_size: int = Field(1333, gt=0)
    #: One list of anchor sizes (pixels, in the model's resized input) per feature level; None
    #: keeps the architecture's; "auto" derives them from the training set's rock sizes.
    anchor_sizes: list[list[int]] | Literal["auto"] | None = None
    #: FPN width of rockdet's own small-rock archs (torchvision's detectors are fixed at 256).
    fpn_channels: int = Field(256, gt=0)
    trainable_backbone_layers: int | None = Field(None, ge=0)
    #: Detections kept per image; rock fields are dense, torchvision's default of 100 is low.
    detections_per_image: int = Field(300, ge=1)
    #: Further keyword arguments of the torchvision detector class (FasterRCNN, RetinaNet, FCOS,
    #: MaskRCNN), e.g. rpn_post_nms_top_n_test or box_batch_size_per_image.
    options: dict[str, Any] = Field(default_factory=dict)
    #: Weight of background samples in the RPN and box-head classification losses (two-stage
    #: archs); below 1 an unlabelled rock taught as background pulls less. 1 = torchvision's loss.
    background_loss_weight: float = Field(1.0, gt=0.0, le=1.0)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        if arch not in ARCHS:
            raise ValueError(f"unknown arch '{arch}'{did_you_mean(arch, ARCHS)}; choose one of {list(ARCHS)}")
        return arch

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.fpn_channels != 256 and self.arch not in SMALL_ROCK_ARCHS:
            raise KeyProblem("fpn_channels", f"only {list(SMALL_ROCK_ARCHS)} take another FPN width than 256")
        if self.max_size < self.min_size:
            raise KeyProblem("max_size", f"must be at least min_size ({self.min_size}), got {self.max_size}")
        if self.background_loss_weight != 1.0 and not is_two_stage(self.arch):
            raise KeyProblem("background_loss_weight", f"{self.arch} has no sampled background loss "
                             f"to weight; use a two-stage arch")
        return self

    @property
    def has_masks(self) -> bool:
        return has_masks(self.arch)


class OptimizerConfig(Settings):
    name: Literal["sgd", "adamw", "adam"] = "adamw"
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0)


class SchedulerConfig(Settings):
    name: Literal["none", "cosine", "step"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    #: For name=step: multiply the rate by gamma every step_size epochs.
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0.0)

    @model_validator(mode="after")
    def _warmup_is_used(self) -> SchedulerConfig:
        if self.name == "step" and self.warmup_steps:
            raise KeyProblem("warmup_steps", "a warmup needs name cosine or none; with name step it "
                             "would be ignored")
        return self


class EarlyStoppingConfig(Settings):
    enabled: bool = True
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class EvalConfig(Settings):
    #: Score above which a detection counts for precision/recall at the operating point.
    score_threshold: float = Field(0.5, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0)


class RunConfig(Settings):
    out_dir: ConfigPath = Path("runs")
    name: str = "rockdet"
    #: Explicit run folder; default is out_dir/name_TIMESTAMP.
    dir: ConfigPath | None = None
    #: Where metrics also go: metrics.csv is always written (the curves and summary use it);
    #: tensorboard (run folder tensorboard/) and mlflow (run folder mlruns/) are optional extras.
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"


class TrainConfig(Settings):
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    #: Passed to pytorch_lightning.Trainer as keyword arguments (devices, strategy, precision, ...).
    trainer: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trainer")
    @classmethod
    def _trainer_arguments(cls, trainer: dict[str, Any]) -> dict[str, Any]:
        import pytorch_lightning

        parameters = set(inspect.signature(pytorch_lightning.Trainer.__init__).parameters) - {"self"}
        for key in trainer:
            if key not in parameters:
                raise ValueError(f"unknown key 'trainer.{key}'{did_you_mean(key, parameters)} "
                                 f"(trainer takes pytorch_lightning.Trainer's arguments)")
        return trainer

    @model_validator(mode="after")
    def _sections_agree(self) -> TrainConfig:
        if self.data.ignore_classes and not is_two_stage(self.model.arch):
            raise KeyProblem("data.ignore_classes", f"ignore regions need a two-stage arch "
                             f"(fasterrcnn_*, maskrcnn_*), not {self.model.arch}")
        if self.data.augment not in PRESETS:
            raise KeyProblem("data.augment", f"unknown preset '{self.data.augment}'"
                             f"{did_you_mean(self.data.augment, PRESETS)}; choose one of {sorted(PRESETS)}")
        return self


#: Top-level key naming the config a file builds on (a path relative to the file).
EXTENDS = "extends"


def load_config(path: Path | str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a training config YAML (and the configs it ``extends``), apply ``key.sub=value``
    overrides, validate, return it."""
    path = Path(path)
    config = validate_mapping(TrainConfig, read_config_tree(path), source=path, base_dir=path.parent)
    if not overrides:
        return config
    # The file's values are checked (and its paths resolved) above; overrides go over what it set.
    merged = set_values(TrainConfig, as_plain_data(config, only_set=True), overrides)
    return validate_mapping(TrainConfig, merged, source=f"{path} with overrides", base_dir=Path.cwd())


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
    base = validate_mapping(TrainConfig, base_raw, source=base_path, base_dir=base_path.parent)
    return merge_mappings(as_plain_data(base, only_set=True), raw)


__all__ = ["AUTO", "ARCHS", "DataConfig", "SplitConfig", "ModelConfig", "TrainConfig", "load_config",
           "ConfigPath"]
