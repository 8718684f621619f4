"""Detection quality of checkpoints on a labelled split, as one markdown table (docs/BENCHMARKS.md).

    python scripts/benchmark_detection.py --data ../shared/data/lunar-scene-analysis/valid/_annotations.coco.json \
        --run "random init, ResNet-18 P2=runs/lunar_cpu/checkpoints/best.ckpt" ...

For each checkpoint: COCO recall at IoU 0.5 with at most 100 and at most 300 detections per
image, recall and precision at the checkpoint's operating threshold (and at --thresholds), mAP50,
AP by size, and the CPU minutes its run folder's summary.json records (pretraining is added with
+MINUTES); --proposals sets the RPN proposals per tile as `rockdet predict --proposals` does.
Images are detected the way `rockdet predict` does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rockdet.data.dataset import RockDataset, collate_detection
from rockdet.data.formats import load_split
from rockdet.evaluation.metrics import COCO_MAX_DETECTIONS, DetectionMetrics, OperatingPoint
from rockdet.models import load_model
from rockdet.models.inference_head import InferenceHead
from rockdet.predict.detect import detect_as_predict_does
from rockdet.training.config import SplitConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="COCO .json of the split")
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=CHECKPOINT[+MINUTES]",
                        help="a row: its label, checkpoint and extra CPU minutes (e.g. pretraining)")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--rock-classes", nargs="+", default=["rock", "boulder"])
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--proposals", type=int, help="RPN proposals per tile (predict's --proposals)")
    options = parser.parse_args()
    torch.manual_seed(0)
    dataset = RockDataset(load_split(SplitConfig(annotations=options.data), options.rock_classes).records)
    head = InferenceHead(options.proposals)
    rows = [measure(label, dataset, options.thresholds, head) for label in options.run]
    print(table(rows, options.thresholds))
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2))


def measure(spec: str, dataset: RockDataset, thresholds: list[float], head: InferenceHead) -> dict:
    label, _, rest = spec.rpartition("=")  # a label may hold "=", a checkpoint path rarely does
    checkpoint, _, extra = rest.partition("+")
    model, info = load_model(checkpoint)
    model.eval()
    applied = head.apply(model)
    cap = info.detections_per_image
    operating = info.operating_threshold
    coco100 = DetectionMetrics(operating, max_detections=COCO_MAX_DETECTIONS)
    coco_cap = DetectionMetrics(operating, max_detections=cap)
    points = {t: OperatingPoint(t) for t in thresholds}
    started = time.perf_counter()
    for images, targets in DataLoader(dataset, batch_size=4, collate_fn=collate_detection):
        predictions = detect_as_predict_does(model, images, info.input_size, cap)
        for metric in (coco100, coco_cap, *points.values()):
            metric.update(predictions, targets)
    at100, at_cap = coco100.compute().scalars, coco_cap.compute().scalars
    summary = Path(checkpoint).parent.parent / "summary.json"
    seconds = json.loads(summary.read_text()).get("seconds") if summary.is_file() else None
    return {"label": label, "checkpoint": checkpoint, "max_detections": cap, "operating_threshold": operating,
            "recall_50_at_100": at100["recall_50"], "recall_50_at_cap": at_cap["recall_50"],
            "recall_at_score": at_cap["recall_at_score"], "precision_at_score": at_cap["precision_at_score"],
            "map_50": at_cap["map_50"], "map_small": at_cap["map_small"], "map_medium": at_cap["map_medium"],
            "map_large": at_cap["map_large"],
            "at_thresholds": {t: {k: float(v) for k, v in p.compute().items()} for t, p in points.items()},
            "cpu_minutes": None if seconds is None else round(seconds / 60 + float(extra or 0), 1), "head": applied,
            "eval_seconds": round(time.perf_counter() - started, 1)}


def table(rows: list[dict], thresholds: list[float]) -> str:
    head = ("| run | recall@0.5 (≤100) | recall@0.5 (≤300) | R / P at operating thr. | mAP50 | "
            "AP small / medium / large | " + " | ".join(f"R / P at {t}" for t in thresholds) + " | CPU min |")
    lines = [head, "|" + "---|" * (8 + len(thresholds))]
    for r in rows:
        at = " | ".join(f"{r['at_thresholds'][t]['recall_at_score']:.2f} / "
                        f"{r['at_thresholds'][t]['precision_at_score']:.3f}" for t in thresholds)
        lines.append(f"| {r['label']} | {r['recall_50_at_100']:.3f} | {r['recall_50_at_cap']:.3f} | "
                     f"{r['recall_at_score']:.2f} / {r['precision_at_score']:.3f} ({r['operating_threshold']}) | "
                     f"{r['map_50']:.3f} | {r['map_small']:.3f} / {r['map_medium']:.3f} / {r['map_large']:.3f} | "
                     f"{at} | {r['cpu_minutes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
