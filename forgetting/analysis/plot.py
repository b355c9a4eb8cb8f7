"""Figures of a sweep, as PNG files.

    python -m forgetting.plot DIR [DIR ...] [--out FOLDER]

Reads the run folders under each DIR (forgetting/runs/results.py) and writes into `DIR/figures/`
(or FOLDER) whichever of these the runs allow:

- `lr_subset.png`: final train and test loss vs LR factor (log2 axis), one line per subset
  size, one row per batch size; mean over seeds with min-max bars; diverged runs marked with
  a cross at the top of the panel, failed runs listed in the title, none dropped silently.
- `test_loss_per_epoch.png`: test loss per epoch, one panel per LR factor, one line per
  dataset (subset, augmentation, batch size: what the sweep varies).
- `recency.png`: the forgetting probe at the end of each run: loss of every probed batch vs
  steps ago, its binned mean, the test loss (dashed) and half an epoch (dotted).
- `recency_evolution.png`: the binned probe curve at each probed epoch (`probe.every`).
- `recipes.png`: test accuracy of each run per recipe, with the target accuracy.
- `sharpness.png`, `noise_scale.png`: the diagnostics (forgetting/analysis/plot_diag.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.analysis import plot_diag
from forgetting.analysis.analyze import Thresholds, is_lr_subset_grid
from forgetting.analysis.recency import finished_probes, recency_curve, steps_per_epoch_of
from forgetting.core.metrics import DIVERGED, FAILED, OK

if TYPE_CHECKING:
    import pandas as pd

DATASET_KEYS = ("trainset", "subset", "augment", "batch_size", "cutout", "width", "budget")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row, keys) -> str:
    parts = []
    for k in keys:
        v = row[k]
        parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def varying(frame: pd.DataFrame, keys) -> list[str]:
    return [k for k in keys if k in frame and frame[k].nunique(dropna=False) > 1]


def lr_subset(results: pd.DataFrame, path: Path) -> Path:
    plt = _plt()
    sizes = sorted(results["batch_size"].dropna().unique())
    fig, axes = plt.subplots(len(sizes), 2, figsize=(11, 4.2 * len(sizes)), squeeze=False)
    cmap = plt.get_cmap("viridis")
    subsets = sorted(results["subset"].dropna().unique())
    for row, bs in zip(axes, sizes):
        runs = results[results["batch_size"] == bs]
        for ax, metric, title in ((row[0], "train_loss", "final train loss"),
                                  (row[1], "test_loss", "final test loss")):
            for k, subset in enumerate(subsets):
                color = cmap(k / max(1, len(subsets) - 1) * 0.9)
                ok = runs[(runs["subset"] == subset) & (runs["status"] == OK)]
                stats = ok.groupby("lr")[metric].agg(["mean", "min", "max", "count"])
                if len(stats):
                    yerr = [stats["mean"] - stats["min"], stats["max"] - stats["mean"]]
                    ax.errorbar(stats.index, stats["mean"],
                                yerr=yerr if stats["count"].max() > 1 else None,
                                color=color, marker="o", ms=4, capsize=3,
                                label=f"subset {subset:g}")
                div = runs[(runs["subset"] == subset) & (runs["status"] == DIVERGED)]
                if len(div):
                    ax.plot(div["lr"], [1.0] * len(div), "x", color=color, ms=9, mew=2,
                            transform=ax.get_xaxis_transform(), clip_on=False)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(_factor_formatter())
            if metric == "train_loss":
                ax.set_yscale("log")
            ax.set_xlabel("LR factor (x the recipe's LR)")
            ax.set_ylabel(metric.replace("_", " "))
            failed = runs[runs["status"] == FAILED]
            note = f"; {len(failed)} failed" if len(failed) else ""
            ax.set_title(f"batch {int(bs)}: {title}{note}", fontsize=10)
            ax.grid(True, alpha=0.3)
        handles, labels = row[1].get_legend_handles_labels()
        if (runs["status"] == DIVERGED).any():
            handles.append(row[1].plot([], [], "x", color="k", ms=8, mew=2)[0])
            labels.append("diverged (x at top)")
        row[1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, path)


def per_epoch(history: pd.DataFrame, path: Path) -> Path | None:
    plt = _plt()
    hist = history.dropna(subset=["test_loss"])
    if hist.empty or hist.groupby("run_dir").size().max() < 2:  # final test loss only
        return None
    lrs = sorted(hist["lr"].dropna().unique())
    keys = varying(hist, DATASET_KEYS) or ["subset"]
    seeds = "seed" in varying(hist, ["seed"])
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.2 * len(lrs), 4), squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for _, group in hist[hist["lr"] == lr].groupby("run_dir"):
            first = group.iloc[0]
            ax.plot(group["epoch"], group["test_loss"], marker=".",
                    label=_label(first, keys) + (f", seed {first['seed']}" if seeds else ""))
        ax.set_title(f"LR factor {lr:g}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def per_run_panels(table: pd.DataFrame):
    """A figure with one titled panel per run of `table` (3 to a row, spare panels hidden);
    returns it and the (axes, the run's rows) pairs."""
    plt = _plt()
    runs = [rows for _, rows in table.groupby("run_dir", sort=False)]
    cols = min(3, len(runs))
    nrows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4 * nrows), squeeze=False)
    keys = varying(table, ("lr",) + DATASET_KEYS) or ["lr"]
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    for ax, rows in zip(axes.flat, runs):
        ax.set_title(_label(rows.iloc[0], keys), fontsize=10)
        ax.grid(True, alpha=0.3)
    return fig, list(zip(axes.flat, runs))


def recency(table: pd.DataFrame, path: Path, bin_epochs: float) -> Path:
    fig, panels = per_run_panels(table)
    for ax, rows in panels:
        rows = rows[rows["probe_epoch"] == rows["probe_epoch"].max()]
        curve = recency_curve(rows, bin_epochs)
        half = steps_per_epoch_of(rows) / 2
        ax.scatter(rows["steps_ago"], rows["loss"], s=3, alpha=0.3, color="tab:blue",
                   label="one batch")
        ax.plot(curve["steps_ago"], curve["loss"], color="tab:blue", lw=2,
                label=f"mean per {bin_epochs:g} epoch")
        ax.axhline(rows["test_loss"].iloc[0], color="tab:red", ls="--", label="test loss")
        ax.axvline(half, color="gray", ls=":", label="half an epoch ago")
        ax.set_xlabel("steps ago (0 = the last batch)")
        ax.set_ylabel("loss of the batch as it was seen")
        ax.legend(fontsize=7)
    return _save(fig, path)


def recency_evolution(table: pd.DataFrame, path: Path, bin_epochs: float) -> Path:
    fig, panels = per_run_panels(table)
    cmap = _plt().get_cmap("plasma")
    for ax, rows in panels:
        epochs = sorted(rows["probe_epoch"].unique())
        for k, epoch in enumerate(epochs):
            at = rows[rows["probe_epoch"] == epoch]
            curve = recency_curve(at, bin_epochs)
            color = cmap(k / max(1, len(epochs) - 1) * 0.85)
            ax.plot(curve["epochs_ago"], curve["loss"], color=color, label=f"after epoch {epoch}")
            ax.axhline(at["test_loss"].iloc[0], color=color, ls="--", lw=0.8)
        ax.set_xlabel("epochs ago")
        ax.set_ylabel("probe loss (dashed: test loss)")
        ax.legend(fontsize=7)
    return _save(fig, path)


def recipes(results: pd.DataFrame, path: Path, target: float | None = None) -> Path:
    plt = _plt()
    names = sorted(results["recipe"].dropna().unique())
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 4))
    for i, name in enumerate(names):
        ok = results[(results["recipe"] == name) & (results["status"] == OK)]
        ax.plot([i] * len(ok), ok["test_acc"], "o", alpha=0.7)
    if target is None and results["target_acc"].notna().any():
        target = float(results["target_acc"].dropna().iloc[0])
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", label=f"target {target:.2%}")
        ax.legend(fontsize=8)
    batch = results.groupby("recipe")["batch_size"].first()
    ax.set_xticks(range(len(names)), [f"{n}\n(batch {batch[n]})" for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("test accuracy")
    ax.set_title("final test accuracy per run", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _factor_formatter():
    """LR factors as 1/8, 1/4, 1/2, 1, 2, ... on a log2 axis."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:g}" if v >= 1 else f"1/{1 / v:g}")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def plot(dirs: list[Path], out: Path, bin_epochs: float = Thresholds.bin,
         target_acc: float | None = None) -> list[Path]:
    """Write every figure the runs under `dirs` allow into `out`; return their paths."""
    from forgetting.runs.results import build_tables

    results, tables, _ = build_tables(dirs)
    if results.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if is_lr_subset_grid(results):
        written.append(lr_subset(results, out / "lr_subset.png"))
    history = tables["history"]
    if not history.empty and history["run_dir"].nunique() > 1:
        written.append(per_epoch(history, out / "test_loss_per_epoch.png"))
    if not history.empty:
        written.append(plot_diag.sharpness(history, results, out / "sharpness.png"))
        written.append(plot_diag.noise_scale(history, out / "noise_scale.png"))
    table = finished_probes(results, tables["recency"])
    if not table.empty:
        written.append(recency(table, out / "recency.png", bin_epochs))
        if table.groupby("run_dir")["probe_epoch"].nunique().max() > 1:
            written.append(recency_evolution(table, out / "recency_evolution.png", bin_epochs))
    if "lr_subset.png" not in {p.name for p in written if p} and results["recipe"].nunique() > 1:
        written.append(recipes(results, out / "recipes.png", target_acc))
    return [p for p in written if p is not None]
