"""The `rockdet` command: train, evaluate, predict, pseudo-label, data-report, synth, sfd."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from rockdet.errors import RockdetError

log = logging.getLogger("rockdet")

# Tiles per forward pass. On a CPU, batches beyond a few tiles run slower per tile (cache
# pressure; docs/BENCHMARKS.md); a GPU wants large batches.
CPU_TILE_BATCH = 4
GPU_TILE_BATCH = 16


def main(args: list[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING if options.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    for name in ("lightning.pytorch", "lightning.fabric"):  # they print through their own handler
        logging.getLogger(name).propagate = False
    try:
        return int(options.handler(options) or 0)
    except RockdetError as exc:
        print(f"rockdet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rockdet: interrupted; finished outputs are kept, rerun to resume", file=sys.stderr)
        return 130


def _count(least: int):
    """argparse type: an integer of at least ``least``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    return parse


def _positive_number(text: str) -> float:
    """argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rockdet", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a detector from a YAML config")
    train.add_argument("--config", type=Path, required=True)
    train.add_argument("--resume", type=Path, help="checkpoint to continue from (e.g. last.ckpt)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="config overrides, e.g. trainer.max_epochs=20 trainer.devices=2")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="metrics of a checkpoint on labelled images")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    _add_data_arguments(evaluate)
    evaluate.add_argument("--out", type=Path, help="metrics JSON (a PR curve PNG is written beside it)")
    evaluate.add_argument("--batch-size", type=_count(1), default=4)
    evaluate.add_argument("--device", default="cpu")
    evaluate.add_argument("--score-threshold", type=float, help="operating point (default: as trained)")
    _add_trust_argument(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="rock catalogs for a batch of images")
    predict.add_argument("--checkpoint", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True, help="output folder (mirrors the inputs)")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files, folders (recursive), globs, or .txt files listing paths")
    predict.add_argument("--score-threshold", type=float, help="default: the checkpoint's eval threshold")
    predict.add_argument("--tile", type=int, help="tile size in px (default: automatic, at the "
                         "training image size, when an image is larger)")
    predict.add_argument("--overlap", type=float, default=0.2, help="tile overlap fraction")
    predict.add_argument("--merge-threshold", type=float, default=0.5)
    predict.add_argument("--merge-metric", choices=("ios", "iou"), default="ios")
    predict.add_argument("--merge-method", choices=("nmm", "nms"), default="nmm")
    predict.add_argument("--full-image-pass", action="store_true", help="also run the whole image "
                         "once (rocks larger than a tile)")
    predict.add_argument("--batch-size", type=_count(1), help="tiles per forward pass (default: "
                         f"{CPU_TILE_BATCH} on CPU, {GPU_TILE_BATCH} on GPU)")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    predict.add_argument("--devices", type=_count(1), default=1, help="number of GPUs (DDP)")
    predict.add_argument("--workers", type=_count(0), default=0, help="image-decoding worker processes")
    predict.add_argument("--overlay", action="store_true", help="write overlays/NAME.png with boxes and ids")
    predict.add_argument("--format", default="csv,json", help="csv,json[,parquet]")
    predict.add_argument("--camera", type=Path, help="camera YAML: fills the metric columns")
    predict.add_argument("--overwrite", action="store_true", help="redo images already catalogued")
    _add_trust_argument(predict)
    predict.add_argument("--wait", action="store_true", help="if another run is writing to --out, "
                         "wait for it to finish instead of refusing")
    predict.add_argument("--as-trained", action="store_true", help="run the model exactly as trained, "
                         "without folding batch norms into convolutions or the channels-last layout "
                         "(slower; same rocks up to float rounding)")
    predict.set_defaults(handler=_predict)

    pseudo = commands.add_parser("pseudo-label", help="add a checkpoint's confident unlabelled "
                                 "rocks to a copy of a COCO training file (sparse labels)")
    pseudo.add_argument("--checkpoint", type=Path, required=True)
    pseudo.add_argument("--data", type=Path, required=True, help="COCO .json of the training split")
    pseudo.add_argument("--out", type=Path, required=True, help="COCO .json to write")
    pseudo.add_argument("--min-score", type=float, required=True,
                        help="only detections this confident become labels")
    pseudo.add_argument("--rock-classes", nargs="+", help="default: the checkpoint's")
    pseudo.add_argument("--batch-size", type=_count(1), default=4)
    pseudo.add_argument("--device", default="cpu")
    _add_trust_argument(pseudo)
    pseudo.set_defaults(handler=_pseudo_label)

    report = commands.add_parser("data-report", help="counts, rock sizes and problems of a data set")
    _add_data_arguments(report, flag="path")
    report.set_defaults(handler=_data_report)

    sfd = commands.add_parser("sfd", help="rock size-frequency statistics and Golombek-Rapp fit")
    sfd.add_argument("catalogs", type=Path, metavar="CATALOG_DIR_OR_CSV",
                     help="predict output folder (run with --camera), or one catalog CSV/JSON")
    sfd.add_argument("--out", type=Path, required=True)
    sfd.add_argument("--area-m2", type=_positive_number, help="imaged ground area (default: from the catalogs)")
    sfd.add_argument("--min-diameter-m", type=_positive_number, help="completeness cut-off (default: estimated)")
    sfd.add_argument("--bootstrap", type=_count(0), default=500, help="resamples for the 95%% intervals")
    sfd.add_argument("--seed", type=int, default=0)
    sfd.set_defaults(handler=_sfd)

    synth = commands.add_parser("synth", help="write a seeded synthetic terrain data set (COCO)")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--train", type=int, default=48)
    synth.add_argument("--val", type=int, default=16)
    synth.add_argument("--size", type=int, default=256, help="image width and height in pixels")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--sun-azimuth", type=float, default=150.0)
    synth.add_argument("--sun-elevation", type=float, default=30.0)
    synth.set_defaults(handler=_synth)
    return parser


def _add_trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load a checkpoint that holds Python objects beyond tensors and plain "
                        "data (unpickling can run code: only for files you made)")


def _add_data_arguments(parser: argparse.ArgumentParser, flag: str = "--data") -> None:
    parser.add_argument(flag, type=Path, help="COCO .json, YOLO data .yaml, or image folder with --masks",
                        **({"required": True} if flag.startswith("--") else {}))
    parser.add_argument("--images", type=Path, help="image folder (COCO; default: the JSON's folder)")
    parser.add_argument("--masks", type=Path, help="mask folder: PATH is then the image folder")
    parser.add_argument("--mask-mode", choices=("instance", "binary"), default="instance")
    parser.add_argument("--split", default="val", help="YOLO split (default val)")
    parser.add_argument("--rock-classes", nargs="+", default=["rock", "boulder"])


def _load_data(options, path: Path):
    from rockdet.data.formats import load_split, split_from_path

    split = split_from_path(path, options.split, options.masks, options.mask_mode, options.images)
    return load_split(split, options.rock_classes)


def _train(options) -> int:
    from rockdet.config import load_config
    from rockdet.training import train

    config = load_config(options.config, options.overrides)
    result = train(config, resume=options.resume)
    print(f"run folder: {result.run_dir}")
    if result.best_checkpoint:
        print(f"best checkpoint: {result.best_checkpoint} (val_map_50={result.best_score:.4f})")
    else:
        print("no validation ran, so there is no best checkpoint")
    print(f"last checkpoint: {result.last_checkpoint}")
    print(f"metrics: {result.run_dir / 'metrics.csv'}; curves: {result.run_dir / 'training_curves.png'}")
    return 0


def _evaluate(options) -> int:
    from rockdet.atomic import write_json_atomic
    from rockdet.data.dataset import RockDataset
    from rockdet.evaluation import evaluate_model, format_metrics_table
    from rockdet.inference import training_image_size
    from rockdet.models import load_checkpoint_model
    from rockdet.plots import plot_pr_curve

    model, hparams = load_checkpoint_model(options.checkpoint, trust=options.trust_checkpoint)
    annotations = _load_data(options, options.data)
    evaluation = dict(hparams.get("evaluation", {}))
    if options.score_threshold is not None:
        evaluation["score_threshold"] = options.score_threshold
    dataset = RockDataset(annotations.records)
    result = evaluate_model(model, dataset, options.batch_size, options.device, **evaluation,
                            max_detections=hparams["model"]["detections_per_image"],
                            input_size=training_image_size(hparams))
    print(format_metrics_table(result.scalars))
    if options.out:
        write_json_atomic(options.out, {"checkpoint": str(options.checkpoint), "data": str(options.data),
                                        "images": len(dataset), "rocks": annotations.report.rocks,
                                        "evaluation": evaluation, "metrics": result.scalars,
                                        "pr_curve": {"recall": result.pr_recall,
                                                     "precision": result.pr_precision}})
        curve = plot_pr_curve(result.pr_recall, result.pr_precision,
                              options.out.with_name(options.out.stem + "_pr.png"),
                              f"PR at IoU 0.5 (mAP50 {result.scalars['map_50']:.3f})")
        print(f"metrics written to {options.out}; PR curve {curve}")
    return 0


def _pseudo_label(options) -> int:
    from rockdet.models import load_checkpoint_model
    from rockdet.models.archs import has_masks
    from rockdet.pseudo_labels import write_pseudo_labels

    if not 0.0 <= options.min_score <= 1.0:
        raise RockdetError(f"--min-score must lie in 0..1, got {options.min_score}")
    model, hparams = load_checkpoint_model(options.checkpoint, trust=options.trust_checkpoint)
    if has_masks(hparams["model"]["arch"]):
        raise RockdetError(f"{options.checkpoint}: pseudo-labels are boxes, and "
                           f"{hparams['model']['arch']} trains on masks; use a box detector")
    classes = options.rock_classes or hparams.get("rock_classes") or ["rock", "boulder"]
    result = write_pseudo_labels(model, options.data, options.out, classes, options.min_score,
                                 options.batch_size, options.device)
    print(f"{result.out_path}: {result.added_rocks} pseudo-labelled rocks added to "
          f"{result.labelled_rocks} labelled ones in {result.images} images; train on it with "
          f"data.train.annotations={result.out_path} model.weights={options.checkpoint}")
    return 0


def _predict(options) -> int:
    from rockdet.inference import PredictSettings
    from rockdet.outputs import CATALOG_DIR, ROCKS_FILE, SUMMARY_FILE
    from rockdet.predict_command import predict_command
    from rockdet.predict_job import PredictJob

    accelerator, devices = _devices(options.device, options.devices)
    settings = PredictSettings(score_threshold=options.score_threshold, tile=options.tile,
                               overlap=options.overlap, batch_size=options.batch_size or _tile_batch(accelerator),
                               merge_threshold=options.merge_threshold, merge_metric=options.merge_metric,
                               merge_method=options.merge_method, full_image_pass=options.full_image_pass)
    job = PredictJob(options.checkpoint, options.out, tuple(options.inputs), settings,
                     tuple(f.strip() for f in options.format.split(",") if f.strip()),
                     options.overwrite, devices, accelerator, options.workers, options.camera,
                     options.overlay, options.as_trained, options.wait, options.trust_checkpoint)
    summary = predict_command(job)
    if summary is None:  # another process of a multi-device run; the first one reports
        return 0
    print(f"{summary['done']} done, {summary['skipped']} skipped, {summary['failed']} failed of "
          f"{summary['images']} images; {summary['rocks_total']} rocks in {options.out / ROCKS_FILE}")
    for failure in summary["failures"]:
        print(f"  failed: {failure['image']}: {failure['reason']}")
    print(f"catalogs: {options.out / CATALOG_DIR} (one CSV + JSON per image); "
          f"summary: {options.out / SUMMARY_FILE}")
    return 0


def _tile_batch(accelerator: str) -> int:
    import torch

    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    return GPU_TILE_BATCH if on_gpu else CPU_TILE_BATCH


def _devices(device: str, count: int):
    if device == "cpu":
        return "cpu", count  # several CPU processes: DDP over gloo, mainly for testing
    if device.startswith("cuda:") and device.split(":", 1)[1].isdigit():
        return "gpu", [int(device.split(":", 1)[1])]
    if device == "cuda":
        return "gpu", count
    if device == "auto":
        return "auto", count
    raise RockdetError(f"--device {device}: choose auto, cpu, cuda or cuda:N")


def _data_report(options) -> int:
    from rockdet.data.report import format_report

    print(format_report(_load_data(options, options.path)))
    return 0


def _sfd(options) -> int:
    from rockdet.sfd import load_sizes, sfd_statistics
    from rockdet.sfd_report import write_sfd

    sizes = load_sizes(options.catalogs, options.area_m2)
    result = sfd_statistics(sizes.diameters, sizes.area_m2, options.min_diameter_m, options.bootstrap,
                            options.seed)
    write_sfd(result, options.out)
    for problem in sizes.unreadable:
        print(f"  left out: {problem}")
    if sizes.invalid_diameters:
        print(f"  left out {sizes.invalid_diameters} diameters that are not a finite number above 0")
    print(f"{result.rocks} rocks with a metric size on {result.area_m2:.2f} m^2; "
          f"completeness cut-off {result.completeness_m or float('nan'):.3g} m ({result.rocks_used} rocks used)")
    if result.status == "ok":
        print(f"Golombek-Rapp k = {result.k:.4f}  95% CI {result.k_ci95}")
        print(f"power law N(>=D) = {result.power_law_coefficient:.4g} D^-{result.power_law_exponent:.3f}"
              f"  95% CI of exponent {result.power_law_exponent_ci95}")
    else:
        print(f"no fit: {result.message}")
    print(f"written: {options.out / 'sfd.json'}, {options.out / 'sfd.png'}")
    return 0


def _synth(options) -> int:
    from rockdet.data.synthetic import SceneSpec, write_synthetic_dataset

    spec = SceneSpec(width=options.size, height=options.size, sun_azimuth_deg=options.sun_azimuth,
                     sun_elevation_deg=options.sun_elevation)
    paths = write_synthetic_dataset(options.out, {"train": options.train, "val": options.val},
                                    spec, options.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
