"""The LightningModule: a thin wrapper that trains and validates a torchvision detector."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from rockdet import __version__
from rockdet.errors import ConfigError
from rockdet.evaluation.metrics import DetectionMetrics
from rockdet.models import build_detector
from rockdet.models.info import PROVISIONAL_THRESHOLD, SCHEMA_VERSION, ModelInfo
from rockdet.predict.detect import detect_as_predict_does

#: Metric that picks the best checkpoint and drives early stopping.
MONITOR = "val_map_50"


class RockDetectionTask(pl.LightningModule):
    """Settings arrive as plain dicts so they are saved in every checkpoint."""

    def __init__(self, model: dict, optimizer: dict, scheduler: dict, evaluation: dict,
                 rock_classes: list[str] | None = None, input_size: int | None = None,
                 rockdet_version: str = __version__, schema_version: int = SCHEMA_VERSION):
        """``input_size``: typical side of the training images in pixels, before the model's own
        resize; prediction cuts large images into tiles of this size so rocks keep their scale.
        The settings are saved in every checkpoint, where models.info.ModelInfo reads them."""
        super().__init__()
        self.save_hyperparameters()
        self.info = ModelInfo.from_hparams(dict(self.hparams), "the model in training")
        self.model = build_detector(**model)
        threshold = self.info.score_threshold
        self.val_metrics = DetectionMetrics(PROVISIONAL_THRESHOLD if threshold is None else threshold,
                                            self.info.iou_threshold, max_detections=self.info.detections_per_image)

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.model(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        loss = sum(losses.values())
        size = len(images)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        self.log_dict({f"train_{k}": v for k, v in losses.items()}, on_step=False, on_epoch=True,
                      batch_size=size)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, targets = batch
        detections = detect_as_predict_does(self.model, images, self.info.input_size,
                                            self.info.detections_per_image, self.device)
        self.val_metrics.update(detections, targets)

    def on_validation_epoch_end(self) -> None:
        result = self.val_metrics.compute()
        self.val_metrics.reset()
        for key, value in result.scalars.items():
            self.log(f"val_{key}", value, prog_bar=key in ("map_50", "recall_50"), sync_dist=False)

    def configure_optimizers(self):
        optimizer = _build_optimizer(self.parameters(), self.hparams.optimizer)
        scheduler = _build_scheduler(optimizer, self.hparams.scheduler,
                                     int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def _build_optimizer(params, settings: dict) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    name, lr, decay = settings["name"], settings["lr"], settings["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    raise ConfigError(f"optimizer.name: unknown optimizer '{name}'; choose sgd, adam or adamw")


def _build_scheduler(optimizer, settings: dict, total_steps: int) -> dict | None:
    name, warmup = settings["name"], max(0, int(settings["warmup_steps"]))
    if name == "step":
        step = torch.optim.lr_scheduler.StepLR(optimizer, settings["step_size"], settings["gamma"])
        return {"scheduler": step, "interval": "epoch"}
    if name == "none" and not warmup:
        return None
    phases, milestones = [], []
    if warmup:
        phases.append(torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3,
                                                        total_iters=warmup))
        milestones.append(warmup)
    if name == "cosine":
        phases.append(torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total_steps - warmup)))
    else:
        phases.append(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))
    scheduler = phases[0] if len(phases) == 1 else torch.optim.lr_scheduler.SequentialLR(
        optimizer, phases, milestones)
    return {"scheduler": scheduler, "interval": "step"}
