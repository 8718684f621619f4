"""Errors that reach the user as one clear line naming the file and the problem."""


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
