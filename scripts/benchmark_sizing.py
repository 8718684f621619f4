"""Sizing benchmark: metric diameters and SFD k on synthetic perspective scenes with known truth.

For each rock rendered through the camera model, size it (a) from its true box and (b) from a
model's detections matched to it (IoU >= 0.5), and compare with the true diameter in metres.
Reports median and 90th-percentile relative |error| for rocks at least --min-px across, signed
bias by range bin, and the Golombek-Rapp k recovered against the k used to generate.

    python scripts/benchmark_sizing.py --scenes 12 [--checkpoint CKPT]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from rockdet.catalog.rock import Rock
from rockdet.geometry.cameras import load_camera
from rockdet.geometry.sizing import size_rocks
from rockdet.predict.detect import detect_image
from rockdet.predict.settings import PredictSettings
from rockdet.stats.sfd import sfd_statistics
from rockdet.synthetic.perspective import PerspectiveSpec, render_perspective_scene

ROOT = Path(__file__).resolve().parent.parent
RANGE_BINS_M = (1.5, 3.0, 5.0, 8.0, 12.0)


def error_table(true_d: np.ndarray, est_d: np.ndarray, ranges: np.ndarray, pixels: np.ndarray,
                min_px: float) -> dict:
    keep = (pixels >= min_px) & np.isfinite(est_d)
    rel = (est_d[keep] - true_d[keep]) / true_d[keep]
    table = {"rocks": int(keep.sum()), "median_abs_rel_error": float(np.median(np.abs(rel))),
             "p90_abs_rel_error": float(np.percentile(np.abs(rel), 90)), "median_bias": float(np.median(rel)),
             "bias_by_range_m": {}}
    for low, high in zip(RANGE_BINS_M[:-1], RANGE_BINS_M[1:]):
        in_bin = (ranges[keep] >= low) & (ranges[keep] < high)
        if in_bin.any():
            table["bias_by_range_m"][f"{low}-{high}"] = {"rocks": int(in_bin.sum()),
                                                         "median_bias": float(np.median(rel[in_bin]))}
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--camera", type=Path, default=ROOT / "configs" / "cameras" / "synthetic_perspective.yaml")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--k", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--min-px", type=float, default=10.0)
    parser.add_argument("--checkpoint", type=Path, help="also size a model's detections")
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    options = parser.parse_args()
    camera = load_camera(options.camera)
    spec = PerspectiveSpec(k=options.k)
    model = None
    if options.checkpoint:
        from rockdet.models import load_model

        model, info = load_model(options.checkpoint)
        input_size = info.input_size
    area = camera.ground_area() * options.scenes
    truth_rows, detection_rows, detected_diameters = [], [], []
    started = time.monotonic()
    for index in range(options.scenes):
        image, _, truths = render_perspective_scene(np.random.default_rng([options.seed, index]), camera, spec)
        rocks = size_rocks(camera, [Rock.detected(i + 1, 1.0, t.box) for i, t in enumerate(truths)])
        truth_rows += [(t.diameter_m, r.diameter_m if r.diameter_m else np.nan, t.range_m, r.width_px)
                       for t, r in zip(truths, rocks)]
        if model is not None and truths:
            found = detect_image(model, image, PredictSettings(score_threshold=options.score_threshold), input_size)
            found = size_rocks(camera, found)
            detected_diameters += [r.diameter_m for r in found if r.diameter_m]
            if found:
                ious = box_iou(torch.tensor([[r.x_min, r.y_min, r.x_max, r.y_max] for r in found]),
                               torch.tensor([t.box for t in truths]))
                best, match = ious.max(dim=0)
                for t, iou, j in zip(truths, best.tolist(), match.tolist()):
                    if iou >= 0.5 and found[j].diameter_m:
                        detection_rows.append((t.diameter_m, found[j].diameter_m, t.range_m, found[j].width_px))
    truth = np.array(truth_rows, float)
    report = {"command": "python scripts/benchmark_sizing.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(options).items() if v is not None and k != "out"),
        "scenes": options.scenes, "k_generated": options.k, "imaged_area_m2": area,
        "rocks_truth": len(truth),
        "true_boxes": error_table(truth[:, 0], truth[:, 1], truth[:, 2], truth[:, 3], options.min_px)}
    sfd_true = sfd_statistics(truth[:, 0], area, bootstrap=200)
    sfd_boxes = sfd_statistics(truth[np.isfinite(truth[:, 1]), 1], area, bootstrap=200)
    report["sfd"] = {"true_diameters": _sfd_row(sfd_true, options.k),
                     "true_boxes": _sfd_row(sfd_boxes, options.k)}
    if model is not None:
        detections = np.array(detection_rows, float).reshape(-1, 4)
        report["detections"] = error_table(*detections.T, options.min_px) if len(detections) else {}
        report["detections"]["matched"] = len(detections)
        report["sfd"]["detections"] = _sfd_row(sfd_statistics(detected_diameters, area, bootstrap=200), options.k)
    report["seconds"] = round(time.monotonic() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if options.out:
        options.out.write_text(text + "\n")
    return 0


def _sfd_row(result, k_generated: float) -> dict:
    return {"k": result.k, "k_ci95": result.k_ci95, "k_error": None if result.k is None else
            (result.k - k_generated) / k_generated, "completeness_m": result.completeness_m,
            "rocks_used": result.rocks_used, "status": result.status}


if __name__ == "__main__":
    raise SystemExit(main())
