"""Progress a person can follow: a bar redrawn in place on a terminal, plain lines in a log file.

Under SLURM or ``nohup`` output goes to a file, where a redrawn bar shows one stale percentage for
the length of an epoch. There a line is printed every tenth of the work or every minute, whichever
comes first, with the rate, the time left and the latest figures (losses, rocks found).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import pytorch_lightning as pl

from rockdet.console import interactive

#: In a log file: a line each time another 1/PARTS of the work is done...
PARTS = 10
#: ...or when this many seconds passed without one...
LINE_EVERY_SECONDS = 60.0
#: ...but never two lines closer than this (a fast loop would otherwise print ten lines at once).
LINE_AT_MOST_EVERY_SECONDS = 5.0


def duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``: short enough for a progress line."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "sh", "ch", "x")) else "s")


def _value(value: object) -> str:
    if hasattr(value, "item"):  # a tensor kept as it was logged: read only when a line is printed
        value = value.item()
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print(line: str, stream: TextIO | None) -> None:
    """Progress is never worth a crash: a closed or full log loses the line, not the run."""
    try:
        print(line, file=stream or sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


class ProgressLines:
    """Plain progress lines for a log file: ``epoch 3: 500/1000 steps (50%), 1.2 s/step, ETA 10m00s,
    10m00s so far, loss 0.31``. The last line (all done) is always printed."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, total, unit
        self.stream, self.clock = stream, clock
        self.done, self.fields = 0, {}
        self.started = self.last_line = clock()
        self.next_part = 1  # the next 1/PARTS mark, counted in whole parts (no float drift)
        self.closed = False
        self.printed_done = -1

    def update(self, n: int = 1, **fields: object) -> None:
        self.done += n
        self.fields.update(fields)
        now = self.clock()
        finished = self.total is not None and self.done >= self.total
        reached_mark = bool(self.total) and self.done * PARTS >= self.next_part * self.total
        if finished or (now - self.last_line >= LINE_AT_MOST_EVERY_SECONDS
                        and (reached_mark or now - self.last_line >= LINE_EVERY_SECONDS)):
            self._print(now)

    def set_postfix(self, **fields: object) -> None:
        self.fields.update(fields)

    def close(self) -> None:
        if not self.closed and self.done != self.printed_done and self.done:
            self._print(self.clock())
        self.closed = True

    def line(self, now: float) -> str:
        elapsed = now - self.started
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        parts = [f"{count} {plural(self.unit)}"]
        if self.total:
            parts[0] += f" ({100 * self.done // self.total}%)"
        if self.done and elapsed > 0:
            per_unit = elapsed / self.done
            parts.append(f"{per_unit:.3g} s/{self.unit}" if per_unit >= 1 else f"{1 / per_unit:.3g} {plural(self.unit)}/s")
            if self.total and self.done < self.total:
                parts.append(f"ETA {duration(per_unit * (self.total - self.done))}")
        parts.append(f"{duration(elapsed)} so far")
        parts += [f"{name} {_value(value)}" for name, value in self.fields.items()]
        return f"{self.label}: " + ", ".join(parts)

    def _print(self, now: float) -> None:
        _print(self.line(now), self.stream)
        self.last_line, self.printed_done = now, self.done
        if self.total:
            while self.next_part * self.total <= self.done * PARTS:
                self.next_part += 1


class ProgressBar:
    """tqdm on a terminal, with ProgressLines' interface."""

    def __init__(self, label: str, total: int | None, unit: str, disable: bool = False):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit=unit, desc=label, dynamic_ncols=True, disable=disable)

    def update(self, n: int = 1, **fields: object) -> None:
        if fields:
            self.bar.set_postfix(fields, refresh=False)
        self.bar.update(n)

    def set_postfix(self, **fields: object) -> None:
        self.bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        self.bar.close()


def progress(label: str, total: int | None, unit: str) -> ProgressLines | ProgressBar:
    """A bar on a terminal, plain lines when output goes to a file."""
    return ProgressBar(label, total, unit) if interactive() else ProgressLines(label, total, unit)


def _loss_of(outputs: object) -> object | None:
    """The step's loss, detached but not read (reading a GPU tensor every step would sync it)."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if hasattr(loss, "detach") and getattr(loss, "numel", lambda: 0)() == 1:
        return loss.detach()
    return loss if isinstance(loss, float) else None


class TrainingProgressLines(pl.Callback):
    """Lightning's progress in a log file: a line every tenth of an epoch or every minute, with the
    step rate, the time left and the loss; the same for validation; then the validation figures."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.stream, self.clock = stream, clock
        self.lines: ProgressLines | None = None

    def _start(self, label: str, total: object, unit: str) -> None:
        known = total if isinstance(total, int) and total < 2**62 else None  # inf: an iterable dataset
        self.lines = ProgressLines(label, known, unit, self.stream, self.clock)

    def _stop(self) -> None:
        if self.lines is not None:
            self.lines.close()
            self.lines = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._start(f"epoch {trainer.current_epoch}", trainer.num_training_batches, "step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.lines is not None and self.lines.label.startswith("epoch"):
            loss = _loss_of(outputs)
            self.lines.update(1, **({"loss": loss} if loss is not None else {}))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._paused, self.lines = self.lines, None  # validation inside a training epoch
            label = "sanity check" if trainer.sanity_checking else f"validation after epoch {trainer.current_epoch}"
            batches = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
            self._start(label, sum(batches), "batch")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.lines is not None:
            self.lines.update(1)

    def on_validation_end(self, trainer, pl_module) -> None:
        # After the module's own epoch-end hook: its validation figures are logged by now.
        if not trainer.is_global_zero:
            return
        self._stop()
        if not trainer.sanity_checking:
            figures = {name: float(value) for name, value in trainer.callback_metrics.items()
                       if name.startswith("val_") and getattr(value, "numel", lambda: 1)() == 1
                       and float(value) >= 0}  # COCO's -1: no rock of that size to score
            text = ", ".join(f"{name} {value:.3f}" for name, value in sorted(figures.items())) or "no figures"
            _print(f"validation after epoch {trainer.current_epoch}: {text}", self.stream)
        self.lines = getattr(self, "_paused", None)
        self._paused = None
