"""Typed YAML: mappings to dataclasses with every error naming the file and the key.

Generic machinery under rockdet's config and camera files: unknown keys are refused with the
nearest valid key suggested, values are checked against the dataclass's type hints (finite
numbers only), relative paths resolve against the YAML file's folder, and dotted command-line
overrides set typed values.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from rockdet.errors import ConfigError, did_you_mean


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


def merge_mappings(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        merged[key] = merge_mappings(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


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
