"""How far a model's catalogs can be trusted on labelled sets, with the catalog rules and without
them, side by side in one process (docs/BENCHMARKS.md, "Catalogs a scientist can trust").

    python scripts/benchmark_catalogs.py --model runs/mixed_cpu/model.pt \\
        --set "Chang'e valid=../shared/data/lunar-scene-analysis/valid/_annotations.coco.json" \\
        --set "Mars val=../shared/data/marsdata-dense/images/_annotations_crowdflag.coco.json:configs/splits/marsdata_val.txt"

Each --set is LABEL=COCO[:IMAGE_LIST]; dense masks are found beside the COCO file's folder
(``masks/``). Every image is detected once; its tile outputs are then merged as `rockdet predict`
merges them, at each threshold and with each set of rules:
- ``raw``: cross-tile merge only (no nested or sky rule; hardware is always left out, as a model with a
  hardware class calls it);
- ``rules``: what `rockdet predict` writes.
Rows: per set and per camera family (file-name prefixes), at the model's operating point (or
--score-threshold): detections per image, box P/R at IoU 0.5 and 0.3, mask P/R, the share of
detections nested >= 80 % in a larger one (the labels' own share beside it), boxes >= 90 %
featureless black, rocks on labelled hardware, and COCO recall@0.5 with <= 100 detections.
Also, per set, the operating point ``auto`` would choose on that set alone. ``--tile`` below the
model's input size measures a larger input scale (each tile is enlarged to the input size).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rockdet.data.dataset import RockDataset
from rockdet.data.dense_masks import RockMasks, masks_beside
from rockdet.data.records import HARDWARE_LABEL, ROCK_LABEL
from rockdet.data.settings import SplitConfig
from rockdet.data.sources import load_source
from rockdet.evaluation.metrics import DetectionMetrics
from rockdet.evaluation.operating_point import ValidationImage, ValidationSource, choose_threshold
from rockdet.evaluation.quality import RockMask, judge_image, summarise
from rockdet.models import load_model
from rockdet.predict.detect import RawTiles, detect_raw
from rockdet.predict.hardware import box_inside
from rockdet.predict.runtimes import exported_format, load_detector
from rockdet.predict.settings import PredictSettings

#: The checker's featureless-black rule (shared/tools/catalog_sanity.py).
BLACK_LEVEL, BLACK_SHARE = 12, 0.9
#: A rock row on labelled hardware: its box lies at least this much inside a hardware label.
ON_HARDWARE = 0.5
RULES = {"raw": {"nested_threshold": None, "sky_fraction": None}, "rules": {}}
#: Camera families by file-name prefix (Chang'e Roboflow names; anything else: the set's own name).
FAMILIES = {"C3_TCAM": "Chang'e 3 TCAM", "PCAML": "Yutu PCAM", "chang4": "Chang'e 4"}


@dataclass
class Image:
    name: str
    pixels: np.ndarray
    rocks: np.ndarray
    hardware: np.ndarray
    crowd: np.ndarray
    mask: RockMask | None
    #: Tile outputs without and with the featureless-black rule; each rule set merges them again.
    raw: RawTiles | None = None
    raw_without_black: RawTiles | None = None


def family_of(name: str, default: str) -> str:
    return next((family for prefix, family in FAMILIES.items() if name.startswith(prefix)), default)


def load_set(spec: str, hardware_classes: list[str]) -> list[Image]:
    coco, _, image_list = spec.partition(":")
    records = load_source(SplitConfig(annotations=Path(coco), image_list=Path(image_list) if image_list else None),
                          ["rock", "boulder"], (), hardware_classes).records
    folder = masks_beside(Path(coco))
    masks = RockMasks(folder) if folder else None
    dataset = RockDataset(records)
    images = []
    for index, record in enumerate(records):
        pixels = dataset[index][0].mul(255).round().byte().permute(1, 2, 0).numpy()
        mask = masks(record.path, record.width, record.height) if masks else None
        labels = record.labels
        images.append(Image(record.path.name, pixels, record.boxes[labels == ROCK_LABEL],
                            record.boxes[labels == HARDWARE_LABEL], np.asarray(record.crowd_boxes, float),
                            None if mask is None else RockMask(mask)))
    return images


def detect(model, images: list[Image], input_size: int, settings: PredictSettings) -> None:
    """Tile outputs of every image, once; the featureless-black rule applied to a copy, as
    predict applies it per tile."""
    from rockdet.predict.featureless import drop_featureless
    from rockdet.predict.tiling import cut_tile, tile_padding

    # Every figure here judges boxes: a Mask R-CNN makes no masks (kept for a whole set, they
    # filled 24 GB on the 31 Mars scenes).
    for image, raw in zip(images, detect_raw(model, [i.pixels for i in images],
                                             settings.updated(sky_fraction=None), input_size, masks=False)):
        pad = tile_padding(raw.windows, settings, input_size)
        tiles = [cut_tile(image.pixels, window, pad) for window in raw.windows]
        image.raw = RawTiles(drop_featureless(raw.predictions, tiles, raw.windows, settings.sky_level,
                                              settings.sky_fraction), raw.windows)
        image.raw_without_black = raw


def catalog(image: Image, settings: PredictSettings, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, scores) predict writes for the image at ``threshold`` under ``settings``."""
    raw = image.raw if settings.sky_fraction is not None else image.raw_without_black
    rocks = raw.rocks(settings, threshold)
    boxes = np.array([r.box for r in rocks], dtype=np.float64).reshape(-1, 4)
    return boxes, np.array([r.score for r in rocks])


def black_boxes(pixels: np.ndarray, boxes: np.ndarray) -> int:
    gray = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    count = 0
    for x0, y0, x1, y1 in boxes.astype(int):
        box = gray[max(0, y0):max(y0 + 1, y1), max(0, x0):max(x0 + 1, x1)]
        count += bool(box.size and (box < BLACK_LEVEL).mean() >= BLACK_SHARE)
    return count


def on_hardware(boxes: np.ndarray, hardware: np.ndarray) -> int:
    if not len(boxes) or not len(hardware):
        return 0
    inside = box_inside(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(hardware, dtype=torch.float32))
    return int((inside >= ON_HARDWARE).any(dim=1).sum())


def measure(images: list[Image], settings: PredictSettings, threshold: float, cap: int) -> dict:
    ranked = DetectionMetrics(threshold, max_detections=100)
    judged, black, hardware = [], 0, 0
    for image in images:
        ranked_boxes, ranked_scores = catalog(image, settings, 0.0)
        ranked.update([{"boxes": torch.as_tensor(ranked_boxes[:cap], dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.as_tensor(ranked_scores[:cap], dtype=torch.float32),
                        "labels": torch.ones(min(cap, len(ranked_scores)), dtype=torch.int64)}],
                      [{"boxes": torch.as_tensor(image.rocks, dtype=torch.float32).reshape(-1, 4),
                        "labels": torch.ones(len(image.rocks), dtype=torch.int64),
                        "crowd_boxes": torch.as_tensor(image.crowd, dtype=torch.float32).reshape(-1, 4)}])
        boxes, _ = catalog(image, settings, threshold)
        black += black_boxes(image.pixels, boxes)
        hardware += on_hardware(boxes, image.hardware)
        judged.append(judge_image(image.name, boxes, image.rocks, image.crowd, image.mask))
    totals = summarise(judged)["totals"]
    totals.update({"black": black, "on_hardware": hardware, "per_image": totals["detections"] / max(1, len(images)),
                   "recall_50_at_100": ranked.compute().scalars["recall_50"]})
    return totals


def own_operating_point(images: list[Image], dense: bool, info) -> dict:
    """The operating point ``auto`` would choose on this set alone."""
    source = ValidationSource("set", dense, [ValidationImage(i.raw, i.rocks, i.crowd, i.mask) for i in images])
    choice = choose_threshold([source], recall_target=info.training.get("evaluation", {}).get("auto_recall_target", 0.6),
                              fallback=0.5, iou=info.iou_threshold)
    return {"rule": choice.rule, "threshold": choice.score_threshold, "precision": round(choice.precision, 3),
            "recall": round(choice.recall, 3), "measure": choice.measure}


COLUMNS = ("set", "rules", "images", "per_image", "box_precision_50", "box_recall_50", "box_precision_30",
           "box_recall_30", "mask_precision", "mask_recall", "nested_share", "labels_nested_share", "black",
           "on_hardware", "recall_50_at_100")


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def with_hardware_confidence(confidence: float, function, *arguments):
    """``function(*arguments)`` with the hardware rule acting from ``confidence``."""
    import rockdet.predict.hardware as hardware

    kept = hardware.HARDWARE_CONFIDENCE
    hardware.HARDWARE_CONFIDENCE = confidence
    try:
        return function(*arguments)
    finally:
        hardware.HARDWARE_CONFIDENCE = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model.pt or a checkpoint")
    parser.add_argument("--set", action="append", required=True, metavar="LABEL=COCO[:IMAGE_LIST]")
    parser.add_argument("--dense", action="append", default=[], metavar="LABEL", help="sets with dense labels")
    parser.add_argument("--score-threshold", type=float, help="default: the model's operating point")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[],
                        help="also measure the rules at these score thresholds (a precision/recall sweep)")
    parser.add_argument("--hardware-classes", nargs="*", default=["artifact"])
    parser.add_argument("--hardware-confidence", type=float, nargs="*", default=[],
                        help="also measure the rules with these values of predict.hardware.HARDWARE_CONFIDENCE")
    parser.add_argument("--runtime", choices=("onnxruntime", "openvino"), default="onnxruntime",
                        help="what runs an exported .onnx --model (a quantized one included)")
    parser.add_argument("--tile", type=int, help="tile side in px (predict's --tile; default: the model's input size); "
                        "a tile smaller than the model's input is enlarged to it, so this also sets the input scale")
    parser.add_argument("--overlap", type=float, default=PredictSettings().overlap)
    parser.add_argument("--full-image-pass", action="store_true", help="also run the whole image (predict's option)")
    parser.add_argument("--tta", choices=("none", "flip"), default="none", help="predict's test-time augmentation")
    parser.add_argument("--min-diameter-px", type=float, nargs="*", default=[],
                        help="also measure the rules with these completeness limits (predict's --min-diameter-px; "
                        "a Mask R-CNN's rows are judged by their boxes here, since this script keeps no masks)")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    torch.manual_seed(0)
    if exported_format(options.model) is not None:
        model = load_detector(options.model, runtime=options.runtime)
        info = model.info
    else:
        model, info = load_model(options.model)
    threshold = info.operating_threshold if options.score_threshold is None else options.score_threshold
    if info.score_floor is not None and min([threshold, *options.thresholds]) < info.score_floor:
        parser.error(f"{options.model} returns no score below {info.score_floor:g} (its export's --score-floor): "
                     f"export it with a lower floor to judge it at {min([threshold, *options.thresholds]):g}")
    if info.score_floor is not None and info.score_floor > 0.01:
        print(f"note: {options.model} returns no score below {info.score_floor:g}, so recall_50_at_100 and the "
              f"operating point found here rank only the boxes from it")
    base = PredictSettings(score_threshold=threshold, tile=options.tile, overlap=options.overlap,
                           full_image_pass=options.full_image_pass, tta=options.tta)
    rows, points = [], {}
    for spec in options.set:
        label, _, rest = spec.partition("=")
        images = load_set(rest, options.hardware_classes)
        detect(model, images, info.input_size, base)
        points[label] = own_operating_point(images, label in options.dense, info)
        families = sorted({family_of(i.name, label) for i in images})
        for name, rule in RULES.items():
            settings = base.updated(**rule)
            rows.append({"set": label, "rules": name, "images": len(images),
                         **measure(images, settings, threshold, info.detections_per_image)})
            if name == "rules":
                for other in options.thresholds:
                    rows.append({"set": label, "rules": f"rules at {other:g}", "images": len(images),
                                 **measure(images, settings, other, info.detections_per_image)})
                for limit in options.min_diameter_px:
                    rows.append({"set": label, "rules": f"rules, rocks from {limit:g} px", "images": len(images),
                                 **measure(images, settings.updated(min_diameter_px=limit), threshold,
                                           info.detections_per_image)})
                for confidence in options.hardware_confidence:
                    rows.append({"set": label, "rules": f"rules, hardware from {confidence}", "images": len(images),
                                 **with_hardware_confidence(confidence, measure, images, settings, threshold,
                                                            info.detections_per_image)})
            if name == "rules" and len(families) > 1:
                for family in families:
                    mine = [i for i in images if family_of(i.name, label) == family]
                    rows.append({"set": f"{label}: {family}", "rules": name, "images": len(mine),
                                 **measure(mine, settings, threshold, info.detections_per_image)})
    print(f"model {options.model} ({info.describe()}), operating point {threshold:.3f}, "
          f"tile {options.tile or info.input_size} px, overlap {options.overlap}, full-image pass {options.full_image_pass}, "
          f"tta {options.tta}")
    print(table(rows))
    print("operating point auto would choose on each set alone:", json.dumps(points))
    if options.json:
        run = {"threshold": threshold, "tile": options.tile, "overlap": options.overlap,
               "full_image_pass": options.full_image_pass, "tta": options.tta}
        options.json.write_text(json.dumps({**run, "rows": rows, "own_operating_points": points},
                                           indent=2, default=float))


if __name__ == "__main__":
    main()
