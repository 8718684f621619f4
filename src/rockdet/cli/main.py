"""The `rockdet` command: train, evaluate, predict, pseudo-label, data-report, synth, sfd."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rockdet.cli.parser import CPU_TILE_BATCH, GPU_TILE_BATCH, build_parser
from rockdet.console import configure_console
from rockdet.errors import RockdetError

log = logging.getLogger("rockdet")



def main(args: list[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(args)
    configure_console(options.quiet, options.verbose)
    try:
        return int(HANDLERS[options.command](options) or 0)
    except RockdetError as exc:
        print(f"rockdet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rockdet: interrupted; finished outputs are kept, rerun to resume", file=sys.stderr)
        return 130


def _load_data(options, path: Path):
    from rockdet.data.formats import load_split, split_from_path

    split = split_from_path(path, options.split, options.masks, options.mask_mode, options.images)
    return load_split(split, options.rock_classes)


def _load_evaluation_data(options):
    """The labelled split and its dense rock masks: ``--masks`` beside a COCO file (or a mask
    folder found beside it) are masks to judge by; beside an image folder they are the labels."""
    from rockdet.data.dense_masks import RockMasks, masks_beside
    from rockdet.data.formats import split_from_path
    from rockdet.data.sources import load_source

    data = Path(options.data)
    if data.suffix.lower() == ".json":
        split = split_from_path(data, options.split, None, options.mask_mode, options.images)
        split = split.model_copy(update={"image_list": options.image_list})
        folder = options.masks or masks_beside(data)
    else:
        split = split_from_path(data, options.split, options.masks, options.mask_mode, options.images)
        split = split.model_copy(update={"image_list": options.image_list})
        folder = options.masks if options.mask_mode == "binary" else None
    return load_source(split, options.rock_classes), (RockMasks(folder) if folder else None)


def _train(options) -> int:
    from rockdet.training.config import load_config
    from rockdet.training.train import train

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
    from rockdet.evaluation.metrics import evaluate_model, format_metrics_table, format_quality
    from rockdet.io.output_guard import check_output_file, refuse_inputs_as_outputs
    from rockdet.models import load_checkpoint_model
    from rockdet.predict.detect import stored_threshold, training_image_size
    from rockdet.report.plots import plot_pr_curve

    if options.out:  # the metrics never land on the annotations or the checkpoint
        refuse_inputs_as_outputs([options.out, options.out.with_name(options.out.stem + "_pr.png")],
                                 [options.data, options.checkpoint, options.image_list])
        check_output_file(options.out)
    model, hparams = load_checkpoint_model(options.checkpoint, trust=options.trust_checkpoint)
    annotations, rock_masks = _load_evaluation_data(options)
    evaluation = {key: hparams.get("evaluation", {})[key] for key in ("score_threshold", "iou_threshold")
                  if key in hparams.get("evaluation", {})}
    evaluation["score_threshold"] = options.score_threshold if options.score_threshold is not None \
        else stored_threshold(hparams)
    dataset = RockDataset(annotations.records)
    result = evaluate_model(model, dataset, options.batch_size, options.device, **evaluation,
                            max_detections=hparams["model"]["detections_per_image"],
                            input_size=training_image_size(hparams), rock_masks=rock_masks)
    print(format_metrics_table(result.scalars))
    print(format_quality(result.quality, evaluation.get("score_threshold")))
    if options.out:
        write_json_atomic(options.out, {"checkpoint": str(options.checkpoint), "data": str(options.data),
                                        "images": len(dataset), "rocks": annotations.report.rocks,
                                        "evaluation": evaluation, "metrics": result.scalars,
                                        "quality": result.quality,
                                        "masks": None if rock_masks is None else str(rock_masks.folder),
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
    from rockdet.training.pseudo_labels import write_pseudo_labels

    if not 0.0 <= options.min_score <= 1.0:
        raise RockdetError(f"--min-score must lie in 0..1, got {options.min_score}")
    from rockdet.io.output_guard import check_output_file, refuse_inputs_as_outputs

    refuse_inputs_as_outputs([options.out], [options.data, options.checkpoint])
    if not options.data.is_file():
        raise RockdetError(f"--data {options.data}: COCO file not found")
    check_output_file(options.out)
    model, hparams = load_checkpoint_model(options.checkpoint, trust=options.trust_checkpoint)
    if has_masks(hparams["model"]["arch"]):
        raise RockdetError(f"{options.checkpoint}: pseudo-labels are boxes, and "
                           f"{hparams['model']['arch']} trains on masks; use a box detector")
    classes = options.rock_classes or hparams.get("rock_classes") or ["rock", "boulder"]
    result = write_pseudo_labels(model, options.data, options.out, classes, options.min_score,
                                 options.batch_size, options.device)
    print(f"{result.out_path}: {result.added_rocks} pseudo-labelled rocks added to "
          f"{result.labelled_rocks} labelled ones in {result.images} images; train on it with "
          f"data.train.annotations={result.out_path} data.train.images={Path(options.data).parent} "
          f"model.weights={options.checkpoint}")
    return 0


def _predict(options) -> int:
    from rockdet.catalog.layout import CATALOG_DIR, ROCKS_FILE, SUMMARY_FILE
    from rockdet.models.inference_head import InferenceHead
    from rockdet.predict.batch import predict_command
    from rockdet.predict.detect import PredictSettings
    from rockdet.predict.job import PredictJob

    accelerator, devices = _devices(options.device, options.devices)
    settings = PredictSettings(score_threshold=options.score_threshold, tile=options.tile,
                               overlap=options.overlap, batch_size=options.batch_size or _tile_batch(accelerator),
                               merge_threshold=options.merge_threshold, merge_metric=options.merge_metric,
                               merge_method=options.merge_method, full_image_pass=options.full_image_pass,
                               **({"nested_threshold": None} if options.keep_nested else {}),
                               **({"sky_fraction": None} if options.keep_on_black else {}))
    job = PredictJob(options.checkpoint, options.out, tuple(options.inputs), settings,
                     tuple(f.strip() for f in options.format.split(",") if f.strip()),
                     options.overwrite, devices, accelerator, options.workers, options.camera,
                     options.overlay, options.as_trained, options.wait, options.trust_checkpoint,
                     options.ground_z, InferenceHead(options.proposals, options.detections_per_tile),
                     options.runtime)
    summary = predict_command(job)
    if summary is None:  # another process of a multi-device run; the first one reports
        return 0
    print(f"{summary['done']} done, {summary['skipped']} skipped, {summary['failed']} failed of "
          f"{summary['images']} images; {summary['rocks_total']} rocks in {options.out / ROCKS_FILE}")
    for failure in summary["failures"]:
        print(f"  failed: {failure['image']}: {failure['reason']}")
    print(f"catalogs: {options.out / CATALOG_DIR} (one CSV + JSON per image); "
          f"summary: {options.out / SUMMARY_FILE}")
    print(f"report: {summary['report']} (open it in a browser)")
    return 0


def _tile_batch(accelerator: str) -> int:
    import torch

    on_gpu = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    return GPU_TILE_BATCH if on_gpu else CPU_TILE_BATCH


def _devices(device: str, count: int):
    if device == "cpu":
        return "cpu", count  # several CPU processes: DDP over gloo, mainly for testing
    if device == "cuda" or (device.startswith("cuda:") and device.split(":", 1)[1].isdigit()):
        import torch

        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        wanted = [int(device.split(":", 1)[1])] if ":" in device else list(range(count))
        if max(wanted) >= available:
            raise RockdetError(f"--device {device}" + (f" --devices {count}" if ":" not in device else "") +
                               f": this machine has {available} CUDA GPU(s) visible to torch "
                               f"{torch.__version__}; use --device cpu or auto")
        return "gpu", wanted if ":" in device else count
    if device == "auto":
        return "auto", count
    raise RockdetError(f"--device {device}: choose auto, cpu, cuda or cuda:N")


def _data_report(options) -> int:
    from rockdet.data.report import format_report

    print(format_report(_load_data(options, options.path)))
    return 0


def _sfd(options) -> int:
    from rockdet.io.output_guard import check_output_files_in, check_output_folder, refuse_inputs_as_outputs
    from rockdet.report.sfd import SFD_JSON, SFD_PNG, write_sfd
    from rockdet.stats.sfd import MAX_DIAMETER_M, load_sizes, sfd_statistics

    outputs = [options.out / SFD_JSON, options.out / SFD_PNG]
    refuse_inputs_as_outputs(outputs, [options.catalogs, options.catalogs.with_suffix(".json")])
    check_output_folder(options.out)
    check_output_files_in(options.out, [SFD_JSON, SFD_PNG], "--out")
    sizes = load_sizes(options.catalogs, options.area_m2)
    result = sfd_statistics(sizes.diameters, sizes.area_m2, options.min_diameter_m, options.bootstrap,
                            options.seed)
    write_sfd(result, options.out, sizes.left_out())
    for problem in sizes.unreadable:
        print(f"  left out: {problem}")
    if sizes.invalid_diameters:
        print(f"  left out {sizes.invalid_diameters} diameters that are not a finite number above 0")
    if sizes.absurd_diameters:
        print(f"  left out {sizes.absurd_diameters} diameters above {MAX_DIAMETER_M:g} m: no rock a rover "
              f"or descent camera sizes is that large (a camera-model or file error)")
    print(f"{result.rocks} rocks with a metric size on {result.area_m2:.2f} m^2; "
          f"completeness cut-off {result.completeness_m or float('nan'):.3g} m ({result.rocks_used} rocks used)")
    if result.status == "ok":
        print(f"Golombek-Rapp k = {result.k:.4f}  95% CI {result.k_ci95}")
        print(f"power law N(>=D) = {result.power_law_coefficient:.4g} D^-{result.power_law_exponent:.3f}"
              f"  95% CI of exponent {result.power_law_exponent_ci95}")
    else:
        print(f"no fit ({result.status}): {result.message}")
    print(f"written: {options.out / SFD_JSON}, {options.out / SFD_PNG}")
    return 0


def _export(options) -> int:
    from rockdet.deploy.export import export_checkpoint
    from rockdet.models.inference_head import InferenceHead

    metadata, parity = export_checkpoint(options.checkpoint, options.format, options.out,
                                         options.trust_checkpoint, options.parity_threshold,
                                         InferenceHead(options.proposals, options.detections_per_tile))
    print(f"written: {options.out} ({metadata['format']}, {metadata['arch']}, input {metadata['input_size']} px, "
          f"score threshold {metadata['score_threshold']})")
    print(f"parity with PyTorch: {parity.describe()}")
    return 0


def _report(options) -> int:
    from rockdet.report.html import write_report

    print(f"written: {write_report(options.folder)}")
    return 0


def _synth(options) -> int:
    from rockdet.synthetic.scenes import SceneSpec, write_synthetic_dataset

    spec = SceneSpec(width=options.size, height=options.size, sun_azimuth_deg=options.sun_azimuth,
                     sun_elevation_deg=options.sun_elevation)
    paths = write_synthetic_dataset(options.out, {"train": options.train, "val": options.val},
                                    spec, options.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


HANDLERS = {
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "pseudo-label": _pseudo_label,
    "data-report": _data_report,
    "sfd": _sfd,
    "export": _export,
    "report": _report,
    "synth": _synth,
}


if __name__ == "__main__":
    sys.exit(main())
