"""Timing shared by the benchmark scripts (run as `python scripts/NAME.py`, so this folder is on
sys.path)."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_seconds(function: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Median wall time of ``function`` over ``repeats`` calls, after one untimed call."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
