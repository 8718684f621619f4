"""Catalog quality of a checkpoint, with today's catalog rules and without them, side by side in
one process (docs/BENCHMARKS.md, "Catalogs a scientist can trust").

    python scripts/benchmark_catalogs.py --checkpoint runs/mixed_cpu/checkpoints/best.ckpt \
        --set "Chang'e valid=../shared/data/lunar-scene-analysis/valid/_annotations.coco.json" \
        --set "Mars val=../shared/data/marsdata-dense/images/_annotations_crowdflag.coco.json:configs/splits/marsdata_val.txt"

Each --set is LABEL=COCO[:IMAGE_LIST]; dense masks are found beside the COCO file's folder
(``masks/``). Rows: ``raw`` (the detector's boxes merged across tiles as before: union of any
overlap, no nested or sky rule) and ``rules`` (what `rockdet predict` writes now). Figures at
the checkpoint's operating point (or --score-threshold): detections per image, box P/R at IoU
0.5 and 0.3, mask P/R, nested share (detections >= 80 % inside a larger one; the labels' own
share beside it), boxes >= 90 % featureless black; and recall@0.5 with <= 100 detections.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rockdet.data.dataset import RockDataset
from rockdet.data.dense_masks import RockMasks, masks_beside
from rockdet.data.settings import SplitConfig
from rockdet.data.sources import load_source
from rockdet.evaluation.metrics import DetectionMetrics
from rockdet.evaluation.quality import judge_image, summarise
from rockdet.models import load_model
from rockdet.predict.detect import run_model
from rockdet.predict.featureless import drop_featureless
from rockdet.predict.merge import merge_tiles, to_image_coordinates
from rockdet.predict.settings import PredictSettings
from rockdet.predict.tiling import tile_batches

#: The checker's featureless-black rule (shared/tools/catalog_sanity.py).
BLACK_LEVEL, BLACK_SHARE = 12, 0.9
RULES = {"raw": {"nested_threshold": None, "sky_fraction": None, "cut_aware": False},
         "rules": {"cut_aware": True}}


def detect(model, pixels_list, settings: PredictSettings, input_size: int, cut_aware: bool):
    """Rocks per image as predict makes them; ``cut_aware=False`` merges as before (no windows)."""
    parts: dict[int, list] = {}
    for batch in tile_batches(enumerate(pixels_list), settings, input_size, settings.tile_batch):
        predictions = drop_featureless(run_model(model, batch.tiles, "cpu"), batch.tiles,
                                       [w for _, w in batch.owners], settings.sky_level, settings.sky_fraction)
        for (index, window), prediction in zip(batch.owners, predictions):
            part = to_image_coordinates(prediction, window, settings.score_threshold)
            parts.setdefault(index, []).append(part if cut_aware else replace(part, window=None))
        for index, _ in batch.finished:
            yield merge_tiles(parts.pop(index), settings)


def black_boxes(pixels: np.ndarray, rocks) -> int:
    gray = (pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    count = 0
    for rock in rocks:
        x0, y0, x1, y1 = int(rock.x_min), int(rock.y_min), int(rock.x_max), int(rock.y_max)
        box = gray[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)]
        count += bool(box.size and (box < BLACK_LEVEL).mean() >= BLACK_SHARE)
    return count


def measure(model, info, label: str, spec: str, threshold: float) -> list[dict]:
    coco, _, image_list = spec.partition(":")
    records = load_source(SplitConfig(annotations=Path(coco), image_list=Path(image_list) if image_list else None),
                          ["rock", "boulder"]).records
    folder = masks_beside(Path(coco))
    masks = RockMasks(folder) if folder else None
    dataset = RockDataset(records)
    pixels = [dataset[i][0].mul(255).round().byte().permute(1, 2, 0).numpy() for i in range(len(dataset))]
    input_size, cap = info.input_size, info.detections_per_image
    rows = []
    for name, rule in RULES.items():
        options = {k: v for k, v in rule.items() if k != "cut_aware"}
        settings = PredictSettings(score_threshold=0.0, tile_batch=8, **options)
        ranked = DetectionMetrics(threshold, max_detections=100)
        judged, black = [], 0
        for record, image, rocks in zip(records, pixels, detect(model, pixels, settings, input_size, rule["cut_aware"])):
            rocks = rocks[:cap]
            boxes = torch.tensor([[r.x_min, r.y_min, r.x_max, r.y_max] for r in rocks], dtype=torch.float32).reshape(-1, 4)
            scores = torch.tensor([r.score for r in rocks], dtype=torch.float32)
            ranked.update([{"boxes": boxes, "scores": scores, "labels": torch.ones(len(rocks), dtype=torch.int64)}],
                          [{"boxes": torch.as_tensor(record.boxes).reshape(-1, 4),
                            "labels": torch.ones(len(record.boxes), dtype=torch.int64)}])
            kept = [r for r in rocks if r.score >= threshold]
            black += black_boxes(image, kept)
            mask = masks(record.path, record.width, record.height) if masks else None
            judged.append(judge_image(record.path.name, boxes[scores >= threshold].numpy(), record.boxes,
                                      record.crowd_boxes, mask))
        totals = summarise(judged)["totals"]
        totals.update({"set": label, "rules": name, "black": black,
                       "per_image": totals["detections"] / max(1, len(records)),
                       "recall_50_at_100": ranked.compute().scalars["recall_50"]})
        rows.append(totals)
    return rows


COLUMNS = ("set", "rules", "per_image", "box_precision_50", "box_recall_50", "box_precision_30", "box_recall_30",
           "mask_precision", "mask_recall", "nested_share", "labels_nested_share", "black", "recall_50_at_100")


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--set", action="append", required=True, metavar="LABEL=COCO[:IMAGE_LIST]")
    parser.add_argument("--score-threshold", type=float, help="default: the checkpoint's operating point")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    torch.manual_seed(0)
    model, info = load_model(options.checkpoint)
    threshold = info.operating_threshold if options.score_threshold is None else options.score_threshold
    rows = []
    for spec in options.set:
        label, _, rest = spec.partition("=")
        rows += measure(model, info, label, rest, threshold)
    print(f"checkpoint {options.checkpoint}, operating point {threshold:.4f}")
    print(table(rows))
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
