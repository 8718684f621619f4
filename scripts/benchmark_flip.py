"""Predict with and without the test-time flip (`--tta flip`), side by side in one process: time
per image and rocks per image, the same Predictor and images (docs/BENCHMARKS.md, issue 17).

    python scripts/benchmark_flip.py --model runs/mixed10_s512_hw5/model.pt \\
        --images ../shared/data/marsdata-dense/images --list configs/splits/marsdata_val.txt --count 6

The two runs alternate, ``--repeats`` times each, after one warm-up of each; medians are reported.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from side_by_side import alternate, chosen_images, image_benchmark_parser  # noqa: E402

from rockdet.predict.predictor import Predictor  # noqa: E402


def main() -> None:
    parser = image_benchmark_parser(__doc__, count=6, model_help="model.pt, a checkpoint or an export")
    parser.add_argument("--score-threshold", type=float, help="default: the model's operating point")
    parser.add_argument("--runtime", choices=("auto", "onnxruntime", "openvino"), default="auto")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    images = chosen_images(options.images, options.list, options.count)
    one_view = Predictor.load(options.model, device="cpu", runtime=options.runtime,
                              score_threshold=options.score_threshold)
    predictors = {"one view": one_view, "flip, fused": one_view.with_settings(tta="flip")}

    def run(name: str) -> int:
        return sum(len(catalog.rocks) for catalog in predictors[name].predict_images(images))

    times, rocks = alternate(run, list(predictors), options.repeats)
    print(f"model {options.model} ({one_view.info.arch}, {one_view.detector.describe()}), {len(images)} images, "
          f"threshold {one_view.settings.score_threshold:.3f}, {options.threads} thread(s), median of {options.repeats}")
    print("| predict | s per image | rocks per image |")
    print("|---|---|---|")
    for name in predictors:
        print(f"| {name} | {statistics.median(times[name]) / len(images):.3f} | {rocks[name] / len(images):.1f} |")
    print(f"flip costs {statistics.median(times['flip, fused']) / statistics.median(times['one view']):.2f}x")


if __name__ == "__main__":
    main()
