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

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import torch

import rockdet.predict.detect as detect
from rockdet.predict.predictor import Predictor


def chosen_images(folder: Path, names_file: Path | None, count: int) -> list[Path]:
    """The first ``count`` images of ``folder`` (sorted), only those named in ``names_file`` if given."""
    names = set(names_file.read_text().split()) if names_file else None
    return [p for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")
            and (names is None or p.name in names)][:count]


def rows_of(catalogs) -> list[dict]:
    """Every catalog row, mask columns (area, axes) included."""
    return [rock.row(catalog.with_masks, False) for catalog in catalogs for rock in catalog.rocks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--list", type=Path, help="only the images named in this file")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--score-threshold", type=float, help="default: the model's operating point")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--export", choices=("onnxruntime", "openvino"),
                        help="compare two exports (floor as built, floor at the threshold) in this runtime")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    images = chosen_images(options.images, options.list, options.count)
    predictor = Predictor.load(options.model, device="cpu", score_threshold=options.score_threshold)
    floored = detect.scoring_from
    with tempfile.TemporaryDirectory() as scratch:
        exports = exported_pair(options, predictor, Path(scratch)) if options.export else None

        def run(with_floor: bool):
            if exports is not None:
                started = time.perf_counter()
                catalogs = list(exports[with_floor].predict_images(images))
                return time.perf_counter() - started, rows_of(catalogs)
            detect.scoring_from = floored if with_floor else (lambda model, min_score: contextlib.nullcontext())
            try:
                started = time.perf_counter()
                catalogs = list(predictor.predict_images(images))
                return time.perf_counter() - started, rows_of(catalogs)
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
    run(True)  # warm-up
    times = {True: [], False: []}
    rows = {}
    for _ in range(options.repeats):
        for with_floor in (False, True):
            seconds, rows[with_floor] = run(with_floor)
            times[with_floor].append(seconds)
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
