"""Figures people would rather look at than read: training curves, PR curves."""

from __future__ import annotations

import math
from pathlib import Path

# The Figure API renders without pyplot's global state or a display backend: importing this
# module changes nothing for other code in the process (no matplotlib.use).
from matplotlib.figure import Figure

from rockdet.atomic import atomic_path
from rockdet.stats.sfd import REFERENCE_K, SfdResult, golombek_rapp_fraction


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
    figure = Figure(figsize=(10, 4))
    loss_axis, metric_axis = figure.subplots(1, 2)
    _plot_series(loss_axis, epochs, per_epoch, ["train_loss_epoch"], "loss")
    _plot_series(metric_axis, epochs, per_epoch,
                 ["val_map_50", "val_recall_50", "val_map", "val_recall_at_score"], "validation")
    metric_axis.set_ylim(0, 1)
    figure.tight_layout()
    return _save(figure, path)


def plot_pr_curve(recall: list[float], precision: list[float], path: Path, title: str) -> Path:
    figure = Figure(figsize=(5, 4.5))
    axis = figure.subplots()
    axis.plot(recall, precision, color="tab:blue")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


#: Lower end of the F(>=D) axis: below it the model curves say nothing a map can show.
F_AXIS_MIN = 1e-4


def plot_sfd(result: SfdResult, path: Path) -> Path:
    """Log-log cumulative fractional area and number per m², fits and Golombek-Rapp references."""
    import numpy as np


    figure = Figure(figsize=(11, 4.5))
    area_axis, number_axis = figure.subplots(1, 2)
    curves = result.cumulative
    diameters = np.asarray(curves.get("diameter_m", []))
    span = np.geomspace(max(1e-3, diameters.min() / 2) if len(diameters) else 0.01,
                        max(diameters.max() * 2, 1.0) if len(diameters) else 3.0, 100)
    label_at = np.array([0.3])  # metres: where the reference curves are still apart
    for k in REFERENCE_K:
        area_axis.plot(span, golombek_rapp_fraction(span, k), color="0.75", lw=1, ls="--")
        area_axis.annotate(f"k={k:.0%}", (float(label_at[0]), float(golombek_rapp_fraction(label_at, k)[0])),
                           fontsize=7, color="0.45")
    if len(diameters):
        area_axis.loglog(diameters, curves["fractional_area"], "o", ms=3, label="rocks")
        number_axis.loglog(diameters, curves["n_per_m2"], "o", ms=3, label="rocks")
    if result.k is not None:
        used = span[(span >= result.diameter_range_m[0]) & (span <= result.diameter_range_m[1] * 1.5)]
        ci = f" [{result.k_ci95[0]:.3f}, {result.k_ci95[1]:.3f}]" if result.k_ci95 else ""
        area_axis.plot(used, golombek_rapp_fraction(used, result.k), color="tab:red",
                       label=f"fit k={result.k:.3f}{ci}")
        number_axis.plot(used, result.power_law_coefficient * used ** -result.power_law_exponent,
                         color="tab:red", label=f"N = {result.power_law_coefficient:.3g} D^-{result.power_law_exponent:.2f}")
    for axis in (area_axis, number_axis):
        if result.completeness_m:
            axis.axvline(result.completeness_m, color="tab:green", lw=1, ls=":", label="completeness cut-off")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("diameter D (m)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize=8)
    area_axis.set(ylabel="cumulative fractional area F(>=D)", title="Golombek-Rapp",
                  ylim=(F_AXIS_MIN, 1.0))
    number_axis.set(ylabel="cumulative number N(>=D) per m^2",
                    title=f"{result.rocks} rocks on {result.area_m2:.1f} m^2 ({result.status})")
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
    return path
