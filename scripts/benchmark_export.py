"""ONNX export and parity for every architecture rockdet trains, with PyTorch vs ONNX Runtime time.

    python scripts/benchmark_export.py [--side 256] [--repeats 3]

Each architecture is built with random weights at --side px (the parity check does not need
trained weights: it compares the two runtimes on the same weights), with the score cut-offs
inside the model lowered so that it returns detections, saved as a rockdet checkpoint and
exported with `rockdet export`'s code (parity checked on a seeded terrain scene). Times are the
median per image of the PyTorch model as trained and of the ONNX Runtime session, on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rockdet.export import ExportError, check_parity, export_checkpoint, parity_image
from rockdet.models import build_detector
from rockdet.models.archs import ARCHS, is_two_stage
from rockdet.runtimes import load_exported


def median_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, side {options.side} px")
    print("| architecture | export | parity | export s | PyTorch ms/image | ONNX Runtime ms/image |")
    print("|---|---|---|---|---|---|")
    image = parity_image(options.side)
    with tempfile.TemporaryDirectory() as folder:
        for arch in ARCHS:
            settings = {"arch": arch, "min_size": options.side, "max_size": options.side,
                        "options": {"box_score_thresh": 0.0} if is_two_stage(arch) else {"score_thresh": 0.0}}
            if arch.startswith("fasterrcnn_resnet18") or arch.startswith("fasterrcnn_resnet34"):
                settings["fpn_channels"] = 128
            torch.manual_seed(0)
            model = build_detector(**settings).eval()
            checkpoint = Path(folder) / f"{arch}.ckpt"
            torch.save({"hyper_parameters": {"model": settings, "input_size": options.side,
                                             "evaluation": {"score_threshold": 0.5}},
                        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
            started = time.perf_counter()
            try:
                export_checkpoint(checkpoint, "onnx", Path(folder) / f"{arch}.onnx", parity_threshold=0.0)
            except ExportError as exc:
                print(f"| {arch} | refused | {exc} | | | |")
                continue
            seconds = time.perf_counter() - started
            exported, _ = load_exported(Path(folder) / f"{arch}.onnx", threads=torch.get_num_threads())
            parity = check_parity(model, exported, image, 0.0)
            with torch.inference_mode():
                torch_s = median_seconds(lambda m=model: m([image]), options.repeats)
            onnx_s = median_seconds(lambda e=exported: e([image]), options.repeats)
            print(f"| {arch} | ok | {'passed' if parity.passed else 'FAILED'}: {parity.describe()} | {seconds:.1f} | "
                  f"{1000 * torch_s:.0f} | {1000 * onnx_s:.0f} |")


if __name__ == "__main__":
    main()
