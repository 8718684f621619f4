"""What rockdet prints: log levels, known-harmless library chatter, terminal or log file.

Set up once by the command-line entry point only, so code that imports rockdet as a library keeps
its own logging and warning settings.
"""

from __future__ import annotations

import logging
import sys
import warnings

#: Lightning's loggers print through their own handlers; rockdet's format and level apply instead.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning_fabric")
#: Library messages that say nothing to a rockdet user (each checked against the versions in use).
HARMLESS_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's pytree use under torch 2.14
    r"Couldn't infer the batch indices fetched from your dataloader.*",  # predict feeds tile batches
    r".*`torch.jit.load` is deprecated.*",  # TorchScript export is offered, and marked deprecated
    r"RCNN always returns a \(Losses, Detections\) tuple in scripting.*",
)
HARMLESS_LOG_TEXT = ("litlogger", "LitLogger")


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in HARMLESS_LOG_TEXT)


def configure_console(quiet: bool = False, verbose: bool = False) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(level)
        for handler in logger.handlers:
            handler.addFilter(_DropHarmless())
        logger.addFilter(_DropHarmless())
    if not verbose:
        for pattern in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)


def interactive() -> bool:
    """Whether progress goes to a terminal (redraw freely) or to a log file (redraw rarely)."""
    return sys.stderr.isatty()
