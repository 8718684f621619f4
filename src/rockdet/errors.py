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


#: The longest reason an exception gives in one line (a log line, a catalog note, a failure).
MAX_REASON_CHARS = 200


def exception_reason(exc: BaseException, with_type: bool = False, limit: int | None = MAX_REASON_CHARS) -> str:
    """An exception as one short line: the first non-empty line of its message (its type when
    it says nothing), prefixed with its type when ``with_type``, cut to ``limit`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    name = type(exc).__name__
    text = name if not lines else f"{name}: {lines[0]}" if with_type else lines[0]
    return text[:limit]


def failure_reason(exc: BaseException) -> str:
    """One line for an image's failure: a rockdet error's own reason (without the path it
    starts with), else the exception's type and reason."""
    if isinstance(exc, RockdetError):
        return exception_reason(exc, limit=None).split(": ", 1)[-1][:MAX_REASON_CHARS]
    return exception_reason(exc, with_type=True)


class SettingsError(RockdetError):
    """A setting given by field name (a Python call) has a bad value; ``key`` names the field so a
    command line can name its own flag instead."""

    def __init__(self, key: str, detail: str, value=None):
        super().__init__(f"{key}: {detail}")
        self.key, self.detail, self.value = key, detail, value
