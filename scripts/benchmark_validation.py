"""A validation pass with a Mask R-CNN's mask branch left out (boxes alone, as validation, evaluate
and the operating point now run it) against the same pass making every mask, side by side in one
process: time per image and whether the boxes agree (docs/BENCHMARKS.md; rockdet.predict.detect.boxes_only).

    python scripts/benchmark_validation.py --model runs/mixed10_s512_hw5_masks/model.pt \\
        --images ../shared/data/marsdata-dense/images --list configs/splits/marsdata_val.txt --count 8

Every box is kept, down to the detector's own floor (0.001 in the recipe's configs), since
validation ranks them all; so a Mask R-CNN pastes a tile-sized mask for each of its up to 300
detections a tile. The two passes alternate, ``--repeats`` times each, in batches of ``--batch-size``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from benchmark_score_floor import chosen_images
from PIL import Image

from rockdet.models import load_model
from rockdet.predict.detect import EVALUATION_SETTINGS, detect_raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--list", type=Path, help="only the images named in this file")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass, as validation's")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    model, info = load_model(options.model)
    model.eval()
    pixels = [np.asarray(Image.open(path).convert("RGB")) for path in chosen_images(options.images, options.list,
                                                                                      options.count)]

    @torch.inference_mode()
    def run(masks: bool):
        started = time.perf_counter()
        raws = []
        for start in range(0, len(pixels), options.batch_size):
            batch = pixels[start:start + options.batch_size]
            raws += detect_raw(model, batch, EVALUATION_SETTINGS, info.input_size,
                               tiles_per_batch=len(batch), masks=masks)
        seconds = time.perf_counter() - started
        return seconds, [(p["boxes"], p["scores"]) for raw in raws for p in raw.predictions]

    run(False)  # warm-up
    times = {True: [], False: []}
    outputs = {}
    for _ in range(options.repeats):
        for masks in (True, False):
            seconds, outputs[masks] = run(masks)
            times[masks].append(seconds)
    print(f"model {options.model} ({info.arch}), {len(pixels)} images, batches of {options.batch_size}, "
          f"{options.threads} thread(s), median of {options.repeats}")
    print("| validation pass | s per image | boxes |")
    print("|---|---|---|")
    for masks, label in ((True, "every mask made"), (False, "boxes alone (now)")):
        count = sum(len(boxes) for boxes, _ in outputs[masks])
        print(f"| {label} | {statistics.median(times[masks]) / len(pixels):.3f} | {count} |")
    same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(outputs[True], outputs[False]))
    print(f"speed-up {statistics.median(times[True]) / statistics.median(times[False]):.2f}x; "
          f"boxes and scores {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
