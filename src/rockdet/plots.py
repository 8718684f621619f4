"""Figures people would rather look at than read: training curves, PR curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training machines and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from rockdet.atomic import atomic_path  # noqa: E402


def plot_training_curves(rows: list[dict[str, str]], path: Path) -> Path:
    """Loss and validation metrics per epoch, from the merged metrics CSV rows."""
    per_epoch: dict[int, dict[str, float]] = {}
    for row in rows:
        if row.get("epoch") in (None, ""):
            continue
        epoch = int(float(row["epoch"]))
        for key, value in row.items():
            if value not in (None, "") and key not in ("epoch", "step"):
                per_epoch.setdefault(epoch, {})[key] = float(value)
    epochs = sorted(per_epoch)
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    _plot_series(loss_axis, epochs, per_epoch, ["train_loss_epoch"], "loss")
    _plot_series(metric_axis, epochs, per_epoch,
                 ["val_map_50", "val_recall_50", "val_map", "val_recall_at_score"], "validation")
    metric_axis.set_ylim(0, 1)
    figure.tight_layout()
    return _save(figure, path)


def plot_pr_curve(recall: list[float], precision: list[float], path: Path, title: str) -> Path:
    figure, axis = plt.subplots(figsize=(5, 4.5))
    axis.plot(recall, precision, color="tab:blue")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def _plot_series(axis, epochs, per_epoch, keys, title) -> None:
    for key in keys:
        points = [(e, per_epoch[e][key]) for e in epochs
                  if key in per_epoch[e] and math.isfinite(per_epoch[e][key])]
        if points:
            axis.plot(*zip(*points), marker="o", label=key)
    axis.set(xlabel="epoch", title=title)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend()


def _save(figure, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path.with_suffix(".png")) as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)
    return path
