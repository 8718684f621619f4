"""CPU work of `rockdet predict` outside the model, per image, step by step (issue 22): what the
pipeline adds to the detector's own time. Run it once per tree to compare two trees:

    PYTHONPATH=TREE/src python scripts/benchmark_pipeline_work.py --image mosaic.png

Steps: read the image (decode and hash), shrink its report thumbnail, cut its tiles, run the
featureless-black check on every tile with --boxes rock boxes of 10-40 px each, and write a catalog
of --rocks rocks as CSV + JSON. Medians of --repeats runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import rockdet
from rockdet.catalog.catalog import Catalog, write_catalog
from rockdet.catalog.rock import Rock
from rockdet.io.images import read_image
from rockdet.predict.featureless import drop_featureless
from rockdet.predict.settings import PredictSettings
from rockdet.predict.tiling import cut_tile, plan_windows
from rockdet.report.overlays import shrink_for_thumbnail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, required=True, help="an image predict would read (PNG, JPEG, ...)")
    parser.add_argument("--tile", type=int, default=432)
    parser.add_argument("--boxes", type=int, default=5, help="rock boxes a tile for the featureless check")
    parser.add_argument("--rocks", type=int, default=133, help="rocks in the catalog written")
    parser.add_argument("--repeats", type=int, default=15)
    options = parser.parse_args()
    settings = PredictSettings(score_threshold=0.1, tile=options.tile, overlap=0.2)
    pixels = read_image(options.image).pixels
    height, width = pixels.shape[:2]
    windows = plan_windows(height, width, settings, options.tile)
    tiles = [cut_tile(pixels, window, options.tile) for window in windows]
    rng = np.random.default_rng(0)
    predictions = []
    for _ in windows:
        corner = rng.random((options.boxes, 2)) * (options.tile - 42)
        size = rng.random((options.boxes, 2)) * 30 + 10
        predictions.append({"boxes": torch.tensor(np.concatenate([corner, corner + size], 1), dtype=torch.float32),
                            "scores": torch.full((options.boxes,), 0.5), "labels": torch.ones(options.boxes, dtype=torch.int64)})
    rocks = tuple(Rock(i + 1, 0.5, float(x), float(y), float(x) + 20, float(y) + 15)
                  for i, (x, y) in enumerate(rng.random((options.rocks, 2)) * [width - 20, height - 15]))
    out = Path(tempfile.mkdtemp())
    steps = {
        "read_image": lambda: read_image(options.image),
        "thumbnail": lambda: shrink_for_thumbnail(pixels),
        f"cut {len(windows)} tiles": lambda: [cut_tile(pixels, window, options.tile) for window in windows],
        f"featureless check, {len(windows)} tiles": lambda: drop_featureless(
            predictions, tiles, windows, settings.sky_level, settings.sky_fraction),
        f"catalog, {options.rocks} rocks": lambda: write_catalog(
            Catalog(str(options.image), width, height, rocks, "0" * 64), lambda fmt: out / f"catalog.{fmt}",
            ("csv", "json")),
    }
    print(f"rockdet from {Path(rockdet.__file__).parent}; {options.image} ({width}x{height})")
    total = 0.0
    for name, step in steps.items():
        step()
        times = []
        for _ in range(options.repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        total += statistics.median(times)
        print(f"| {name} | {statistics.median(times) * 1000:.1f} |")
    print(f"| total | {total * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
