"""What the side-by-side benchmarks share (benchmark_score_floor.py, benchmark_flip.py,
benchmark_validation.py): the images they run on, their common options, and the loop that
alternates two ways of doing the same work in one process."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable, Hashable

import torch


def chosen_images(folder: Path, names_file: Path | None, count: int) -> list[Path]:
    """The first ``count`` images of ``folder`` (sorted), only those named in ``names_file`` if given."""
    names = set(names_file.read_text().split()) if names_file else None
    return [p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")
            and (names is None or p.name in names)][:count]


def image_benchmark_parser(description: str, count: int, model_help: str | None = None) -> argparse.ArgumentParser:
    """--model, --images, --list, --count, --repeats and --threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help=model_help)
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--list", type=Path, help="only the images named in this file")
    parser.add_argument("--count", type=int, default=count)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser


def alternate(run: Callable[[Hashable], Any], variants: list[Hashable], repeats: int
              ) -> tuple[dict[Hashable, list[float]], dict[Hashable, Any]]:
    """Each variant once to warm up, then all in turn ``repeats`` times: the seconds of every run,
    and each variant's last result."""
    for variant in variants:
        run(variant)
    times: dict[Hashable, list[float]] = {variant: [] for variant in variants}
    results: dict[Hashable, Any] = {}
    for _ in range(repeats):
        for variant in variants:
            started = time.perf_counter()
            results[variant] = run(variant)
            times[variant].append(time.perf_counter() - started)
    return times, results
