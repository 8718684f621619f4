"""`rockdet` commands of the training side: train, evaluate, pseudo-label, data-report, synth."""

from __future__ import annotations

from pathlib import Path

from rockdet.errors import RockdetError


def load_data(options, path: Path):
    from rockdet.data.formats import load_split, split_from_path

    split = split_from_path(path, options.split, options.masks, options.mask_mode, options.images)
    return load_split(split, options.rock_classes)


def load_evaluation_data(options):
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


def train(options) -> int:
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
    if result.model_file:
        print(f"model file (weights and settings, for predict and sharing): {result.model_file}")
    print(f"metrics: {result.run_dir / 'metrics.csv'}; curves: {result.run_dir / 'training_curves.png'}")
    return 0


def evaluate(options) -> int:
    from rockdet.atomic import write_json_atomic
    from rockdet.data.dataset import RockDataset
    from rockdet.evaluation.evaluate import evaluate_model, format_metrics_table, format_quality
    from rockdet.io.output_guard import check_output_file, refuse_inputs_as_outputs
    from rockdet.models import load_model
    from rockdet.report.plots import plot_pr_curve

    if options.out:  # the metrics never land on the annotations or the checkpoint
        refuse_inputs_as_outputs([options.out, options.out.with_name(options.out.stem + "_pr.png")],
                                 [options.data, options.checkpoint, options.image_list])
        check_output_file(options.out)
    model, info = load_model(options.checkpoint, trust=options.trust_checkpoint)
    annotations, rock_masks = load_evaluation_data(options)
    evaluation = {"score_threshold": options.score_threshold if options.score_threshold is not None
                  else info.operating_threshold, "iou_threshold": info.iou_threshold, "tta": options.tta}
    dataset = RockDataset(annotations.records)
    result = evaluate_model(model, dataset, options.batch_size, options.device, **evaluation,
                            max_detections=info.detections_per_image, input_size=info.input_size,
                            rock_masks=rock_masks)
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


def pseudo_label(options) -> int:
    from rockdet.models import load_model
    from rockdet.training.pseudo_labels import write_pseudo_labels

    if not 0.0 <= options.min_score <= 1.0:
        raise RockdetError(f"--min-score must lie in 0..1, got {options.min_score}")
    from rockdet.io.output_guard import check_output_file, refuse_inputs_as_outputs

    refuse_inputs_as_outputs([options.out], [options.data, options.checkpoint])
    if not options.data.is_file():
        raise RockdetError(f"--data {options.data}: COCO file not found")
    check_output_file(options.out)
    model, info = load_model(options.checkpoint, trust=options.trust_checkpoint)
    if info.has_masks:
        raise RockdetError(f"{options.checkpoint}: pseudo-labels are boxes, and {info.arch} trains on masks; "
                           f"use a box detector")
    classes = options.rock_classes or list(info.class_names)
    result = write_pseudo_labels(model, options.data, options.out, classes, options.min_score,
                                 options.batch_size, options.device)
    print(f"{result.out_path}: {result.added_rocks} pseudo-labelled rocks added to "
          f"{result.labelled_rocks} labelled ones in {result.images} images; train on it with "
          f"data.train.annotations={result.out_path} data.train.images={Path(options.data).parent} "
          f"model.weights={options.checkpoint}")
    return 0


def data_report(options) -> int:
    from rockdet.data.report import format_report

    print(format_report(load_data(options, options.path)))
    return 0


def synth(options) -> int:
    from rockdet.synthetic.scenes import SceneSpec, write_synthetic_dataset

    spec = SceneSpec(width=options.size, height=options.size, sun_azimuth_deg=options.sun_azimuth,
                     sun_elevation_deg=options.sun_elevation)
    paths = write_synthetic_dataset(options.out, {"train": options.train, "val": options.val},
                                    spec, options.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
