"""Typed configuration loaded from YAML, validated at load time.

Every error names the file and the key. Relative paths inside a YAML file are resolved against
the folder of that file; relative paths given as command-line overrides against the working
directory, as a shell user expects.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rockdet.errors import ConfigError, did_you_mean
from rockdet.models.archs import ARCHS, SMALL_ROCK_ARCHS, has_masks, is_two_stage

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
class SplitConfig:
    #: COCO JSON file, YOLO data YAML, or (format masks) the images folder.
    annotations: Path | None = None
    #: "synthetic": terrain scenes generated on the fly (pretraining), no files.
    format: Literal["coco", "yolo", "masks", "synthetic"] = "coco"
    #: Image folder; COCO defaults to the annotation file's folder.
    images: Path | None = None
    #: Mask folder for format masks.
    masks: Path | None = None
    mask_mode: Literal["instance", "binary"] = "instance"
    #: YOLO split name inside the data YAML.
    split: str = "train"
    #: format synthetic: scenes per epoch (each epoch draws new ones; validation repeats one set)
    #: and their side in pixels.
    scenes: int = 2000
    size: int = 432


@dataclass
class DataConfig:
    train: SplitConfig | None = None
    val: SplitConfig | None = None
    rock_classes: list[str] = field(default_factory=lambda: ["rock", "boulder"])
    #: Categories whose boxes mark ground where rocks go unlabelled (e.g. "rocky region", or a
    #: category of hand-drawn ignore boxes): training samples no background there. Two-stage
    #: archs (Faster/Mask R-CNN) only; COCO annotations.
    ignore_classes: list[str] = field(default_factory=list)
    #: Train only on images with at least one labelled rock. With sparse labels an image without
    #: a single box rarely lacks rocks, and teaching all of it as background suppresses them.
    skip_unlabelled_images: bool = False
    augment: str = "terrain_default"
    #: Random crop size in pixels (no rescaling, so small rocks keep their size); None: no crop.
    crop_size: int | None = None
    #: Boxes keeping less than this fraction of their area after a crop are dropped.
    min_visibility: float = 0.3
    batch_size: int = 4
    num_workers: int = 0


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


def read_yaml_mapping(path: Path | str, what: str) -> dict:
    """The top-level mapping of a YAML file, or one ConfigError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return raw


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
    return _merge(base, raw)


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


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
    from rockdet.data.transforms import PRESETS

    if config.data.augment not in PRESETS:
        raise ConfigError(f"{where}data.augment: unknown preset '{config.data.augment}'"
                          f"{did_you_mean(config.data.augment, PRESETS)}; choose one of {sorted(PRESETS)}")


def apply_override(config: Any, override: str, source: Path | str) -> None:
    """Set one ``a.b.c=value`` override (value parsed as YAML) on a config object."""
    if "=" not in override:
        raise ConfigError(f"override '{override}': expected KEY=VALUE, e.g. trainer.max_epochs=5")
    dotted, text = override.split("=", 1)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    keys = dotted.strip().split(".")
    target = config
    for depth, key in enumerate(keys[:-1]):
        target = _child(target, key, keys[: depth + 1], source)
        if target is None:
            raise ConfigError(f"override '{override}': '{'.'.join(keys[:depth + 1])}' is not set "
                              f"in {source}; set the whole section there")
    last = keys[-1]
    if isinstance(target, dict):
        target[last] = value
        return
    fields = {f.name: f for f in dataclasses.fields(target)}
    if last not in fields:
        raise ConfigError(f"override '{override}': unknown key '{dotted}'"
                          f"{did_you_mean(last, fields, prefix='.'.join(keys[:-1]))}")
    hint = typing.get_type_hints(type(target))[last]
    setattr(target, last, _convert(value, hint, dotted, "the command line", Path.cwd()))


def build_dataclass(cls: type, raw: dict, source: Path | str, base_dir: Path, prefix: str = ""):
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with a suggestion."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping, "
                          f"got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'"
                              f"{did_you_mean(str(key), names, prefix=prefix.rstrip('.'))}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}", source, base_dir)
    return cls(**kwargs)


def to_dict(config: Any) -> Any:
    """Plain YAML-safe dict of a config (paths as strings), for saving and checkpoints."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def _convert(value: Any, hint: Any, key: str, source: Path | str, base_dir: Path) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for option in inner[1:]:
            if typing.get_origin(option) is Literal and value in typing.get_args(option):
                return value
        return _convert(value, inner[0], key, source, base_dir)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, source, base_dir, prefix=f"{key}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: '{value}' is not one of {list(args)}"
                              f"{did_you_mean(str(value), [str(a) for a in args])}")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{source}: {key}: expected a path, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base_dir / path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]", source, base_dir) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every range check (nan <= 0 is False)
            raise ConfigError(f"{source}: {key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return str(value)
    return value


def _child(target: Any, key: str, keys: list[str], source: Path | str) -> Any:
    if isinstance(target, dict):
        return target.setdefault(key, {})
    names = {f.name for f in dataclasses.fields(target)}
    if key not in names:
        raise ConfigError(f"override: unknown key '{'.'.join(keys)}'"
                          f"{did_you_mean(key, names, prefix='.'.join(keys[:-1]))}")
    return getattr(target, key)
