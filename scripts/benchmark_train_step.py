"""CPU cost of one training step per detector, side by side in one process.

    python scripts/benchmark_train_step.py --repeats 3

Each candidate trains on the same random batch (4 images of 432 px with two rocks each, the
Chang'e image size) at its own input size; the median seconds per step are printed as a table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rockdet.models import build_detector

#: (label, arch, model input side, extra builder arguments)
CANDIDATES = (
    ("MobileNetV3-FPN at 864 px (the earlier baseline)", "fasterrcnn_mobilenet_v3_large_fpn", 864, {}),
    ("ResNet-18 P2, FPN 128, at 432 px (lunar_cpu.yaml)", "fasterrcnn_resnet18_fpn", 432, {"fpn_channels": 128}),
    ("ResNet-18 P2, FPN 256, at 432 px", "fasterrcnn_resnet18_fpn", 432, {}),
    ("ResNet-18 P2, FPN 128, at 648 px", "fasterrcnn_resnet18_fpn", 648, {"fpn_channels": 128}),
)
#: The recipe's sampling settings, shared by every candidate.
OPTIONS = {"box_batch_size_per_image": 128, "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per candidate (after one warm-up)")
    parser.add_argument("--batch", type=int, default=4)
    options = parser.parse_args()
    torch.manual_seed(0)
    images = [torch.rand(3, 432, 432) for _ in range(options.batch)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [100.0, 100.0, 140.0, 130.0]]),
                "labels": torch.tensor([1, 1])} for _ in images]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {options.batch}")
    print("| detector | s per step (median) |\n|---|---|")
    for label, arch, side, extra in CANDIDATES:
        model = build_detector(arch, min_size=side, max_size=side, options=OPTIONS, **extra).train()
        optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
        times = []
        for step in range(options.repeats + 1):
            started = time.perf_counter()
            sum(model(images, targets).values()).backward()
            optimizer.step()
            optimizer.zero_grad()
            if step:
                times.append(time.perf_counter() - started)
        print(f"| {label} | {statistics.median(times):.2f} |")


if __name__ == "__main__":
    main()
