"""Predict with the detector's own score floor at the catalog's threshold against the floor it was
built with (0.001), side by side in one process: time per image and whether the catalogs agree
(docs/BENCHMARKS.md, "Mask training"; rockdet.predict.detect.scoring_from).

    python scripts/benchmark_score_floor.py --model runs/mixed10_s512_hw5_masks/model.pt \\
        --images ../shared/data/marsdata-dense/images --list configs/splits/marsdata_val.txt --count 8

A Mask R-CNN pastes a tile-sized mask for every detection its head keeps, down to the floor; a
catalog made at a threshold keeps none below it. The two runs alternate, ``--repeats`` times each.

With ``--export RUNTIME`` (onnxruntime or openvino) the model is exported twice instead, its graph's
floor as built and at the threshold (``rockdet export --score-floor``), and each file runs there.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
from pathlib import Path

import torch
from side_by_side import alternate, chosen_images, image_benchmark_parser

import rockdet.predict.detect as detect
from rockdet.predict.predictor import Predictor


def rows_of(catalogs) -> list[dict]:
    """Every catalog row, mask columns (area, axes) included."""
    return [rock.row(catalog.with_masks, False) for catalog in catalogs for rock in catalog.rocks]


def main() -> None:
    parser = image_benchmark_parser(__doc__, count=8)
    parser.add_argument("--score-threshold", type=float, help="default: the model's operating point")
    parser.add_argument("--export", choices=("onnxruntime", "openvino"),
                        help="compare two exports (floor as built, floor at the threshold) in this runtime")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    images = chosen_images(options.images, options.list, options.count)
    predictor = Predictor.load(options.model, device="cpu", score_threshold=options.score_threshold)
    floored = detect.scoring_from
    with tempfile.TemporaryDirectory() as scratch:
        exports = exported_pair(options, predictor, Path(scratch)) if options.export else None

        def run(with_floor: bool) -> list[dict]:
            if exports is not None:
                return rows_of(exports[with_floor].predict_images(images))
            detect.scoring_from = floored if with_floor else (lambda model, min_score: contextlib.nullcontext())
            try:
                return rows_of(predictor.predict_images(images))
            finally:
                detect.scoring_from = floored

        report(options, predictor, images, run)


def exported_pair(options, predictor: Predictor, folder: Path) -> dict[bool, Predictor]:
    """{False: the graph with the floor as built, True: with the floor at the threshold}, each
    exported and loaded in ``options.export``."""
    from rockdet.deploy.export import export_checkpoint
    from rockdet.models import load_model

    threshold = predictor.settings.score_threshold
    built = detect.score_floor_holder(load_model(options.model)[0]).score_thresh
    pair = {}
    for with_floor, floor in ((False, built), (True, threshold)):
        path = folder / f"floor_{with_floor}.onnx"
        export_checkpoint(options.model, "onnx", path, score_floor=floor)
        pair[with_floor] = Predictor.load(path, device="cpu", runtime=options.export, score_threshold=threshold)
    return pair


def report(options, predictor: Predictor, images, run) -> None:
    times, rows = alternate(run, [False, True], options.repeats)
    form = f"exported, {options.export}" if options.export else "PyTorch"
    print(f"model {options.model} ({predictor.info.arch}, {form}), {len(images)} images, threshold "
          f"{predictor.settings.score_threshold:.3f}, {options.threads} thread(s), median of {options.repeats}")
    print("| score floor | s per image | rocks |")
    print("|---|---|---|")
    for with_floor, label in ((False, "as built (0.001 in the recipe's configs)"), (True, "the catalog's threshold")):
        print(f"| {label} | {statistics.median(times[with_floor]) / len(images):.3f} | {len(rows[with_floor])} |")
    same = rows[True] == rows[False]
    print(f"speed-up {statistics.median(times[False]) / statistics.median(times[True]):.2f}x; "
          f"catalogs {'identical' if same else 'DIFFER'}")
    if not same:
        scores = [sorted(row["score"] for row in rows[floor]) for floor in (False, True)]
        if len(scores[0]) == len(scores[1]):
            print(f"same rock count; largest score difference {max(abs(a - b) for a, b in zip(*scores)):.2g}")


if __name__ == "__main__":
    main()
