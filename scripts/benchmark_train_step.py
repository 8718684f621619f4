"""CPU cost of one training step per detector, side by side in one process.

    python scripts/benchmark_train_step.py --repeats 3
    python scripts/benchmark_train_step.py --repeats 5 --only recipe     # FP32 against BF16 autocast

Each candidate trains on the same random batch (4 images of 432 px with two rocks each, the
Chang'e image size) at its own input size; the median seconds per step are printed as a table.
The BF16 rows run the step under `torch.autocast("cpu", torch.bfloat16)`, what Lightning's
`trainer.precision: bf16-mixed` does on a CPU; they pay off only where the CPU has BF16
instructions (AVX-512 BF16 or AMX).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rockdet.models import build_detector

#: lunar_cpu.yaml's sampling settings.
OPTIONS = {"box_batch_size_per_image": 128, "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500}
#: mixed_cpu.yaml's: torchvision's own box-head sampling.
MIXED_OPTIONS = {**OPTIONS, "box_batch_size_per_image": 512, "box_positive_fraction": 0.25}
RECIPE = "ResNet-18 P2, FPN 128, at 432 px, mixed_cpu.yaml's sampling"

#: (label, arch, model input side, extra builder arguments, detector options, autocast dtype or None)
CANDIDATES = (
    ("MobileNetV3-FPN at 864 px (the earlier baseline)", "fasterrcnn_mobilenet_v3_large_fpn", 864, {}, OPTIONS, None),
    ("ResNet-18 P2, FPN 128, at 432 px (lunar_cpu.yaml)", "fasterrcnn_resnet18_fpn", 432, {"fpn_channels": 128},
     OPTIONS, None),
    ("ResNet-18 P2, FPN 256, at 432 px", "fasterrcnn_resnet18_fpn", 432, {}, OPTIONS, None),
    ("ResNet-18 P2, FPN 128, at 648 px", "fasterrcnn_resnet18_fpn", 648, {"fpn_channels": 128}, OPTIONS, None),
    (f"{RECIPE}, FP32", "fasterrcnn_resnet18_fpn", 432, {"fpn_channels": 128}, MIXED_OPTIONS, None),
    (f"{RECIPE}, BF16 autocast", "fasterrcnn_resnet18_fpn", 432, {"fpn_channels": 128}, MIXED_OPTIONS,
     torch.bfloat16),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per candidate (after one warm-up)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--only", choices=("all", "recipe"), default="all",
                        help="'recipe': only the mixed recipe's detector, in FP32 and in BF16")
    options = parser.parse_args()
    torch.manual_seed(0)
    images = [torch.rand(3, 432, 432) for _ in range(options.batch)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [100.0, 100.0, 140.0, 130.0]]),
                "labels": torch.tensor([1, 1])} for _ in images]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {options.batch}")
    print("| detector | s per step (median) | loss of the last step |\n|---|---|---|")
    for label, arch, side, extra, detector_options, autocast_dtype in CANDIDATES:
        if options.only == "recipe" and not label.startswith(RECIPE):
            continue
        torch.manual_seed(0)
        model = build_detector(arch, min_size=side, max_size=side, options=detector_options, **extra).train()
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
        times = []
        for step in range(options.repeats + 1):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                loss = sum(model(images, targets).values())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:
                times.append(time.perf_counter() - started)
        print(f"| {label} | {statistics.median(times):.2f} | {loss.item():.4f} |")


if __name__ == "__main__":
    main()
