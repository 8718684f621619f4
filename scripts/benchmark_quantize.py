"""INT8 post-training quantization of an exported detector, measured (issue 22, item 1).

    python scripts/benchmark_quantize.py --model runs/mixed10_hw/model.pt \
        --calibration ../shared/data/lunar-scene-analysis/train/_annotations.coco.json \
        --tiles 64 --out /tmp/quantized --threads 1 2

Exports the model to ONNX with `rockdet export`'s code, then quantizes it with ONNX Runtime's
static quantization: QDQ format, INT8 weights per output channel, UINT8 activations calibrated
(min/max) on --tiles tiles cut at random from the calibration set's images at the model's input
size; convolutions and fully connected layers only (RoIAlign, NMS and the box decoding stay
FP32). The file keeps rockdet's metadata, with how it was quantized. It then times FP32 and
INT8 per tile in ONNX Runtime and OpenVINO (its default precision, BF16 on a CPU that has it, and
FP32 forced), at each thread count, and compares the INT8
detections with the FP32 ones as export's parity report does (its tolerances, at --threshold).
Recall against labels: run benchmark_catalogs.py on the written files with --runtime.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from timing import median_seconds

from rockdet.deploy.export import check_parity, export_checkpoint, parity_image
from rockdet.deploy.quantize import calibration_images, calibration_tiles, quantize_onnx
from rockdet.predict.runtimes import load_exported


def openvino_at(path: Path, threads: int, precision: str):
    """An exported file in OpenVINO with its inference precision set (the default on a CPU with
    BF16 instructions is bf16)."""
    import openvino

    from rockdet.predict.openvino import OpenVinoDetector

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision})
    return OpenVinoDetector(compiled, load_exported(path).info)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model.pt or a checkpoint")
    parser.add_argument("--calibration", type=Path, required=True, help="a COCO file of training images")
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True, help="folder for model.onnx and model.int8.onnx")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.1, help="score from which parity compares")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    fp32, int8 = options.out / "model.onnx", options.out / "model.int8.onnx"
    info, _, _ = export_checkpoint(options.model, "onnx", fp32)
    tiles = calibration_tiles(calibration_images(options.calibration), options.tiles, info.input_size)
    print(json.dumps(quantize_onnx(fp32, int8, tiles, load_exported(fp32).info)))
    tile = parity_image(info.input_size)
    print("| threads | runtime | FP32 ms/tile | INT8 ms/tile | speed-up | INT8 parity with FP32 |")
    print("|---|---|---|---|---|---|")
    for threads in options.threads:
        torch.set_num_threads(threads)
        for runtime in ("onnxruntime", "openvino", "openvino f32"):
            if runtime == "openvino f32":  # OpenVINO runs BF16 by default on CPUs that have it
                full, small = (openvino_at(path, threads, "f32") for path in (fp32, int8))
            else:
                full = load_exported(fp32, threads=threads, runtime=runtime)
                small = load_exported(int8, threads=threads, runtime=runtime)
            full_s = median_seconds(lambda d=full: d([tile]), options.repeats)
            small_s = median_seconds(lambda d=small: d([tile]), options.repeats)
            parity = check_parity(full, small, tile, options.threshold)
            print(f"| {threads} | {runtime} | {1000 * full_s:.0f} | {1000 * small_s:.0f} | {full_s / small_s:.2f}x | "
                  f"{'passed' if parity.passed else 'not passed'}: {parity.describe()} |", flush=True)


if __name__ == "__main__":
    main()
