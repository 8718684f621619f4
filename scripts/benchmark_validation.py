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

import statistics

import numpy as np
import torch
from PIL import Image
from side_by_side import alternate, chosen_images, image_benchmark_parser

from rockdet.models import load_model
from rockdet.predict.detect import EVALUATION_SETTINGS, detect_raw


def main() -> None:
    parser = image_benchmark_parser(__doc__, count=8)
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass, as validation's")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    model, info = load_model(options.model)
    model.eval()
    pixels = [np.asarray(Image.open(path).convert("RGB")) for path in chosen_images(options.images, options.list,
                                                                                      options.count)]

    @torch.inference_mode()
    def run(masks: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        raws = []
        for start in range(0, len(pixels), options.batch_size):
            batch = pixels[start:start + options.batch_size]
            raws += detect_raw(model, batch, EVALUATION_SETTINGS, info.input_size,
                               tiles_per_batch=len(batch), masks=masks)
        return [(p["boxes"], p["scores"]) for raw in raws for p in raw.predictions]

    times, outputs = alternate(run, [True, False], options.repeats)
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
