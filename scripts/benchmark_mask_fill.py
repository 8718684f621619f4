"""Does a Mask R-CNN's mask fill (mask area / box area) tell rocks from non-rocks beyond the score?
(docs/BENCHMARKS.md, "Mask training"; issue 17.)

    rockdet predict --checkpoint runs/mixed10_s512_hw2_masks/model.pt --out /tmp/masks_val \
        --score-threshold 0.03 LIST_OF_MARS_VALIDATION_IMAGES.txt
    python scripts/benchmark_mask_fill.py /tmp/masks_val ../shared/data/marsdata-dense/masks

Reads the catalogs of a mask model made at a low threshold and the dense rock masks, judges each
detection as ../shared/tools/mask_precision.py does (a true rock when half its box, or its centre,
lies on rock pixels; a mask component of >= 20 px is found when a detection's centre lies in it or
a box covers half of it), and prints the fill's quartiles for true and false rocks, then the best
mask F1 over score thresholds with detections below each minimum fill left out.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

MIN_COMPONENT_PX = 20
MIN_FILLS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6)
THRESHOLDS = np.arange(0.03, 0.6, 0.01)


def judged_images(out: Path, masks: Path) -> list[tuple[list[tuple[float, float, bool, set]], int]]:
    images = []
    for catalog in sorted(out.rglob("*.csv")):
        mask_path = masks / f"{catalog.stem.split('.')[0]}.png"
        if catalog.name == "rocks.csv" or not mask_path.exists():
            continue
        rock = np.asarray(Image.open(mask_path).convert("L")) > 127
        components, count = ndimage.label(rock)
        sizes = ndimage.sum(rock, components, range(1, count + 1))
        big = {i + 1 for i, size in enumerate(sizes) if size >= MIN_COMPONENT_PX}
        detections = []
        for row in csv.DictReader(catalog.open()):
            x0, y0, x1, y1 = (float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            fill = float(row["area_px"]) / max((x1 - x0) * (y1 - y0), 1e-6)
            xi0, yi0 = max(0, int(x0)), max(0, int(y0))
            xi1, yi1 = min(rock.shape[1], int(np.ceil(x1))), min(rock.shape[0], int(np.ceil(y1)))
            cx, cy = min(rock.shape[1] - 1, int((x0 + x1) / 2)), min(rock.shape[0] - 1, int((y0 + y1) / 2))
            box = rock[yi0:yi1, xi0:xi1]
            true_rock = bool(box.size and (box.mean() >= 0.5 or rock[cy, cx]))
            hits = {components[cy, cx]} & big
            inside = components[yi0:yi1, xi0:xi1]
            hits |= {c for c in np.unique(inside) if c in big and (inside == c).sum() >= 0.5 * sizes[c - 1]}
            detections.append((float(row["score"]), fill, true_rock, hits))
        images.append((detections, len(big)))
    return images


def precision_recall(images, threshold: float, min_fill: float) -> tuple[float, float, float]:
    true = kept = found = components = 0
    for detections, count in images:
        hit = set()
        for score, fill, true_rock, hits in detections:
            if score >= threshold and fill >= min_fill:
                kept += 1
                true += true_rock
                hit |= hits
        found += len(hit)
        components += count
    precision, recall = (true / kept if kept else 0.0), (found / components if components else 0.0)
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a rockdet predict output folder of a mask model")
    parser.add_argument("masks", type=Path, help="dense 0/255 rock masks, one per image")
    options = parser.parse_args()
    images = judged_images(options.out, options.masks)
    fills = np.array([d[1] for detections, _ in images for d in detections])
    true = np.array([d[2] for detections, _ in images for d in detections], dtype=bool)
    print(f"{len(images)} images, {len(fills)} detections")
    for name, chosen in (("true rocks", true), ("false rocks", ~true)):
        print(f"mask fill of {name}: 10/25/50/75 % {np.percentile(fills[chosen], [10, 25, 50, 75]).round(2)}")
    for min_fill in MIN_FILLS:
        rows = [(threshold, *precision_recall(images, threshold, min_fill)) for threshold in THRESHOLDS]
        threshold, precision, recall, f1 = max(rows, key=lambda row: row[3])
        print(f"min fill {min_fill:.1f}: best mask F1 {f1:.3f} at {threshold:.2f} (P {precision:.3f}, R {recall:.3f})")


if __name__ == "__main__":
    main()
