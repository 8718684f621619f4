"""ONNX export and parity for every architecture rockdet trains, with PyTorch vs ONNX Runtime time.

    python scripts/benchmark_export.py [--side 256] [--repeats 3]

Each architecture is built with random weights at --side px (the parity check does not need
trained weights: it compares the two runtimes on the same weights), with the score cut-offs
inside the model lowered so that it returns detections, saved as a rockdet checkpoint and
exported with `rockdet export`'s code (parity checked on a seeded terrain scene). Times are the
median per image of the PyTorch model as trained and of the ONNX Runtime session, on the CPU.
A random-init MobileNetV3 head scores every box alike (its features die in the ReLUs), and
detections that tie cannot be matched across runtimes: --trained ARCH=CHECKPOINT uses a trained
checkpoint for that architecture instead (e.g. the `make demo` one).

    python scripts/benchmark_export.py \
        --trained fasterrcnn_mobilenet_v3_large_fpn=demo_out/run/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from timing import median_seconds

from rockdet.deploy.export import ExportError, check_parity, export_checkpoint, parity_image
from rockdet.models import build_detector, load_model
from rockdet.models.archs import ARCHS, SMALL_ROCK_ARCHS, is_two_stage
from rockdet.predict.detect import score_floor_holder
from rockdet.predict.runtimes import load_exported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trained", action="append", default=[], metavar="ARCH=CHECKPOINT")
    parser.add_argument("--only", nargs="*", help="these architectures only")
    options = parser.parse_args()
    trained = dict(item.split("=", 1) for item in options.trained)
    print(f"torch threads: {torch.get_num_threads()}, side {options.side} px")
    print("| architecture | export | parity | export s | PyTorch ms/image | ONNX Runtime ms/image |")
    print("|---|---|---|---|---|---|")
    image = parity_image(options.side)
    with tempfile.TemporaryDirectory() as folder:
        for arch in options.only or ARCHS:
            if arch in trained:
                checkpoint = Path(trained[arch])
                model, info = load_model(checkpoint)
                side = info.input_size
                export_row(arch, checkpoint, model, parity_image(side), Path(folder), options.repeats)
                continue
            settings = {"arch": arch, "min_size": options.side, "max_size": options.side,
                        "options": {"box_score_thresh": 0.0} if is_two_stage(arch) else {"score_thresh": 0.0}}
            if arch in SMALL_ROCK_ARCHS:
                settings["fpn_channels"] = 128
            torch.manual_seed(0)
            model = build_detector(**settings).eval()
            checkpoint = Path(folder) / f"{arch}.ckpt"
            torch.save({"hyper_parameters": {"model": settings, "input_size": options.side,
                                             "evaluation": {"score_threshold": 0.5}},
                        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
            export_row(arch, checkpoint, model, image, Path(folder), options.repeats)


def export_row(arch: str, checkpoint: Path, model, image, folder: Path, repeats: int) -> None:
    started = time.perf_counter()
    try:
        # Every score down to 0, as the PyTorch model below returns them (a Mask R-CNN's export would stop at 0.5).
        export_checkpoint(checkpoint, "onnx", folder / f"{arch}.onnx", parity_threshold=0.0,
                          score_floor=0.0 if score_floor_holder(model) is not None else None)
    except ExportError as exc:
        print(f"| {arch} | refused | {exc} | | | |")
        return
    seconds = time.perf_counter() - started
    exported = load_exported(folder / f"{arch}.onnx", threads=torch.get_num_threads())
    parity = check_parity(model.eval(), exported, image, 0.0)
    with torch.inference_mode():
        torch_s = median_seconds(lambda: model([image]), repeats)
    onnx_s = median_seconds(lambda: exported([image]), repeats)
    print(f"| {arch} | ok | {'passed' if parity.passed else 'FAILED'}: {parity.describe()} | {seconds:.1f} | "
          f"{1000 * torch_s:.0f} | {1000 * onnx_s:.0f} |")


if __name__ == "__main__":
    main()
