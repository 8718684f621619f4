"""Errors that reach the user as one clear line naming the file and the problem."""

import difflib


class RockdetError(Exception):
    """Base class: the CLI prints these as one line instead of a traceback."""


class ConfigError(RockdetError):
    """A configuration file or override is invalid."""


class DataError(RockdetError):
    """An annotation file or image cannot be used."""


class CheckpointError(RockdetError):
    """A checkpoint or weights file cannot be loaded."""


class ImageReadError(RockdetError):
    """An image file cannot be decoded."""


def did_you_mean(key: str, candidates, prefix: str = "") -> str:
    """' (did you mean 'x'?)' for the closest candidate to a mistyped key, or ''."""
    match = difflib.get_close_matches(str(key), [str(c) for c in candidates], n=1, cutoff=0.5)
    if not match:
        return ""
    return f" (did you mean '{prefix + '.' if prefix else ''}{match[0]}'?)"
