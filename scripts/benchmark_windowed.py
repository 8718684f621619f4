"""Peak memory of `rockdet predict` on a 20000x20000 tiled TIFF: windowed decoding vs whole-image.

    python scripts/benchmark_windowed.py [--side 20000] [--tile 1024]

Writes a zlib-compressed, 256x256-tiled RGB TIFF of terrain-like texture with dark rocks, tile
by tile (the frame never exists whole in this process), then runs `rockdet predict` on it twice in
fresh subprocesses, reading the peak resident set size of each from the kernel: once as predict
does (windowed: only the TIFF tiles under the current tile batch are decoded), once with windowed
decoding switched off (the whole frame decoded first, as for any other image). The detector is a
random-init MobileNetV3-FPN at 256 px with large tiles and a score threshold of 0.99, so the run
takes minutes, not hours, and a random detector's thousands of overlapping boxes do not fill the
merge: memory of decoding and tiling, not detection, is what is measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

TIFF_TILE = 256
#: Runs predict in a child process; windowed decoding optionally switched off.
CHILD = """
import sys
import rockdet.predict.lightning_run as run
if sys.argv[1] == "whole":
    run.is_windowed_tiff = lambda path: False
from rockdet.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def terrain_tiles(side: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(150, 210, (TIFF_TILE, TIFF_TILE, 3), dtype=np.uint8)
    tiles_across = -(-side // TIFF_TILE)
    for _ in range(tiles_across * tiles_across):
        tile = np.roll(base, rng.integers(0, TIFF_TILE), axis=1).copy()
        for x, y in rng.integers(10, TIFF_TILE - 30, size=(3, 2)):
            tile[y:y + 20, x:x + 20] = 40
        yield tile


def write_frame(path: Path, side: int) -> None:
    tifffile.imwrite(path, terrain_tiles(side), shape=(side, side, 3), dtype=np.uint8,
                     tile=(TIFF_TILE, TIFF_TILE), compression="zlib")


def write_checkpoint(path: Path) -> None:
    from rockdet.models import build_detector

    torch.manual_seed(0)
    settings = {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 256, "max_size": 256}
    model = build_detector(**settings)
    torch.save({"hyper_parameters": {"model": settings, "input_size": 256, "evaluation": {"score_threshold": 0.5}},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)


def peak_rss(mode: str, arguments: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, seconds, exit code) of one predict run in a fresh process."""
    started = time.perf_counter()
    code = subprocess.run([sys.executable, "-c", CHILD, mode, *arguments], capture_output=True).returncode
    seconds = time.perf_counter() - started
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run the smaller one first.
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--skip-whole", action="store_true", help="only the windowed run")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        frame, checkpoint = folder / "frame.tif", folder / "model.ckpt"
        started = time.perf_counter()
        write_frame(frame, options.side)
        write_checkpoint(checkpoint)
        report = {"side": options.side, "tiff_mib": round(frame.stat().st_size / 2**20, 1),
                  "write_s": round(time.perf_counter() - started, 1), "predict_tile": options.tile}
        for mode in ("windowed",) + (() if options.skip_whole else ("whole",)):
            arguments = ["--quiet", "predict", "--checkpoint", str(checkpoint), "--out", str(folder / mode), str(frame),
                         "--tile", str(options.tile), "--camera", "none", "--device", "cpu",
                         "--score-threshold", "0.99"]
            rss, seconds, code = peak_rss(mode, arguments)
            report[mode] = {"peak_rss_mib": round(rss), "seconds": round(seconds, 1), "exit_code": code}
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
