"""Predict benchmark, side by side in one process on the same images and the same weights.

(a) rockdet's tiled prediction vs SAHI's sliced prediction with the same tile size, overlap and
    merge (greedy non-maximum merging on IoS > 0.5, no full-image pass): throughput ratio and
    how many merged detections differ (no partner at IoU >= 0.9), both as run and with rockdet
    cutting SAHI's own windows (so that only the merge and numerics can differ), and SAHI's merge
    applied to rockdet's raw tile detections (equal tile outputs give equal results). SAHI gets the model as
    torchvision builds it, as a SAHI user would; rockdet runs it in its inference form (batch
    norms folded, channels-last), as `rockdet predict` does. A third run gives SAHI the
    inference-form model too, to show how much of the ratio is the model form and how much the
    tiling pipeline.
(b) rockdet's whole pipeline (decode from disk → tiles → model → merge → catalog files) vs a bare
    forward of the same inference-form model over the same tiles, already in memory, in the
    same batches.
(c) with --curve: rockdet's speed and recall against truth for each number of RPN proposals per
    tile (the rock-tuned inference head), each in PyTorch and in ONNX Runtime, interleaved with
    SAHI running the plain PyTorch model as its users do.

rockdet's side takes --runtime torch|onnx (onnx: the checkpoint exported with `rockdet export`'s
code, run in ONNX Runtime) and --proposals / --detections-per-tile (the inference head).

    python scripts/benchmark_predict.py --checkpoint demo_out/run/checkpoints/best.ckpt --images 4
    python scripts/benchmark_predict.py --checkpoint demo_out/run/checkpoints/best.ckpt --images 2 \
        --curve 150 100 64 32
Needs the benchmark extra: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import box_iou

from rockdet.deploy.export import export_checkpoint
from rockdet.models import build_detector, to_inference_form
from rockdet.models import load_model as load_model_file
from rockdet.models.inference_head import InferenceHead
from rockdet.predict.detect import detect_images, run_model
from rockdet.predict.merge import merge_tiles, to_image_coordinates
from rockdet.predict.runtimes import load_exported
from rockdet.predict.settings import CPU_TILE_BATCH, PredictSettings
from rockdet.predict.tiling import cut_tile, plan_windows
from rockdet.synthetic.scenes import SceneSpec, generate_scene

PCAM_SIZE = (2352, 1728)


#: Without --checkpoint: the tiny config's detector, random init (speed only; detections are noise).
RANDOM_INIT = {"arch": "fasterrcnn_mobilenet_v3_large_fpn", "min_size": 512, "max_size": 512,
               "anchor_sizes": [[8, 16, 32, 64, 128]] * 3}


def load_model(checkpoint: Path | None, device: str, scratch: Path):
    """(model, input size, checkpoint path): a random-init model is saved so predict can load it."""
    if checkpoint is None:
        torch.manual_seed(0)
        model = build_detector(**RANDOM_INIT)
        checkpoint = scratch / "random_init.ckpt"
        torch.save({"hyper_parameters": {"model": RANDOM_INIT, "input_size": 256},
                    "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    model, info = load_model_file(checkpoint)
    return model.to(device), info.input_size, checkpoint


def sahi_predict(model, images, settings: PredictSettings, tile: int, device: str, batch_size: int):
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction

    wrapped = AutoDetectionModel.from_pretrained(model_type="torchvision", model=model,
                                                 confidence_threshold=settings.score_threshold,
                                                 category_mapping={"1": "rock"}, device=device,
                                                 load_at_init=True)
    results = []
    for pixels in images:
        prediction = get_sliced_prediction(
            pixels, wrapped, slice_height=tile, slice_width=tile, overlap_height_ratio=settings.overlap,
            overlap_width_ratio=settings.overlap, perform_standard_pred=False, postprocess_type="GREEDYNMM",
            postprocess_match_metric="IOS", postprocess_match_threshold=settings.merge_threshold,
            postprocess_class_agnostic=True, verbose=0, batch_size=batch_size)
        results.append(torch.tensor([p.bbox.to_xyxy() for p in prediction.object_prediction_list],
                                    dtype=torch.float32).reshape(-1, 4))
    return results


def on_sahi_windows(model, images, settings: PredictSettings, tile: int, device: str) -> tuple[list, list]:
    """rockdet's batching and merge on the windows SAHI cuts (fixed stride, last tile flush):
    (merged boxes per image, SAHI's own merge applied to rockdet's raw tile detections)."""
    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction
    from sahi.slicing import get_slice_bboxes

    sahi_merge = GreedyNMMPostprocess(match_threshold=settings.merge_threshold, match_metric="IOS",
                                      class_agnostic=True)
    merged, merged_by_sahi = [], []
    for pixels in images:
        windows = [tuple(w) for w in get_slice_bboxes(pixels.shape[0], pixels.shape[1], tile, tile,
                                                      overlap_height_ratio=settings.overlap,
                                                      overlap_width_ratio=settings.overlap)]
        parts = []
        for start in range(0, len(windows), settings.tile_batch):
            batch = windows[start:start + settings.tile_batch]
            predictions = run_model(model, [cut_tile(pixels, w, tile) for w in batch], device)
            parts += [to_image_coordinates(p, w, settings.score_threshold) for p, w in zip(predictions, batch)]
        rocks = merge_tiles(parts, settings)
        merged.append(torch.tensor([[r.x_min, r.y_min, r.x_max, r.y_max] for r in rocks]).reshape(-1, 4))
        raw = [ObjectPrediction(bbox=box.tolist(), score=float(score), category_id=1, category_name="rock",
                                full_shape=[pixels.shape[0], pixels.shape[1]])
               for part in parts for box, score in zip(part.boxes, part.scores)]
        merged_by_sahi.append(torch.tensor([p.bbox.to_xyxy() for p in sahi_merge(raw)],
                                           dtype=torch.float32).reshape(-1, 4))
    return merged, merged_by_sahi


def quality(found: list, truth: list) -> dict:
    """Recall and precision at IoU 0.5 against the scenes' true boxes."""
    matched_truth = matched_found = total_truth = total_found = 0
    for boxes, true in zip(found, truth):
        total_truth, total_found = total_truth + len(true), total_found + len(boxes)
        if len(boxes) and len(true):
            iou = box_iou(boxes, true)
            matched_truth += int((iou.max(dim=0).values >= 0.5).sum())
            matched_found += int((iou.max(dim=1).values >= 0.5).sum())
    return {"recall_50": round(matched_truth / max(1, total_truth), 3),
            "precision_50": round(matched_found / max(1, total_found), 3)}


def count_differences(ours: list, theirs: list) -> dict:
    only_ours = only_theirs = 0
    for a, b in zip(ours, theirs):
        if len(a) and len(b):
            iou = box_iou(a, b)
            only_ours += int((iou.max(dim=1).values < 0.9).sum())
            only_theirs += int((iou.max(dim=0).values < 0.9).sum())
        else:
            only_ours, only_theirs = only_ours + len(a), only_theirs + len(b)
    return {"rockdet_total": sum(len(a) for a in ours), "sahi_total": sum(len(b) for b in theirs),
            "only_rockdet": only_ours, "only_sahi": only_theirs}


def timed(functions: dict, repeats: int) -> dict:
    """{name: (median seconds, last result)}; rounds interleave the runs so that this machine's
    drift between phases falls on all of them alike."""
    times: dict = {name: [] for name in functions}
    results: dict = {}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            results[name] = function()
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(times[name]), results[name]) for name in functions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--tile", type=int, help="default: the checkpoint's input size")
    parser.add_argument("--overlap", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=CPU_TILE_BATCH, help="tiles per forward (rockdet's CPU default)")
    parser.add_argument("--score-threshold", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; medians reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--runtime", choices=("torch", "onnx", "openvino"), default="torch",
                        help="rockdet's side (onnx: ONNX Runtime; openvino: the same .onnx in OpenVINO)")
    parser.add_argument("--proposals", type=int, help="RPN proposals per tile on rockdet's side")
    parser.add_argument("--detections-per-tile", type=int)
    parser.add_argument("--curve", type=int, nargs="+", metavar="PROPOSALS",
                        help="instead of (a) and (b): speed and recall per number of proposals, both runtimes")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        return run(options, Path(scratch))


def run(options, scratch: Path) -> int:
    model, input_size, checkpoint = load_model(options.checkpoint, options.device, scratch)
    source = str(options.checkpoint) if options.checkpoint else "random init (no checkpoint given)"
    tile = options.tile or input_size
    settings = PredictSettings(score_threshold=options.score_threshold, tile=tile, overlap=options.overlap,
                               tile_batch=options.batch_size)
    scenes = [generate_scene(np.random.default_rng([7, i]), SceneSpec(width=PCAM_SIZE[0], height=PCAM_SIZE[1],
                                                                        empty_fraction=0.0))
              for i in range(options.images)]
    images, truth = [s.image for s in scenes], [torch.from_numpy(s.boxes) for s in scenes]
    tiles_per_image = len(plan_windows(PCAM_SIZE[1], PCAM_SIZE[0], settings, input_size))
    report = {"device": options.device, "torch_threads": torch.get_num_threads(), "model": source,
              "images": options.images, "image_size": PCAM_SIZE, "tile": tile, "overlap": options.overlap,
              "tiles_per_image": tiles_per_image, "batch_size": options.batch_size}

    if options.curve:
        report["c_head_curve"] = head_curve(model, checkpoint, images, truth, settings, input_size, tile, options,
                                            scratch)
        return finish(report, options)
    head = InferenceHead(options.proposals, options.detections_per_tile)
    fast, report["model_form"] = rockdet_model(model, checkpoint, head, options.runtime, scratch)
    report["head"] = head.apply(copy.deepcopy(model))

    def ours():
        return boxes_of(fast, images, settings, input_size, options.device)

    warm_up = images[:1]
    with torch.inference_mode():  # allocator, kernels
        list(detect_images(fast, warm_up, settings, input_size, options.device))
    sahi_predict(model, warm_up, settings, tile, options.device, 1)
    functions = {"sahi": lambda: sahi_predict(model, images, settings, tile, options.device, 1), "rockdet": ours}
    if options.runtime == "torch":  # SAHI can run the inference-form PyTorch model too
        sahi_predict(fast, warm_up, settings, tile, options.device, 1)
        functions["sahi_inference_form"] = lambda: sahi_predict(fast, images, settings, tile, options.device, 1)
    runs = timed(functions, options.repeats)
    (sahi_time, sahi_boxes), (ours_time, our_boxes) = runs["sahi"], runs["rockdet"]
    sahi_fast_time = runs.get("sahi_inference_form", (float("nan"),))[0]
    same_windows, same_windows_sahi_merge = on_sahi_windows(fast, images, settings, tile, options.device)
    report["a_vs_sahi"] = {
        "rockdet_s": round(ours_time, 2), "sahi_s": round(sahi_time, 2),
        "rockdet_images_per_s": round(options.images / ours_time, 3),
        "sahi_images_per_s": round(options.images / sahi_time, 3),
        "throughput_ratio": round(sahi_time / ours_time, 2),
        "sahi_with_inference_form_s": round(sahi_fast_time, 2),
        "ratio_from_model_form": round(sahi_time / sahi_fast_time, 2),
        "ratio_from_pipeline": round(sahi_fast_time / ours_time, 2),
        "detections_differing_at_iou_0.9": count_differences(our_boxes, sahi_boxes),
        "detections_differing_on_sahi_windows": count_differences(same_windows, sahi_boxes),
        "sahi_merge_of_rockdet_tiles_vs_sahi": count_differences(same_windows_sahi_merge, sahi_boxes),
        "quality_vs_truth": {"rockdet": quality(our_boxes, truth), "sahi": quality(sahi_boxes, truth),
                             "rockdet_on_sahi_windows": quality(same_windows, truth),
                             "true_rocks": sum(len(t) for t in truth)}}
    model_file = scratch / "rockdet.onnx" if options.runtime in ("onnx", "openvino") else checkpoint
    report["b_pipeline_vs_forward"] = pipeline_vs_forward(fast, model_file, images, settings, input_size,
                                                          options, scratch, head)
    return finish(report, options)


def finish(report: dict, options) -> int:
    # Peak resident memory of this process over all runs (Linux reports KiB).
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    text = json.dumps(report, indent=2)
    print(text)
    if options.out:
        options.out.write_text(text + "\n")
    return 0


def rockdet_model(model, checkpoint: Path, head: InferenceHead, runtime: str, scratch: Path):
    """(detector, how it runs) for rockdet's side: the inference form, or the ONNX export."""
    if runtime in ("onnx", "openvino"):
        path = scratch / "rockdet.onnx"
        export_checkpoint(checkpoint, "onnx", path, head=head)
        detector = load_exported(path, threads=torch.get_num_threads(),
                                 runtime="openvino" if runtime == "openvino" else "onnxruntime")
        return detector, detector.describe()
    fast = copy.deepcopy(model)
    head.apply(fast)
    return fast, to_inference_form(fast).describe()


def boxes_of(detector, images, settings, input_size, device) -> list:
    with torch.inference_mode():
        return [torch.tensor([[r.x_min, r.y_min, r.x_max, r.y_max] for r in rocks]).reshape(-1, 4)
                for rocks in detect_images(detector, images, settings, input_size, device)]


def head_curve(model, checkpoint, images, truth, settings, input_size, tile, options, scratch) -> list[dict]:
    """Speed and recall for each number of proposals and runtime, interleaved with SAHI."""
    functions = {"sahi": lambda: sahi_predict(model, images, settings, tile, options.device, 1)}
    for proposals in options.curve:
        for runtime in ("torch", "onnx"):
            folder = scratch / f"{runtime}_{proposals}"
            folder.mkdir()
            detector, _ = rockdet_model(model, checkpoint, InferenceHead(proposals, options.detections_per_tile),
                                        runtime, folder)
            boxes_of(detector, images[:1], settings, input_size, options.device)  # warm-up
            functions[f"{runtime} {proposals}"] = (
                lambda d=detector: boxes_of(d, images, settings, input_size, options.device))
    sahi_predict(model, images[:1], settings, tile, options.device, 1)
    runs = timed(functions, options.repeats)
    sahi_time, sahi_boxes = runs["sahi"]
    sahi_quality = quality(sahi_boxes, truth)
    rows = [{"run": "SAHI, plain PyTorch model", "images_per_s": round(len(images) / sahi_time, 3),
             "speed_vs_sahi": 1.0, **sahi_quality}]
    for name, (seconds, boxes) in runs.items():
        if name != "sahi":
            rows.append({"run": f"rockdet {name} proposals", "images_per_s": round(len(images) / seconds, 3),
                         "speed_vs_sahi": round(sahi_time / seconds, 2), **quality(boxes, truth),
                         "recall_minus_sahi": round(quality(boxes, truth)["recall_50"] - sahi_quality["recall_50"], 3)})
    return rows


def pipeline_vs_forward(model, checkpoint: Path, images, settings, input_size, options, folder: Path,
                        head: InferenceHead) -> dict:
    from rockdet.predict.predictor import Predictor

    tiles = [cut_tile(pixels, window, settings.tile)
             for pixels in images for window in plan_windows(pixels.shape[0], pixels.shape[1], settings, input_size)]

    def bare():
        with torch.inference_mode():
            for start in range(0, len(tiles), settings.tile_batch):
                model([t.to(options.device) for t in tiles[start:start + settings.tile_batch]])

    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"pcam_{i}.png")

    exported = checkpoint.suffix != ".ckpt"
    predictor = Predictor.load(checkpoint, settings, overwrite=True, camera="none",
                               proposals=None if exported else head.proposals,
                               detections_per_tile=None if exported else head.detections,
                               runtime="openvino" if options.runtime == "openvino" else "onnxruntime",
                               device="cuda" if options.device.startswith("cuda") else "cpu")

    def pipeline():
        predictor.predict_batch([str(folder / "pcam_*.png")], folder / "out")

    pipeline()  # warm-up
    runs = timed({"bare": bare, "pipeline": pipeline}, options.repeats)
    bare_time, pipeline_time = runs["bare"][0], runs["pipeline"][0]
    return {"bare_forward_s": round(bare_time, 2), "pipeline_s": round(pipeline_time, 2),
            "pipeline_images_per_s": round(len(images) / pipeline_time, 3),
            "pipeline_share_of_bare_forward_speed": round(bare_time / pipeline_time, 3)}


if __name__ == "__main__":
    raise SystemExit(main())
