"""Figures of a sweep, as PNG files.

    python -m forgetting.plot DIR [DIR ...] [--out FOLDER]

Reads the run folders under each DIR (forgetting/runs/results.py) and writes into `DIR/figures/`
(or FOLDER) whichever of these the runs allow:

- `lr_subset.png`: final train and test loss vs LR factor (log2 axis), one colour per subset
  size, one row per batch size; the mean over seeds with its min-max band and every seed as a
  dot; diverged runs marked with a cross at the top of the panel, failed runs counted in the
  title, none dropped silently.
- `test_loss_per_epoch.png`: test loss per epoch, one panel per LR factor, one colour per
  dataset (subset, augmentation, batch size: what the sweep varies), mean over seeds with a band.
- `recency.png`, `recency_evolution.png`: the forgetting probe
  (forgetting/analysis/plot_recency.py).
- `recipes.png`: test accuracy of each run per recipe, with the target accuracy.
- `sharpness.png`, `noise_scale.png`, `equal_eta.png`: the diagnostics
  (forgetting/analysis/plot_diag.py).

Every figure aggregates with one groupby before drawing, so its cost grows with the number of
lines and panels, not of runs; conventions shared by all (colours, units, scales, legends,
missing points) are in forgetting/analysis/figure.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.analysis import figure, plot_diag, plot_recency
from forgetting.analysis.analyze import Thresholds, is_lr_subset_grid
from forgetting.analysis.recency import finished_probes
from forgetting.core.metrics import DIVERGED, FAILED, OK

if TYPE_CHECKING:
    import pandas as pd

DATASET_KEYS = ("trainset", "subset", "augment", "batch_size", "cutout", "width", "budget")
MAX_PANELS = 12  # per-LR-factor panels drawn at most (evenly chosen when a search has more)


def label_of(values: tuple, keys: list[str]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in zip(keys, values))


def lr_subset(results: pd.DataFrame, path: Path) -> Path:
    plt = figure.plt()
    sizes = sorted(results["batch_size"].dropna().unique())
    colour = figure.colours(results["subset"])
    fig, axes = plt.subplots(len(sizes), 2, figsize=(11, 3.8 * len(sizes)), squeeze=False)
    ok = results[results["status"] == OK]
    stats = {m: ok.groupby(["batch_size", "subset", "lr"])[m].agg(["mean", "min", "max",
                                                                    "count"])
             for m in ("train_loss", "test_loss")}
    diverged = results[results["status"] == DIVERGED].groupby(["batch_size", "subset"])["lr"]
    diverged = {k: sorted(set(v)) for k, v in diverged}
    failed = results[results["status"] == FAILED].groupby("batch_size").size()
    # points with no outcome at all (every run failed): a marker, the reason in the legend
    done = results[results["status"].isin([OK, DIVERGED])].groupby(
        ["batch_size", "subset", "lr"]).size()
    lost = results[results["status"] == FAILED].groupby(["batch_size", "subset"])["lr"]
    lost = {k: sorted(v for v in set(lrs) if (*k, v) not in done.index) for k, lrs in lost}
    for row, bs in zip(axes, sizes):
        for ax, metric, title in ((row[0], "train_loss", "final train loss"),
                                  (row[1], "test_loss", "final test loss")):
            at = stats[metric].xs(bs, level="batch_size") if len(stats[metric]) and bs in \
                stats[metric].index.get_level_values("batch_size") else None
            points = ok[ok["batch_size"] == bs]
            for subset, c in colour.items():
                if at is not None and subset in at.index.get_level_values("subset"):
                    curve = at.xs(subset, level="subset")
                    figure.spread(ax, curve.index, curve, c, f"subset {subset:g}")
                    mine = points[points["subset"] == subset]
                    if curve["count"].max() > 1:
                        ax.scatter(mine["lr"], mine[metric], s=6, color=c, alpha=0.45, lw=0)
                figure.mark_missing(ax, lost.get((bs, subset), []), c, "failed (no result)")
                lrs = diverged.get((bs, subset), [])
                if lrs:
                    ax.plot(lrs, [1.0] * len(lrs), "x", color=c, ms=9, mew=2,
                            transform=ax.get_xaxis_transform(), clip_on=False)
            figure.lr_axis(ax)
            if at is not None:
                figure.log_if_wide(ax, at["mean"])
            ax.set_ylabel(f"{title} (nats per example)")
            note = f"; {int(failed[bs])} failed" if bs in failed.index else ""
            ax.set_title(f"batch {int(bs)}: {title}{note}", fontsize=10)
            ax.grid(True, alpha=0.3)
        handles, labels = figure.dedupe_legend(row[1])
        if any(k[0] == bs for k in diverged):
            handles.append(row[1].plot([], [], "x", color="k", ms=8, mew=2)[0])
            labels.append("diverged (× at top)")
        figure.legend_outside(row[1], handles, labels)
    return figure.save(fig, path)


def panel_columns(panels: int) -> int:
    """Columns of a grid of `panels` panels: 2 up to 4 panels, 3 up to 9, then 4 (no strips)."""
    return min(panels, 2 if panels <= 4 else 3 if panels <= 9 else 4)


def with_run_columns(history: pd.DataFrame, results: pd.DataFrame, keys) -> pd.DataFrame:
    """The history with the results' `keys` and status joined on run_dir (one merge)."""
    wanted = [k for k in (*keys, "status") if k in results and k not in history]
    if not wanted:
        return history
    return history.merge(results[["run_dir", *wanted]], on="run_dir", how="left")


def per_epoch(history: pd.DataFrame, results: pd.DataFrame, path: Path) -> Path | None:
    hist = with_run_columns(history, results, DATASET_KEYS)
    hist = hist[hist["test_loss"].notna()]
    if hist.empty or hist.groupby("run_dir").size().max() < 2:  # final test loss only
        return None
    keys = figure.varying(hist, DATASET_KEYS) or ["subset"]
    for k in keys:  # a missing value is a value of its own ("none"), not a dropped group
        if hist[k].isna().any():
            hist = hist.assign(**{k: hist[k].astype(object).where(hist[k].notna(), "none")})
    all_lrs = sorted(hist["lr"].dropna().unique())
    lrs = figure.evenly(all_lrs, MAX_PANELS)
    hist = hist[hist["lr"].isin(lrs)]
    stats = hist.groupby(["lr", *keys, "epoch"])["test_loss"].agg(["mean", "min", "max",
                                                                 "count"])
    datasets = sorted({tuple(k[1:-1]) for k in stats.index}, key=figure.sort_key)
    colour = dict(zip(datasets, figure.colours(range(len(datasets))).values()))
    gone = hist[hist["status"] == DIVERGED].groupby("run_dir").tail(1) \
        if "status" in hist else hist.iloc[:0]
    cols = panel_columns(len(lrs))
    rows = math.ceil(len(lrs) / cols)
    import numpy as np

    plt = figure.plt()
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 2.4, 3.0 * rows),
                             squeeze=False)
    for ax in list(axes.flat)[len(lrs):]:
        ax.set_visible(False)
    for ax, lr in zip(axes.flat, lrs):
        at = stats.xs(lr, level="lr")
        for data, curve in at.groupby(level=list(range(len(keys)))):
            data = data if isinstance(data, tuple) else (data,)
            figure.spread(ax, curve.index.get_level_values("epoch"), curve, colour[data],
                          label_of(data, keys), marker=".")
        for data, ends in gone[gone["lr"] == lr].groupby(keys):
            data = data if isinstance(data, tuple) else (data,)
            figure.mark_missing(ax, ends["epoch"], colour[data], "diverged after this epoch")
        figure.integer_epochs(ax)
        figure.log_if_wide(ax, at["mean"])
        ax.set_title(f"LR factor {lr:g}", fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test loss (nats per example)")
    for i, j in zip(*np.nonzero(np.ones(axes.shape)[:-1])):  # the epoch label once a column
        if axes[i + 1, j].get_visible():
            axes[i, j].set_xlabel("")
    note = f" ({len(lrs)} of {len(all_lrs)} LR factors)" if len(lrs) < len(all_lrs) else ""
    seeds = "mean over seeds (band: min-max)" if (stats["count"] > 1).any() else \
        "one run per point"
    fig.suptitle(f"test loss per epoch, {seeds}{note}", fontsize=11)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*figure.dedupe_legend(ax)):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    figure.legend_outside(list(axes.flat)[min(cols, len(lrs)) - 1], handles, labels)
    return figure.save(fig, path)


def recipes(results: pd.DataFrame, path: Path, target: float | None = None) -> Path:
    plt = figure.plt()
    names = sorted(results["recipe"].dropna().unique())
    colour = figure.colours(names)
    fig, ax = plt.subplots(figsize=(2.4 + 1.6 * len(names), 4))
    ok = results[results["status"] == OK]
    for i, name in enumerate(names):
        acc = ok.loc[ok["recipe"] == name, "test_acc"]
        ax.plot([i] * len(acc), acc, "o", alpha=0.7, color=colour[name])
        if len(acc):
            ax.plot([i - 0.25, i + 0.25], [acc.median()] * 2, color=colour[name], lw=2)
    if target is None and results["target_acc"].notna().any():
        target = float(results["target_acc"].dropna().iloc[0])
    if target is not None:
        ax.axhline(target, color="tab:red", ls="--", label=f"target {target:.2%}")
        figure.legend_outside(ax)
    batch = results.groupby("recipe")["batch_size"].first()
    ax.set_xticks(range(len(names)), [f"{n}\n(batch {batch[n]})" for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("test accuracy (fraction of test images)")
    ax.set_title("final test accuracy per run (bar: median)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return figure.save(fig, path)


def plot_tables(results: pd.DataFrame, tables: dict, out: Path,
                bin_epochs: float = Thresholds.bin,
                target_acc: float | None = None) -> list[Path]:
    """Write every figure the tables allow into `out`; return their paths."""
    if results.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if is_lr_subset_grid(results):
        written.append(lr_subset(results, out / "lr_subset.png"))
    history = tables.get("history")
    if history is not None and not history.empty and history["run_dir"].nunique() > 1:
        written.append(per_epoch(history, results, out / "test_loss_per_epoch.png"))
    if history is not None and not history.empty:
        history = with_run_columns(history, results, ("subset", "batch_size"))
        written.append(plot_diag.sharpness(history, results, out / "sharpness.png"))
        written.append(plot_diag.noise_scale(history, out / "noise_scale.png"))
        written.append(plot_diag.equal_eta(history, results, out / "equal_eta.png"))
    table = finished_probes(results, tables.get("recency"))
    if not table.empty:
        written.append(plot_recency.recency(table, out / "recency.png", bin_epochs))
        if table.groupby("run_dir")["probe_epoch"].nunique().max() > 1:
            written.append(plot_recency.recency_evolution(table, out / "recency_evolution.png",
                                                          bin_epochs))
    if "lr_subset.png" not in {p.name for p in written if p} and results["recipe"].nunique() > 1:
        written.append(recipes(results, out / "recipes.png", target_acc))
    return [p for p in written if p is not None]


def plot(dirs: list[Path], out: Path, bin_epochs: float = Thresholds.bin,
         target_acc: float | None = None) -> list[Path]:
    """Write every figure the runs under `dirs` allow into `out`; return their paths."""
    from forgetting.runs.results import build_tables

    results, tables, _ = build_tables(dirs)
    return plot_tables(results, tables, out, bin_epochs, target_acc)
