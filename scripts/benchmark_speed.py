"""Speed on real labelled frames, side by side with SAHI (issue 22's figures), in one process.

    python scripts/benchmark_speed.py --model runs/mixed10_hw5/model.pt \
        --labels ../shared/data/lunar-scene-analysis/valid/_annotations.coco.json \
        --int8 /tmp/quant_hw5/model.int8.onnx --threads 1 2 --repeats 2 --out /tmp/speed.json

Two sets from the labelled frames: the frames at native size, and the same frames pasted into
PCAM-sized mosaics (--grid columns x rows of frames, their labels moved with them), so that tiles
cross frame borders as they cross a real panorama. For each thread count, interleaved rounds
time (medians reported):
- SAHI's sliced prediction with the plain PyTorch model, as torchvision builds it (as a SAHI user
  runs it), one tile per forward;
- rockdet's tiled detection with the same model and tiles in PyTorch (inference form), and with
  the FP32 export in the runtime `rockdet predict` picks by default (auto: OpenVINO here), and the
  INT8 export (--int8) in OpenVINO.
Both merge as SAHI does by default (greedy non-maximum merging on IoS > 0.5), or with --merge
nms-iou both by NMS on IoU > 0.5. SAHI applies its merge to every box, a tile's own included;
rockdet merges across tiles only, so with SAHI's default the two give different rocks even on
one tile, and NMS at IoU 0.5 (which the detector already applied within each tile) makes them
comparable. Below a confidence of 0.1 SAHI (0.12) itself switches its merge to NMS on IoU, so at
a model's low operating point only --merge nms-iou compares like with like. rockdet's catalog
rules (one rock a row, featureless black) are off on this side, and recall with them on is
reported too. Recall@0.5 is against the labels' rock classes (--rock-classes).

Then, at the machine's default threads, the whole `rockdet predict` pipeline (PNG on disk ->
decode -> tiles -> the auto runtime -> merge -> catalog files) against a bare forward of the same
detector over the same tiles in memory, in the same batches, on 2 and on 16 mosaics, with 0 and 1
decoding workers (the FP32 export, or with --pipeline-int8 the INT8 one).

OpenVINO runs tiles at the model's input size on a graph fixed to it (rockdet.predict.openvino.
OpenVinoDetector); --size-free adds rows for the same files with every tile on the size-free graph.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_predict import boxes_of, finish, timed  # noqa: E402

from rockdet.data.records import HARDWARE_LABEL  # noqa: E402
from rockdet.deploy.export import export_checkpoint  # noqa: E402
from rockdet.models import load_model, to_inference_form  # noqa: E402
from rockdet.predict.openvino import OpenVinoDetector  # noqa: E402
from rockdet.predict.runtimes import load_detector, load_exported  # noqa: E402
from rockdet.predict.settings import PredictSettings  # noqa: E402
from rockdet.predict.tiling import cut_tile, plan_windows  # noqa: E402


def sahi_predict(model, images, settings: PredictSettings, tile: int, classes: int) -> list[torch.Tensor]:
    """SAHI's sliced prediction, one tile per forward, merged as rockdet merges (greedy NMM on IoS);
    a model with a hardware class gets class-aware merging and only its rock boxes are kept, as a
    SAHI user of such a model would."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    names = {"1": "rock", **{str(label): f"class {label}" for label in range(2, classes)}}
    wrapped = AutoDetectionModel.from_pretrained(model_type="torchvision", model=model, device="cpu",
                                                 confidence_threshold=settings.score_threshold,
                                                 category_mapping=names, load_at_init=True)
    results = []
    for pixels in images:
        prediction = get_sliced_prediction(
            pixels, wrapped, slice_height=tile, slice_width=tile, overlap_height_ratio=settings.overlap,
            overlap_width_ratio=settings.overlap, perform_standard_pred=False,
            postprocess_type="GREEDYNMM" if settings.merge_method == "nmm" else "NMS",
            postprocess_match_metric=settings.merge_metric.upper(), postprocess_match_threshold=settings.merge_threshold,
            postprocess_class_agnostic=classes <= 2, verbose=0, batch_size=1)
        results.append(torch.tensor([p.bbox.to_xyxy() for p in prediction.object_prediction_list
                                     if p.category.name == "rock"], dtype=torch.float32).reshape(-1, 4))
    return results


def labelled_frames(coco_file: Path, rock_classes: set[str]) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    document = json.loads(coco_file.read_text())
    rock_ids = {c["id"] for c in document["categories"] if c["name"] in rock_classes}
    boxes: dict[int, list] = {image["id"]: [] for image in document["images"]}
    for a in document["annotations"]:
        if a["category_id"] in rock_ids and not a.get("iscrowd"):
            x, y, w, h = a["bbox"]
            boxes[a["image_id"]].append([x, y, x + w, y + h])
    frames = [np.asarray(Image.open(coco_file.parent / image["file_name"]).convert("RGB")) for image in document["images"]]
    truth = [torch.tensor(boxes[image["id"]], dtype=torch.float32).reshape(-1, 4) for image in document["images"]]
    return frames, truth


def mosaics(frames, truth, columns: int, rows: int):
    """Frames pasted column by column into mosaics of columns x rows (the last one padded black)."""
    height, width = frames[0].shape[:2]
    images, labels = [], []
    for start in range(0, len(frames), columns * rows):
        canvas = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
        moved = []
        for n, (pixels, boxes) in enumerate(zip(frames[start:start + columns * rows], truth[start:start + columns * rows])):
            y, x = (n // columns) * height, (n % columns) * width
            canvas[y:y + pixels.shape[0], x:x + pixels.shape[1]] = pixels
            moved.append(boxes + torch.tensor([x, y, x, y], dtype=torch.float32))
        images.append(canvas)
        labels.append(torch.cat(moved))
    return images, labels


def recall(found: list[torch.Tensor], truth: list[torch.Tensor]) -> float:
    hit = total = 0
    for boxes, true in zip(found, truth):
        total += len(true)
        if len(boxes) and len(true):
            hit += int((box_iou(boxes, true).max(dim=0).values >= 0.5).sum())
    return round(hit / max(total, 1), 4)


@contextlib.contextmanager
def hardware_rule_off():
    """rockdet without its hardware rule (rocks lying mostly inside a confident lander or rover box
    leave the catalog; SAHI has no such rule): hardware boxes themselves still are not rocks. With
    it off, the two tools' recall differs only by runtime, tiles and merge."""
    from rockdet.predict import merge

    def hardware_only(prediction, score_threshold):
        labels = prediction.get("labels")
        return torch.zeros(len(prediction["scores"]), dtype=torch.bool) if labels is None else labels == HARDWARE_LABEL

    kept = merge.on_hardware
    merge.on_hardware = hardware_only
    try:
        yield
    finally:
        merge.on_hardware = kept


def compare_with_sahi(model, classes, detectors: dict, sets: dict, settings, rules_on, input_size, threads, repeats):
    torch.set_num_threads(threads)
    rows = []
    for set_name, (images, truth) in sets.items():
        functions = {"SAHI, PyTorch as built": lambda i=images: sahi_predict(model, i, settings, settings.tile, classes)}
        for name, detector in detectors.items():
            functions[name] = lambda d=detector, i=images: boxes_of(d, i, settings, input_size, "cpu")
        sahi_predict(model, images[:1], settings, settings.tile, classes)  # warm-up
        for detector in detectors.values():
            boxes_of(detector, images[:1], settings, input_size, "cpu")
        runs = timed(functions, repeats)
        sahi_time, sahi_boxes = runs["SAHI, PyTorch as built"]
        sahi_recall = recall(sahi_boxes, truth)
        for name, (seconds, boxes) in runs.items():
            row = {"threads": threads, "set": set_name, "run": name, "images_per_s": round(len(images) / seconds, 3),
                   "speed_vs_sahi": round(sahi_time / seconds, 2), "recall_50": recall(boxes, truth),
                   "recall_minus_sahi": round(recall(boxes, truth) - sahi_recall, 4)}
            if name in detectors:
                ruled = boxes_of(detectors[name], images, rules_on, input_size, "cpu")
                row["recall_50_with_catalog_rules"] = recall(ruled, truth)
                with hardware_rule_off():
                    row["recall_50_hardware_rule_off"] = recall(boxes_of(detectors[name], images, settings, input_size,
                                                                         "cpu"), truth)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def pipeline_vs_bare(model_file: Path, images, settings, input_size, counts, workers_options, repeats, folder: Path):
    from rockdet.predict.predictor import Predictor

    rows = []
    for count in counts:
        chosen = [images[i % len(images)] for i in range(count)]
        inputs = folder / f"in_{count}"
        inputs.mkdir()
        for i, pixels in enumerate(chosen):
            Image.fromarray(pixels).save(inputs / f"mosaic_{i:02d}.png")
        for workers in workers_options:
            predictor = Predictor.load(model_file, settings, overwrite=True, camera="none", workers=workers,
                                       device="cpu")
            detector = predictor.detector
            tiles = [cut_tile(p, w, settings.tile) for p in chosen
                     for w in plan_windows(p.shape[0], p.shape[1], settings, input_size)]

            def bare(detector=detector, tiles=tiles, per_batch=predictor.tiles_per_batch):
                with torch.inference_mode():
                    for start in range(0, len(tiles), per_batch):
                        detector(tiles[start:start + per_batch])

            def pipeline(predictor=predictor, inputs=inputs, out=folder / f"out_{count}_{workers}"):
                predictor.predict_batch([str(inputs)], out)

            pipeline()  # warm-up
            runs = timed({"bare": bare, "pipeline": pipeline}, repeats)
            row = {"images": count, "tiles": len(tiles), "workers": workers, "model_form": detector.describe(),
                   "bare_forward_s": round(runs["bare"][0], 2), "pipeline_s": round(runs["pipeline"][0], 2),
                   "pipeline_share_of_bare_forward_speed": round(runs["bare"][0] / runs["pipeline"][0], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model.pt or a checkpoint")
    parser.add_argument("--labels", type=Path, required=True, help="COCO file of labelled frames")
    parser.add_argument("--rock-classes", nargs="+", default=["rock", "boulder"])
    parser.add_argument("--int8", type=Path, help="an INT8 export of the same model (rockdet export --quantize int8)")
    parser.add_argument("--grid", default="5x4", help="frames per mosaic, columns x rows (5x4 of 432 px: 2160x1728)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--score-threshold", type=float, help="default: the model's operating point")
    parser.add_argument("--pipeline-images", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pipeline-int8", action="store_true", help="time the pipeline with the --int8 file, not FP32")
    parser.add_argument("--frames", type=int, help="only the first N frames (a quick trial)")
    parser.add_argument("--merge", choices=("nmm-ios", "nms-iou"), default="nmm-ios",
                        help="both sides' merge: SAHI's default (greedy NMM on IoS 0.5), or NMS on IoU 0.5, "
                        "which leaves a tile's own boxes as the detector made them in both tools")
    parser.add_argument("--size-free", action="store_true",
                        help="also run each OpenVINO model on its size-free graph (before fixed-size graphs per tile size)")
    parser.add_argument("--skip-sahi", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    if options.pipeline_int8 and not options.int8:
        parser.error("--pipeline-int8 runs the file given with --int8")
    model, info = load_model(options.model)
    model.eval()
    threshold = options.score_threshold if options.score_threshold is not None else info.operating_threshold
    # As SAHI merges, without rockdet's catalog rules, so that the two give comparable rocks.
    method, metric = options.merge.split("-")
    merge = {"merge_method": method, "merge_metric": metric, "merge_threshold": 0.5}
    settings = PredictSettings(score_threshold=threshold, tile=info.input_size, overlap=0.2, nested_threshold=None,
                               sky_fraction=None, **merge)
    rules_on = PredictSettings(score_threshold=threshold, tile=info.input_size, overlap=0.2, **merge)
    frames, truth = labelled_frames(options.labels, set(options.rock_classes))
    frames, truth = frames[:options.frames], truth[:options.frames]
    columns, rows = (int(v) for v in options.grid.split("x"))
    mosaic_images, mosaic_truth = mosaics(frames, truth, columns, rows)
    sets = {"native frames": (frames, truth), f"mosaics {mosaic_images[0].shape[1]}x{mosaic_images[0].shape[0]}":
            (mosaic_images, mosaic_truth)}
    report = {"model": str(options.model), "labels": str(options.labels), "score_threshold": threshold,
              "frames": len(frames), "true_rocks": sum(len(t) for t in truth), "mosaics": len(mosaic_images),
              "tile": info.input_size, "overlap": 0.2, "merge": options.merge}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        fp32 = scratch / "model.onnx"
        # A Mask R-CNN's export stops at its operating point unless told otherwise; this one serves the threshold.
        export_checkpoint(options.model, "onnx", fp32,
                          score_floor=min(threshold, info.operating_threshold) if info.has_masks else None)
        report["rows"] = []
        if not options.skip_sahi:
            for threads in options.threads:
                inference_form = load_model(options.model)[0].eval()
                form = to_inference_form(inference_form).describe()
                detectors = {f"rockdet PyTorch ({form})": inference_form}
                files = {"rockdet FP32 export, {}": (fp32, "auto")}
                if options.int8:
                    files["rockdet INT8 export, {}"] = (options.int8, "openvino")
                for label, (path, runtime) in files.items():
                    detector = load_exported(path, threads=threads, runtime=runtime)
                    detectors[label.format(detector.describe())] = detector
                    if options.size_free and isinstance(detector, OpenVinoDetector):
                        size_free = load_exported(path, threads=threads, runtime="openvino", fixed_size=False)
                        detectors[label.format(detector.describe()) + ", size-free graph"] = size_free
                classes = info.detector.get("num_classes", 2)
                report["rows"] += compare_with_sahi(model, classes, detectors, sets, settings, rules_on, info.input_size,
                                                    threads, options.repeats)
        torch.set_num_threads(max(options.threads))
        report["default_runtime"] = load_detector(fp32, runtime="auto", device="cpu").runtime
        if not options.skip_pipeline:
            piped = options.int8 if options.pipeline_int8 else fp32
            report["pipeline"] = pipeline_vs_bare(piped, mosaic_images, rules_on, info.input_size,
                                                  options.pipeline_images, options.workers, options.repeats, scratch)
    return finish(report, options)


if __name__ == "__main__":
    raise SystemExit(main())
