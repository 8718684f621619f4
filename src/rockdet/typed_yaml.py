"""Typed YAML on pydantic: settings models whose every error names the file and the key.

Generic machinery under rockdet's training config and camera files. Models derive from
``Settings``: unknown keys are refused with the nearest valid key suggested, values are checked
strictly against the type hints (finite numbers only; "5" is not an integer), ``ConfigPath``
fields resolve against the YAML file's folder, and dotted command-line overrides are checked
against the same models. pydantic's errors are turned into one line a user can act on.
"""

from __future__ import annotations

import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, ValidationError, ValidationInfo

from rockdet.errors import ConfigError, did_you_mean, exception_reason

#: Validation context key: the folder relative paths resolve against.
BASE_DIR = "base_dir"


class Settings(BaseModel):
    """Base of every settings model: strict, closed, validated on assignment too."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True)


class KeyProblem(ValueError):
    """A cross-field check's finding about ``key`` (relative to the model that checks it)."""

    def __init__(self, key: str, detail: str):
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, detail


def _resolve_against_base_dir(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    base_dir = (info.context or {}).get(BASE_DIR)
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


#: A path field: relative values resolve against the folder of the YAML file that gave them
#: (the working directory for command-line overrides).
ConfigPath = Annotated[Path, Strict(False), AfterValidator(_resolve_against_base_dir)]


def read_yaml_mapping(path: Path | str, what: str) -> dict:
    """The top-level mapping of a YAML file, or one ConfigError line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); "
                          f"save the file as UTF-8") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}: "
                          f"{exception_reason(exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    check_expansion(raw, path)
    return raw


#: Values a config may hold once YAML aliases are expanded: real configs hold a few hundred; an
#: alias "bomb" (each level repeating the one before) expands into billions.
MAX_CONFIG_VALUES = 100_000


def check_expansion(raw: Any, source: Path | str) -> None:
    """Refuse YAML whose aliases make it refer to itself, or expand past MAX_CONFIG_VALUES
    (counted once per shared node, so the count itself stays cheap)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (dict, list)):
            return 1
        if id(value) in sizes:
            return sizes[id(value)]
        if id(value) in open_nodes:
            raise ConfigError(f"{source}: a YAML alias refers to the value that contains it; "
                              f"a config cannot contain itself")
        open_nodes.add(id(value))
        children = list(value.values()) if isinstance(value, dict) else value
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(id(value))
        if total > MAX_CONFIG_VALUES:
            raise ConfigError(f"{source}: expands to more than {MAX_CONFIG_VALUES:,} values through "
                              f"YAML aliases (&name / *name); a config is far smaller")
        sizes[id(value)] = total
        return total

    size(raw)


def merge_mappings(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        merged[key] = merge_mappings(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


def validate_mapping(cls: type[Settings], raw: Any, source: Path | str, base_dir: Path):
    """``cls`` from a mapping, or one ConfigError line naming ``source`` and the key."""
    try:
        return cls.model_validate(raw, context={BASE_DIR: base_dir})
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, cls, source)) from None


def set_values(cls: type[Settings], raw: dict, overrides: list[str]) -> dict:
    """``raw`` with each ``a.b.c=value`` override (value parsed as YAML) set in it; unknown keys
    are refused with the nearest valid key, before any value is looked at."""
    merged = raw
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}': expected KEY=VALUE, e.g. trainer.max_epochs=5")
        dotted, text = override.split("=", 1)
        keys = dotted.strip().split(".")
        _check_key_path(cls, keys, override)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        check_expansion(value, f"override '{dotted}'")
        merged = _set_override(merged, keys, value, override)
    return merged


def _set_override(mapping: dict, keys: list[str], value: Any, override: str, prefix: str = "") -> dict:
    """``mapping`` with ``value`` set at the dotted ``keys``. A list on the way (a split's list of
    sources) takes an item's index (``data.train.1.weight=2``); any other key below a list would
    silently replace the whole list, so it is refused."""
    key, rest = keys[0], keys[1:]
    where = f"{prefix}{key}"
    if not rest:
        return merge_mappings(mapping, {key: value})
    current = mapping.get(key)
    if isinstance(current, list):
        index, below = rest[0], rest[1:]
        if not index.isdigit() or int(index) >= len(current):
            example = ".".join(below if index.isdigit() else rest)
            raise ConfigError(f"override '{override}': {where} is a list of {len(current)}; name an item by its "
                              f"index ({where}.0.{example}=...) or give the whole list ({where}=[...])")
        items = list(current)
        item = items[int(index)]
        items[int(index)] = (_set_override(item if isinstance(item, dict) else {}, below, value, override,
                                           f"{where}.{index}.") if below else value)
        return {**mapping, key: items}
    if rest[0].isdigit():
        raise ConfigError(f"override '{override}': {where} is not a list")
    nested = current if isinstance(current, dict) else {}
    return {**mapping, key: _set_override(nested, rest, value, override, f"{where}.")}


def as_plain_data(settings: Settings, only_set: bool = False) -> dict:
    """YAML-safe dict of a settings model (paths as strings), for saving and checkpoints; with
    ``only_set`` just the values a file or override gave, with paths kept as Path objects."""
    if only_set:
        return settings.model_dump(exclude_unset=True)
    return settings.model_dump(mode="json")


def check_finite(value: Any, key: str = "") -> None:
    """Refuse infinity and NaN anywhere in a free mapping's values (typed fields refuse them
    through ``allow_inf_nan``; a mapping of Any would let ``.inf`` through, to be saved as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise KeyProblem(key, f"{value} is not a finite number")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        check_finite(item, f"{key}[{name}]" if isinstance(name, int) else f"{key}.{name}" if key else str(name))


def first_problem(exc: ValidationError, cls: type[BaseModel]) -> KeyProblem:
    """pydantic's first problem as (key, detail): for checks of a free mapping's values, and
    settings made from keywords, where the caller names the key its own way."""
    first = exc.errors()[0]
    loc = [str(part) for part in _key_path(first["loc"])]
    problem = first.get("ctx", {}).get("error")
    if isinstance(problem, KeyProblem):  # a cross-field check names its own key
        return KeyProblem(".".join(loc + [problem.key]), problem.detail)
    text = describe_validation_error(exc, cls, "")[2:]
    key = loc[0] if loc else ""
    detail = text.split(": ", 1)[1] if key and text.startswith(key) and ": " in text else text
    return KeyProblem(key, detail)  # the key alone, without pydantic's union tags


def describe_validation_error(exc: ValidationError, cls: type[Settings], source: Path | str) -> str:
    """One line for the first problem pydantic found (alternatives of a union joined)."""
    errors = exc.errors()
    first = errors[0]
    loc = _key_path(first["loc"])
    key = _dotted(loc)
    got = first.get("input")
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = ".".join(str(part) for part in loc[:-1])
        return (f"{source}: unknown key '{key}'"
                f"{did_you_mean(str(loc[-1]), _field_names(cls, loc[:-1]), prefix=parent)}")
    if kind in ("model_type", "dict_type") and len(errors) == 1:
        return f"{source}: '{key or 'top level'}' must be a mapping, got {type(got).__name__}"
    if kind == "value_error":
        problem = first["ctx"]["error"]
        if isinstance(problem, KeyProblem):
            return f"{source}: {_dotted(loc + [problem.key])}: {problem.detail}"
        return f"{source}: {key + ': ' if key else ''}{problem}"
    alternatives = [e for e in errors if _key_path(e["loc"]) == loc]
    if kind == "literal_error" and len(alternatives) == 1:
        options = re.findall(r"'([^']*)'", first["ctx"]["expected"])
        return (f"{source}: {key}: '{got}' is not one of {options}"
                f"{did_you_mean(str(got), options)}")
    bounds = [e for e in alternatives if e["type"] in _BOUNDS]
    if bounds:
        kind = bounds[0]["type"]
        return f"{source}: {key}: must be {_BOUNDS[kind]} {bounds[0]['ctx'][_BOUND_KEYS[kind]]}, got {got!r}"
    expected = " or ".join(dict.fromkeys(_expected(e) for e in alternatives))
    return f"{source}: {key}: expected {expected}, got {got!r}"


_EXPECTED = {
    "float_type": "a number", "float_parsing": "a number", "int_type": "an integer",
    "int_parsing": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "path_type": "a path",
    "finite_number": "a finite number", "none_required": "null",
}
_BOUNDS = {"greater_than": "greater than", "greater_than_equal": "at least",
           "less_than": "less than", "less_than_equal": "at most"}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _expected(error: dict) -> str:
    if error["type"] == "literal_error":
        return error["ctx"]["expected"]
    return _EXPECTED.get(error["type"], error["msg"].lower())


def _key_path(loc: tuple) -> list:
    """pydantic's location without the tags it adds for union members (``list[int]``, or the
    model's class name for ``SplitConfig | list[SplitConfig]``)."""
    models = _model_names(Settings)
    return [part for part in loc if isinstance(part, int) or (str(part).isidentifier() and part not in models)]


def _model_names(cls: type) -> set[str]:
    names = set()
    for sub in cls.__subclasses__():
        names |= {sub.__name__} | _model_names(sub)
    return names


def _dotted(parts: list) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (directly or as ``Model | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if isinstance(option, type) and issubclass(option, BaseModel):
                return option
    return None


def _field_names(cls: type[BaseModel], parts: list) -> list[str]:
    model = cls
    for part in parts:
        if isinstance(part, int) or model is None or part not in model.model_fields:
            return []
        model = _model_in(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def _check_key_path(cls: type[BaseModel], keys: list[str], override: str) -> None:
    model: type[BaseModel] | None = cls
    for depth, key in enumerate(keys):
        if model is None:  # inside a free mapping (trainer, model.options): any key goes
            return
        if key.isdigit():  # an item of a list (a split's sources): checked where it is set
            continue
        if key not in model.model_fields:
            prefix = ".".join(keys[:depth])
            raise ConfigError(f"override '{override}': unknown key '{'.'.join(keys[:depth + 1])}'"
                              f"{did_you_mean(key, model.model_fields, prefix=prefix)}")
        model = _model_in(model.model_fields[key].annotation)
