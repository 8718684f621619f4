"""Model cost per tile: as trained vs inference form (batch norms folded, channels-last), in
batches of 1, 4 and 8, interleaved over rounds on the same terrain tiles; then where the time of
the inference form goes (torch profiler, by operator family).

    python scripts/benchmark_tile_batch.py --checkpoint demo_out/run/checkpoints/best.ckpt
"""

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from torch.profiler import profile

from rockdet.models import load_model, to_inference_form
from rockdet.predict.settings import PredictSettings
from rockdet.predict.tiling import cut_tile, plan_windows
from rockdet.synthetic.scenes import SceneSpec, generate_scene

BATCH_SIZES = (1, 4, 8)
#: Operator families of a two-stage detector's CPU time.
FAMILIES = {"convolutions": ("conv",), "box head (linear)": ("addmm", "linear", "mm"),
            "RoIAlign": ("roi_align",), "NMS": ("nms",)}


def terrain_tiles(count: int, tile: int) -> list[torch.Tensor]:
    scene = generate_scene(np.random.default_rng([7, 0]), SceneSpec(width=2352, height=1728, empty_fraction=0.0))
    settings = PredictSettings(tile=tile, overlap=0.2)
    windows = plan_windows(scene.image.shape[0], scene.image.shape[1], settings, tile)
    return [cut_tile(scene.image, window, tile) for window in windows[:count]]


def run(model, tiles, size: int, device: str) -> float:
    started = time.perf_counter()
    for start in range(0, len(tiles), size):
        model(tiles[start:start + size])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def breakdown(model, tiles, size: int) -> dict[str, float]:
    """Milliseconds per tile in each operator family (self time, CPU)."""
    with profile() as profiler:
        run(model, tiles, size, "cpu")
    totals = dict.fromkeys([*FAMILIES, "other"], 0.0)
    for event in profiler.key_averages():
        family = next((name for name, keys in FAMILIES.items()
                       if any(key in event.key.lower() for key in keys)), "other")
        totals[family] += event.self_cpu_time_total / 1000 / len(tiles)
    return {name: round(value, 1) for name, value in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--tiles", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    options = parser.parse_args()
    trained, _ = load_model(options.checkpoint)
    fast = copy.deepcopy(trained)
    form = to_inference_form(fast)
    models = {"as trained": trained.to(options.device), "inference form": fast.to(options.device)}
    tiles = [t.to(options.device) for t in terrain_tiles(options.tiles, options.tile)]
    times = {(name, size): [] for name in models for size in BATCH_SIZES}
    with torch.inference_mode():
        for model in models.values():
            model(tiles[:2])  # warm-up
        for _ in range(options.rounds):
            for name, size in times:
                times[name, size].append(run(models[name], tiles, size, options.device))
        print(f"{options.device}, {torch.get_num_threads()} threads, {len(tiles)} tiles of {options.tile} px; "
              f"inference form: {form.describe()}")
        for size in BATCH_SIZES:
            slow, quick = (statistics.median(times[name, size]) * 1000 / len(tiles) for name in models)
            print(f"batch {size}: as trained {slow:.1f} ms/tile, inference form {quick:.1f} ms/tile, "
                  f"speed-up {slow / quick:.2f}x")
        if options.device == "cpu":
            print("inference form, batch 4, ms per tile by operator family:", breakdown(fast, tiles, 4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
