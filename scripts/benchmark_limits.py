"""Where a tile's time goes, and how close each runtime comes to what this CPU can do (issue 22).

    python scripts/benchmark_limits.py --model runs/mixed10_hw/model.pt --threads 1 2 --repeats 5

For one tile at the model's input size (a seeded terrain scene, or --image cropped to that size):
1. FLOPs by part, counted by torch.utils.flop_counter (a multiply-add is 2 FLOPs): backbone + FPN,
   RPN, the box head's two fully connected layers, the predictor. RoIAlign and NMS are
   torchvision operators the counter does not see; their time is measured all the same.
2. Time by part in PyTorch (forward hooks; the model as predict runs it).
3. The CPU's peak: square GEMMs at FP32 (torch.matmul) and INT8 (torch._int_mm, int32 sums).
4. Each runtime's time per tile (PyTorch, ONNX Runtime and OpenVINO on the model exported to
   ONNX with `rockdet export`'s code) and its GFLOP/s as a share of the FP32 peak.
Each thread count is measured in turn in this one process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from timing import median_seconds
from torch.utils.flop_counter import FlopCounterMode

from rockdet.deploy.export import export_checkpoint, parity_image
from rockdet.predict.runtimes import load_detector, load_exported

#: The parts of a two-stage torchvision detector, by attribute path.
PARTS = {"backbone + FPN": "backbone", "RPN": "rpn", "RoIAlign": "roi_heads.box_roi_pool",
         "box head (2 FC)": "roi_heads.box_head", "predictor": "roi_heads.box_predictor"}
#: Side of the square GEMMs that measure the peak (large enough to be compute-bound).
GEMM_SIDE = 2048


def part_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    found = {}
    for name, path in PARTS.items():
        module = model
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
        if module is not None:
            found[name] = module
    return found


def flops_by_part(model: torch.nn.Module, tile: torch.Tensor) -> tuple[int, dict[str, int]]:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model([tile])
    counts = counter.get_flop_counts()
    by_module = {name: sum(ops.values()) for name, ops in counts.items()}
    total = by_module.get("Global", 0)
    parts = {}
    for part, path in PARTS.items():
        parts[part] = sum(flops for name, flops in by_module.items() if name.split(".", 1)[-1] == path)
    return total, parts


def seconds_by_part(model: torch.nn.Module, tile: torch.Tensor, repeats: int) -> dict[str, float]:
    spent: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    handles = []
    for name, module in part_modules(model).items():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: started.__setitem__(n, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda *_, n=name: spent[n].append(time.perf_counter() - started[n])))
    with torch.inference_mode():
        model([tile])  # warm-up
        spent.clear()
        for _ in range(repeats):
            model([tile])
    for handle in handles:
        handle.remove()
    return {name: float(np.median(values)) for name, values in spent.items()}


def gemm_peak(repeats: int) -> dict[str, float]:
    """GFLOP/s (GOP/s for INT8) of square GEMMs on this CPU."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(GEMM_SIDE, GEMM_SIDE, generator=generator) for _ in range(2))
    a8, b8 = (torch.randint(-127, 127, (GEMM_SIDE, GEMM_SIDE), dtype=torch.int8, generator=generator)
              for _ in range(2))
    operations = 2 * GEMM_SIDE ** 3
    peak = {"fp32": operations / median_seconds(lambda: torch.matmul(a, b), repeats) / 1e9}
    try:
        peak["int8"] = operations / median_seconds(lambda: torch._int_mm(a8, b8), repeats) / 1e9
    except RuntimeError as exc:
        print(f"(no INT8 GEMM in this torch: {exc})")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model.pt or a checkpoint")
    parser.add_argument("--image", type=Path, help="a terrain image to cut the tile from (default: seeded scene)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    detector = load_detector(options.model)
    model, side = detector.model.eval(), detector.info.input_size
    tile = parity_image(side) if options.image is None else image_tile(options.image, side)
    total, parts = flops_by_part(model, tile)
    print(f"model {options.model} ({detector.info.arch}), one {side} px tile: {total / 1e9:.2f} GFLOP")
    print("| part | GFLOP | share |")
    print("|---|---|---|")
    for name, flops in parts.items():
        print(f"| {name} | {flops / 1e9:.2f} | {flops / total:.1%} |")
    with tempfile.TemporaryDirectory() as folder:
        exported_file = Path(folder) / "model.onnx"
        export_checkpoint(options.model, "onnx", exported_file)
        print("\n| threads | runtime | ms per tile | GFLOP/s | share of FP32 peak |")
        print("|---|---|---|---|---|")
        lines = []
        for threads in options.threads:
            torch.set_num_threads(threads)
            peak = gemm_peak(options.repeats)
            runtimes = {"PyTorch": lambda: model([tile]),
                        "ONNX Runtime": load_exported(exported_file, threads=threads),
                        "OpenVINO": load_exported(exported_file, threads=threads, runtime="openvino")}
            for name, run in runtimes.items():
                call = run if name == "PyTorch" else (lambda r=run: r([tile]))
                with torch.inference_mode():
                    seconds = median_seconds(call, options.repeats)
                rate = total / seconds / 1e9
                print(f"| {threads} | {name} | {1000 * seconds:.0f} | {rate:.1f} | {rate / peak['fp32']:.1%} |",
                      flush=True)
            by_part = seconds_by_part(model, tile, options.repeats)
            lines.append((threads, peak, by_part))
    print("\n| threads | FP32 GEMM GFLOP/s | INT8 GEMM GOP/s | " + " | ".join(f"{p} ms" for p in PARTS) + " |")
    print("|---|---|---|" + "---|" * len(PARTS))
    for threads, peak, by_part in lines:
        cells = " | ".join(f"{1000 * by_part[p]:.0f}" if p in by_part else "" for p in PARTS)
        print(f"| {threads} | {peak['fp32']:.0f} | {peak.get('int8', float('nan')):.0f} | {cells} |")


def image_tile(path: Path, side: int) -> torch.Tensor:
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("RGB"))[:side, :side]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[:pixels.shape[0], :pixels.shape[1]] = pixels
    return torch.from_numpy(canvas).permute(2, 0, 1).float() / 255


if __name__ == "__main__":
    main()
