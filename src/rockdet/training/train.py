"""Turn a TrainConfig into a Lightning run: run folder, callbacks, trainer, curves."""

from __future__ import annotations

import csv
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger

from rockdet.atomic import atomic_path, write_json_atomic, write_text_atomic
from rockdet.console import interactive
from rockdet.data.dense_masks import dense_masks_of
from rockdet.data.records import ROCK_LABEL, AnnotatedImage
from rockdet.data.settings import source_list
from rockdet.data.sources import source_name
from rockdet.errors import ConfigError
from rockdet.io.layout import shared_run_id
from rockdet.models.anchors import derive_anchor_sizes, rock_sides_in_model_input
from rockdet.models.builder import NUM_CLASSES, default_anchor_sizes
from rockdet.progress import TrainingProgressLines
from rockdet.report.plots import plot_training_curves
from rockdet.training.config import AUTO, ModelConfig, TrainConfig
from rockdet.training.datamodule import RockDataModule
from rockdet.training.task import MONITOR, RockDetectionTask
from rockdet.typed_yaml import as_plain_data

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_score: float | None
    #: model.pt: ModelInfo and weights of the best checkpoint (the last when no validation ran).
    model_file: Path | None = None


def train(config: TrainConfig, resume: Path | None = None) -> TrainResult:
    """Fit the detector; checkpoints, metrics and curves go to the run folder."""
    pl.seed_everything(config.seed, workers=True)
    run_dir = resolve_run_dir(config, resume)
    inherited = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # for the processes DDP starts
    try:
        return _train(config, resume, run_dir)
    finally:
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)


def _train(config: TrainConfig, resume: Path | None, run_dir: Path) -> TrainResult:
    checkpoints = run_dir / "checkpoints"
    datamodule = RockDataModule(config.data, with_masks=config.model.has_masks, seed=config.seed)
    datamodule.setup("fit")
    if config.model.anchor_sizes == AUTO:
        config.model.anchor_sizes = auto_anchor_sizes(config.model, datamodule.train_records,
                                                      config.data.crop_size)
        log.info("model.anchor_sizes: auto -> %s", config.model.anchor_sizes)
    # Saved once resolved, so the run folder says which anchors were really used.
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(as_plain_data(config), sort_keys=False))
    # Hardware is a class of its own beside background and rock (data.hardware_classes).
    model = {**as_plain_data(config.model), "num_classes": NUM_CLASSES + bool(config.data.hardware_classes)}
    task = RockDetectionTask(model=model, optimizer=as_plain_data(config.optimizer),
                             scheduler=as_plain_data(config.scheduler), evaluation=as_plain_data(config.eval),
                             rock_classes=list(config.data.rock_classes),
                             input_size=config.data.crop_size or datamodule.typical_image_side())
    # Monitored callbacks act only after validation: a run that stops mid-epoch (max_steps) or
    # validates every few epochs has no val_map_50 at the end of a training epoch.
    best = ModelCheckpoint(dirpath=checkpoints, filename="best", monitor=MONITOR, mode="max",
                           save_top_k=1, auto_insert_metric_name=False, save_on_train_epoch_end=False)
    # Lightning's save_last only refreshes last.ckpt in epochs that also saved a new best, so a
    # resume would repeat epochs; a monitor-free checkpoint is written after every validation.
    last = ModelCheckpoint(dirpath=checkpoints, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    callbacks = [best, last, LearningRateMonitor(logging_interval="epoch")]
    show_progress = config.trainer.get("enable_progress_bar", True)
    if show_progress:
        # A redrawn bar on a terminal; in a log file (SLURM, nohup) plain lines with rate and ETA.
        callbacks.append(TQDMProgressBar() if interactive() else TrainingProgressLines())
    if config.early_stopping.enabled:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="max",
                                       patience=config.early_stopping.patience,
                                       min_delta=config.early_stopping.min_delta,
                                       check_on_train_epoch_end=False))
    options = {"default_root_dir": str(run_dir), "log_every_n_steps": 10, **config.trainer,
               "enable_progress_bar": bool(show_progress and interactive())}
    for reserved in ("callbacks", "logger", "default_root_dir"):
        if reserved in config.trainer:
            raise ConfigError(f"trainer.{reserved} is set by rockdet; remove it from the config")
    trainer = pl.Trainer(logger=build_loggers(config.run.logger, run_dir, config.run.name), callbacks=callbacks,
                         **options)
    started, model_file = time.monotonic(), None
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    leave_process_group()
    if trainer.is_global_zero:
        rows = merge_metrics(run_dir)
        if rows:
            plot_training_curves(rows, run_dir / "training_curves.png")
        score = best.best_model_score
        choices = choose_operating_points(config, datamodule, [best.best_model_path, last.best_model_path])
        model_file = write_shareable_model(run_dir, best.best_model_path or last.best_model_path)
        write_json_atomic(run_dir / "summary.json", {
            "best_checkpoint": best.best_model_path or None, "monitor": MONITOR,
            "best_score": None if score is None else float(score),
            "epochs": trainer.current_epoch, "global_step": trainer.global_step,
            "seconds": round(time.monotonic() - started, 1),
            "model_file": str(model_file) if model_file else None,
            **({"operating_points": choices} if choices else {})})
    return TrainResult(run_dir, Path(best.best_model_path) if best.best_model_path else None,
                       Path(last.best_model_path) if last.best_model_path else None,
                       None if best.best_model_score is None else float(best.best_model_score), model_file)


def leave_process_group() -> None:
    """After a multi-process fit, every rank leaves the process group together: a rank exiting
    with gloo's threads still running is aborted at exit (the first rank alone goes on to write
    the summary and model file)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


#: The run's weights-only model file: ModelInfo and weights of the best checkpoint, for sharing
#: and predict (a checkpoint also carries the optimizer state, for resuming).
MODEL_FILE = "model.pt"


def write_shareable_model(run_dir: Path, checkpoint: str | None) -> Path | None:
    """model.pt from the run's best checkpoint (its operating point included)."""
    if not checkpoint:
        return None
    from rockdet.models import load_model, write_model_file

    model, info = load_model(checkpoint)
    return write_model_file(run_dir / MODEL_FILE, model, info)


def choose_operating_points(config: TrainConfig, datamodule: RockDataModule, checkpoints: list[str]) -> dict:
    """``eval.score_threshold: auto``: each checkpoint's operating point, chosen on the
    validation sources and stored in the file (see rockdet.evaluation.operating_point)."""
    if config.eval.score_threshold != AUTO:
        return {}
    from rockdet.evaluation.operating_point import choose_for_checkpoint

    parts = getattr(datamodule.val_set, "parts", [datamodule.val_set])
    labelled = [(source, part) for source, part in zip(source_list(config.data.val), parts) if hasattr(part, "records")]
    validation = [(source_name(source), source.dense, part) for source, part in labelled]
    masks = [dense_masks_of(source) for source, _ in labelled]
    choices = {}
    for path in dict.fromkeys(p for p in checkpoints if p):
        choice = choose_for_checkpoint(Path(path), validation, config.eval.auto_recall_target,
                                       config.eval.iou_threshold, config.eval.provisional_threshold, masks)
        choices[Path(path).name] = asdict(choice)
        print(f"operating point of {Path(path).name}: {choice.score_threshold:.2f} ({choice.rule} of the "
              f"{choice.measure}; precision {choice.precision:.3f}, recall {choice.recall:.3f})"
              f"{' - ' + choice.note if choice.note else ''}")
    return choices


#: Optional loggers: (pytorch_lightning class, module it needs, extra that installs it).
EXTRA_LOGGERS = {"tensorboard": ("TensorBoardLogger", "tensorboard", "tensorboard"),
                 "mlflow": ("MLFlowLogger", "mlflow", "mlflow")}


def build_loggers(kind: str, run_dir: Path, name: str) -> list:
    """CSV always (metrics.csv feeds the curves and summary), plus TensorBoard or MLflow."""
    loggers = [CSVLogger(save_dir=str(run_dir), name="logs")]
    if kind == "csv":
        return loggers
    class_name, module, extra = EXTRA_LOGGERS[kind]
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"run.logger: {kind} needs the {module} package: pip install 'rockdet[{extra}]'") from None
    import pytorch_lightning.loggers as lightning_loggers

    if kind == "tensorboard":
        loggers.append(lightning_loggers.TensorBoardLogger(save_dir=str(run_dir), name="tensorboard"))
    else:
        loggers.append(lightning_loggers.MLFlowLogger(experiment_name=name,
                                                      tracking_uri=(run_dir / "mlruns").resolve().as_uri()))
    return loggers


def auto_anchor_sizes(model: ModelConfig, records: list[AnnotatedImage],
                      crop_size: int | None) -> list[list[int]]:
    """``model.anchor_sizes: auto``: the architecture's anchors scaled to the training rocks."""
    # Rocks only: hardware boxes (data.hardware_classes) are a mast or a wheel, not a rock size.
    rock_boxes = [(r, r.boxes[r.labels == ROCK_LABEL]) for r in records]
    rock_boxes = [(r, boxes) for r, boxes in rock_boxes if len(boxes)]
    if not rock_boxes:
        raise ConfigError("model.anchor_sizes: auto needs labelled rocks in the training split "
                          "(generated scenes have none to measure); give the sizes")
    image_sides = np.concatenate([
        np.tile([min(r.width, crop_size or r.width), min(r.height, crop_size or r.height)],
                (len(boxes), 1)) for r, boxes in rock_boxes])
    box = np.concatenate([boxes for _, boxes in rock_boxes])
    sides = rock_sides_in_model_input(np.sqrt((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])),
                                      image_sides, model.min_size, model.max_size)
    return derive_anchor_sizes(sides, default_anchor_sizes(model.arch))


#: Set while a run trains: the processes DDP starts (on this machine) use the folder of the first.
RUN_DIR_ENV = "ROCKDET_RUN_DIR"


def resolve_run_dir(config: TrainConfig, resume: Path | None) -> Path:
    """One folder for every process of the run: ``run.dir``, the resumed run's, or the name with
    the cluster's run id (SLURM job, torchrun rendezvous, ROCKDET_RUN_ID: the same on every
    machine) or, on one machine, the start time the first process chose."""
    if config.run.dir is not None:
        run_dir = Path(config.run.dir)
    elif resume is not None and (Path(resume).parent.parent / "config.yaml").is_file():
        run_dir = Path(resume).parent.parent  # runs/NAME/checkpoints/last.ckpt
    elif os.environ.get(RUN_DIR_ENV):
        run_dir = Path(os.environ[RUN_DIR_ENV])
    else:
        run_id = shared_run_id()
        suffix = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id) if run_id else time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path(config.run.out_dir) / f"{config.run.name}_{suffix}"
    if resume is not None and not Path(resume).is_file():
        raise ConfigError(f"{resume}: checkpoint to resume from not found")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def merge_metrics(run_dir: Path) -> list[dict[str, str]]:
    """Join the CSV logs of every attempt (resumes log to a new version) into metrics.csv."""
    rows: list[dict[str, str]] = []
    for attempt in sorted((run_dir / "logs").glob("version_*/metrics.csv"),
                          key=lambda p: int(p.parent.name.split("_")[1])):
        with attempt.open(newline="") as handle:
            rows += list(csv.DictReader(handle))
    if not rows:
        return rows
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(run_dir / "metrics.csv") as temp, temp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return rows
