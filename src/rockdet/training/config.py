"""Typed training configuration: pydantic models loaded from YAML, validated at load time.

Every error names the file and the key. Relative paths inside a YAML file are resolved against
the folder of that file; relative paths given as command-line overrides against the working
directory, as a shell user expects. A file may ``extends:`` a base file.
"""

from __future__ import annotations

import re
import typing
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from rockdet.data.settings import DataConfig, SplitConfig
from rockdet.data.transforms import PRESETS
from rockdet.errors import ConfigError, did_you_mean
from rockdet.models.archs import ARCHS, SMALL_ROCK_ARCHS, has_masks, is_two_stage
from rockdet.models.info import AUTO, PROVISIONAL_THRESHOLD
from rockdet.typed_yaml import (
    ConfigPath,
    KeyProblem,
    Settings,
    as_plain_data,
    check_finite,
    first_problem,
    merge_mappings,
    read_yaml_mapping,
    set_values,
    validate_mapping,
)


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

    @field_validator("options")
    @classmethod
    def _finite_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        check_finite(options)
        return options

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
    #: The operating point: the score above which a detection is a rock in a catalog; ``auto``
    #: chooses it on the validation split at the end of training (rockdet.evaluation.operating_point).
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] | Literal["auto"] = 0.5
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0)
    #: ``auto`` on sparse labels only: the highest threshold that still finds this share of the
    #: labelled rocks (dense sources, ``dense: true``, choose by the best F1 instead).
    auto_recall_target: float = Field(0.6, gt=0.0, le=1.0)

    @property
    def provisional_threshold(self) -> float:
        """The threshold validation reports during training, before ``auto`` has chosen."""
        return PROVISIONAL_THRESHOLD if self.score_threshold == AUTO else float(self.score_threshold)




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
        arguments = trainer_arguments_model()
        for key in trainer:
            if key not in arguments.model_fields:
                raise ValueError(f"unknown key 'trainer.{key}'{did_you_mean(key, arguments.model_fields)} "
                                 f"(trainer takes pytorch_lightning.Trainer's arguments)")
        for reserved in ("callbacks", "logger", "default_root_dir"):
            if reserved in trainer:
                raise KeyProblem(reserved, "is set by rockdet; remove it from the config")
        try:  # types now, so a wrong one fails before the run folder is made, not mid-run
            arguments.model_validate(trainer)
        except ValidationError as exc:
            raise first_problem(exc, arguments) from None
        _check_trainer_names(trainer)
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


#: Bounds Lightning checks only once training runs (-1: no limit).
_TRAINER_BOUNDS = {"max_epochs": -1, "min_epochs": 0, "max_steps": -1, "min_steps": 0, "num_nodes": 1,
                   "accumulate_grad_batches": 1, "check_val_every_n_epoch": 1, "log_every_n_steps": 0,
                   "reload_dataloaders_every_n_epochs": 0}


@cache
def trainer_arguments_model() -> type[Settings]:
    """pytorch_lightning.Trainer's keyword arguments as a strict model, from its type hints (plus
    the bounds Lightning checks late); an argument whose hint pydantic cannot check takes anything."""
    import pytorch_lightning

    hints = typing.get_type_hints(pytorch_lightning.Trainer.__init__)
    fields: dict[str, Any] = {}
    for name, hint in hints.items():
        if name == "return":
            continue
        if name in _TRAINER_BOUNDS:
            least = Annotated[int, Field(ge=_TRAINER_BOUNDS[name])]
            hint = least | None if type(None) in typing.get_args(hint) else least
        fields[name] = (hint, None)
    config = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True, extra="forbid")
    try:
        return create_model("trainer", __config__=config, **fields)
    except Exception:  # a Lightning whose hints pydantic cannot read: check names only
        return create_model("trainer", __config__=ConfigDict(extra="forbid"),
                            **{name: (Any, None) for name in fields})


#: trainer.devices as text: "auto", "-1" (all) or GPU ids such as "0,1".
_DEVICES_TEXT = re.compile(r"\s*(auto|-1|\d+(\s*,\s*\d+)*\s*,?)\s*")


def _check_trainer_names(trainer: dict[str, Any]) -> None:
    """The names Lightning takes for accelerator, strategy and devices (its own registries), which
    it checks only when the trainer is built, after the run folder is made."""
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    known = {"accelerator": {"auto", "gpu", *AcceleratorRegistry.available_accelerators()},
             "strategy": {"auto", *StrategyRegistry.available_strategies()}}
    for key, names in known.items():
        if isinstance(trainer.get(key), str) and trainer[key] not in names:
            raise KeyProblem(key, f"'{trainer[key]}' is not one of {sorted(names)}"
                             f"{did_you_mean(trainer[key], names)}")
    devices = trainer.get("devices")
    if isinstance(devices, str) and not _DEVICES_TEXT.fullmatch(devices):
        raise KeyProblem("devices", f"expected a count, a list of GPU ids, 'auto' or ids like '0,1', got {devices!r}")


#: Top-level key naming the config a file builds on (a path relative to the file).
EXTENDS = "extends"
#: Longest chain of ``extends:`` files: a real hierarchy is two or three deep.
MAX_EXTENDS_DEPTH = 16


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
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: {EXTENDS}: expected a file name, got {base_name!r}")
    base_path = (path.parent / base_name).resolve()
    trail = chain + (path.resolve(),)
    if base_path in trail:
        circle = " -> ".join(p.name for p in trail[trail.index(base_path):] + (base_path,))
        raise ConfigError(f"{path}: {EXTENDS}: {base_name} extends this file again (a circle: {circle})")
    if len(trail) >= MAX_EXTENDS_DEPTH:
        raise ConfigError(f"{path}: {EXTENDS}: a chain of more than {MAX_EXTENDS_DEPTH} files, starting at "
                          f"{trail[0]}; flatten it (real hierarchies are two or three deep)")
    if base_path.is_dir():
        raise ConfigError(f"{path}: {EXTENDS}: {base_name} is a folder, not a config file")
    base_raw = read_config_tree(base_path, trail)
    base = validate_mapping(TrainConfig, base_raw, source=base_path, base_dir=base_path.parent)
    return merge_mappings(as_plain_data(base, only_set=True), raw)


__all__ = ["AUTO", "ARCHS", "DataConfig", "SplitConfig", "ModelConfig", "TrainConfig", "load_config",
           "ConfigPath"]
