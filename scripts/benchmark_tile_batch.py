"""Tiles per forward pass: the same 16 tiles in batches of 1, 4 and 8, interleaved, 3 rounds.

    python scripts/benchmark_tile_batch.py --checkpoint demo_out/run/checkpoints/best.ckpt
"""

import argparse
import statistics
import time

import torch

from rockdet.models import load_checkpoint_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    options = parser.parse_args()
    model, _ = load_checkpoint_model(options.checkpoint)
    model.to(options.device)
    generator = torch.Generator().manual_seed(0)
    tiles = [torch.rand(3, options.tile, options.tile, generator=generator).to(options.device) for _ in range(16)]
    times = {1: [], 4: [], 8: []}
    with torch.inference_mode():
        model(tiles[:2])  # warm-up
        for _ in range(options.rounds):
            for size in times:
                started = time.perf_counter()
                for start in range(0, len(tiles), size):
                    model(tiles[start:start + size])
                if options.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[size].append(time.perf_counter() - started)
    for size, values in times.items():
        print(f"batch {size}: median {statistics.median(values):.2f} s for 16 tiles ({[round(v, 2) for v in values]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
