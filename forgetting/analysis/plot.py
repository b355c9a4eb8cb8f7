"""Figures of a sweep, as PNG files.

    python -m forgetting.plot DIR [DIR ...] [--out FOLDER]

Reads the run folders under each DIR (forgetting/tables/results.py) and writes into `DIR/figures/`
(or FOLDER) whichever of these the runs allow:

- `lr_subset.png`: final train and test loss vs LR factor (log2 axis), one colour per subset
  size, one row per batch size; the mean over seeds with its min-max band and every seed as a
  dot; diverged runs marked with a cross at the top of the panel, failed runs counted in the
  title, none dropped silently.
- `test_loss_per_epoch.png`: test loss per epoch, one panel per LR factor, one colour per
  dataset (subset, augmentation, batch size: what the sweep varies), mean over seeds with a band.
- `recency.png`, `recency_evolution.png`, `recency_examples.png`: the forgetting probe
  (forgetting/analysis/plot_recency.py).
- `critical_batch.png`: steps to a target loss against batch size with the fit, B_crit and
  B_simple (forgetting/analysis/plot_critical.py).
- `recipes.png`: test accuracy of each run per recipe, with the target accuracy, and each run's
  wall time.
- `mechanism.png`: runs with steps.parquet, step by step along the top eigenvector, with the
  sharpness ratio and the weight norm per measurement (plot_mechanism.py)
- `sharpness.png`, `noise_scale.png`, `equal_eta.png`: the diagnostics
  (forgetting/analysis/plot_diag.py).

`figures` draws them (matplotlib Figures, nothing written: what tests inspect), `plot_tables`
saves them. Every figure aggregates with one groupby before drawing, so its cost grows with the
number of lines and panels, not of runs; conventions shared by all (colours, labels, units,
scales, legends, missing points) are in forgetting/analysis/figure.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.analysis import figure, plot_critical, plot_diag, plot_recency
from forgetting.analysis.analyze import Thresholds, not_a_grid
from forgetting.analysis.mechanism import measured_steps, mechanism
from forgetting.analysis.plot_mechanism import mechanism_figure
from forgetting.analysis.premises import critical_batch
from forgetting.analysis.recency import finished_probes
from forgetting.core.metrics import DIVERGED, FAILED, OK

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DATASET_KEYS = ("trainset", "subset", "augment", "batch_size", "cutout", "width", "budget")
MAX_PANELS = 12  # per-LR-factor panels drawn at most (evenly chosen when a search has more)


def lr_subset(results: pd.DataFrame) -> Figure:
    sizes = sorted(results["batch_size"].dropna().unique())
    colour = figure.colours(results["subset"])
    fig, axes = figure.plt().subplots(len(sizes), 2, figsize=(11, 3.8 * len(sizes)),
                                      squeeze=False)
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
    scaled = []
    for row, bs in zip(axes, sizes):
        for ax, metric, title in ((row[0], "train_loss", "final train loss"),
                                  (row[1], "test_loss", "final test loss")):
            at = stats[metric].xs(bs, level="batch_size") if len(stats[metric]) and bs in \
                stats[metric].index.get_level_values("batch_size") else None
            points = ok[ok["batch_size"] == bs]
            for subset, c in colour.items():
                if at is not None and subset in at.index.get_level_values("subset"):
                    curve = at.xs(subset, level="subset")
                    figure.spread(ax, curve.index, curve, c, figure.label_of(["subset"],
                                                                             [subset]))
                    mine = points[points["subset"] == subset]
                    if curve["count"].max() > 1:
                        ax.scatter(mine["lr"], mine[metric], s=6, color=c, alpha=0.45, lw=0)
                figure.mark_missing(ax, lost.get((bs, subset), []), c, "failed (no result)")
                lrs = diverged.get((bs, subset), [])
                if lrs:
                    ax.plot(lrs, [1.0] * len(lrs), "x", color=c, ms=9, mew=2,
                            transform=ax.get_xaxis_transform(), clip_on=False)
            figure.lr_axis(ax)
            scaled.append((ax, at["mean"] if at is not None else []))
            ax.set_ylabel(f"{title} (nats per example)")
            note = f"; {int(failed[bs])} failed" if bs in failed.index else ""
            ax.set_title(f"{figure.label_of(['batch_size'], [bs])}: {title}{note}",
                         fontsize=10)
            ax.grid(True, alpha=0.3)
            if at is None and not any(k[0] == bs for k in diverged):
                figure.note(ax, "no run of this batch size has a result")
        handles, labels = figure.legend_entries([row[1]])
        if any(k[0] == bs for k in diverged):
            handles.append(row[1].plot([], [], "x", color="k", ms=8, mew=2)[0])
            labels.append("diverged (× at top)")
        figure.legend_outside(row[1], handles, labels)
    figure.log_y(scaled)
    return fig


def panel_columns(panels: int) -> int:
    """Columns of a grid of `panels` panels: 2 up to 4 panels, 3 up to 9, then 4 (no strips)."""
    return min(panels, 2 if panels <= 4 else 3 if panels <= 9 else 4)


def with_run_columns(history: pd.DataFrame, results: pd.DataFrame, keys) -> pd.DataFrame:
    """The history with the results' `keys` and status joined on run_dir (one merge)."""
    wanted = [k for k in (*keys, "status") if k in results and k not in history]
    if not wanted:
        return history
    return history.merge(results[["run_dir", *wanted]], on="run_dir", how="left")


def per_epoch(history: pd.DataFrame, results: pd.DataFrame) -> Figure | None:
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
    fig, axes = figure.plt().subplots(rows, cols, figsize=(3.6 * cols + 2.4, 3.0 * rows),
                                      squeeze=False)
    for ax in list(axes.flat)[len(lrs):]:
        ax.set_visible(False)
    scaled = []
    for ax, lr in zip(axes.flat, lrs):
        at = stats.xs(lr, level="lr")
        for data, curve in at.groupby(level=list(range(len(keys)))):
            data = data if isinstance(data, tuple) else (data,)
            figure.spread(ax, curve.index.get_level_values("epoch"), curve, colour[data],
                          figure.label_of(keys, data), marker=".")
        for data, ends in gone[gone["lr"] == lr].groupby(keys):
            data = data if isinstance(data, tuple) else (data,)
            figure.mark_missing(ax, ends["epoch"], colour[data], "diverged after this epoch")
        figure.integer_epochs(ax)
        scaled.append((ax, at["mean"]))
        ax.set_title(figure.label_of(["lr"], [lr]), fontsize=10)
        ax.set_ylabel("test loss (nats per example)")
        ax.grid(True, alpha=0.3)
    figure.log_y(scaled)
    note = f" ({len(lrs)} of {len(all_lrs)} LR factors)" if len(lrs) < len(all_lrs) else ""
    seeds = "mean over seeds (band: min-max)" if (stats["count"] > 1).any() else \
        "one run per point"
    fig.suptitle(f"test loss per epoch, {seeds}{note}", fontsize=11)
    figure.legend_outside(list(axes.flat)[min(cols, len(lrs)) - 1],
                          *figure.legend_entries(axes.flat))
    return fig


def recipes(results: pd.DataFrame, target: float | None = None) -> Figure:
    """Test accuracy (fraction) and wall time (s) of every run, per recipe."""
    names = sorted(results["recipe"].dropna().unique())
    colour = figure.colours(names)
    times = "wall_s" in results and results["wall_s"].notna().any()
    fig, axes = figure.plt().subplots(1, 2 if times else 1, squeeze=False,
                                      figsize=((2.4 + 1.6 * len(names)) * (2 if times else 1)
                                               + 1.6, 4))
    ok = results[results["status"] == OK]
    if target is None and results["target_acc"].notna().any():
        target = float(results["target_acc"].dropna().iloc[0])
    batch = results.groupby("recipe")["batch_size"].first()
    panels = [(axes[0, 0], "test_acc", "test accuracy (fraction of test images)",
               "final test accuracy per run (bar: median)")]
    if times:
        panels.append((axes[0, 1], "wall_s", "wall time per run (s)",
                       "wall time per run (bar: median)"))
    for ax, column, label, title in panels:
        for i, name in enumerate(names):
            values = ok.loc[ok["recipe"] == name, column].dropna()
            ax.plot([i] * len(values), values, "o", alpha=0.7, color=colour[name])
            if len(values):
                ax.plot([i - 0.25, i + 0.25], [values.median()] * 2, color=colour[name], lw=2)
        ax.set_xticks(range(len(names)), [f"{n}\n(batch {batch[n]})" for n in names])
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel("recipe (and its batch size)")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    if times:
        axes[0, 1].set_ylim(bottom=0)
    if target is not None:  # in the axis' unit: a fraction
        axes[0, 0].axhline(target, color="tab:red", ls="--", label=f"target accuracy {target:g}")
        figure.legend_outside(axes[0, -1], *figure.legend_entries([axes[0, 0]]))
    return fig


def lr_subset_gap(results: pd.DataFrame) -> str | None:
    """Why lr_subset.png is not drawn (analyze's reason there is no verdict), or None."""
    why = not_a_grid(results)
    return None if why is None else f"lr_subset.png: not drawn ({why})"


def figures(results: pd.DataFrame, tables: dict, bin_epochs: float = Thresholds.bin,
            target_acc: float | None = None) -> tuple[dict[str, Figure], list[str]]:
    """Every figure the tables allow, drawn, not saved ({file name: Figure}), and a line for
    each figure the runs do not allow, saying why."""
    if results.empty:
        return {}, []
    drawn: dict = {}
    skipped = []
    if (gap := lr_subset_gap(results)) is None:
        drawn["lr_subset.png"] = lr_subset(results)
    else:
        skipped.append(gap)
    history = tables.get("history")
    if history is not None and not history.empty and history["run_dir"].nunique() > 1:
        drawn["test_loss_per_epoch.png"] = per_epoch(history, results)
    if history is not None and not history.empty:
        history = with_run_columns(history, results, ("subset", "batch_size"))
        drawn["sharpness.png"] = plot_diag.sharpness(history, results)
        drawn["noise_scale.png"] = plot_diag.noise_scale(history, results)
        drawn["equal_eta.png"] = plot_diag.equal_eta(history, results)
    if measured_steps(tables):
        drawn["mechanism.png"] = mechanism_figure(mechanism(results, tables), tables["steps"])
    table = finished_probes(results, tables.get("recency"))
    if not table.empty:
        drawn["recency.png"] = plot_recency.recency(table, bin_epochs)
        if table.groupby("run_dir")["probe_epoch"].nunique().max() > 1:
            drawn["recency_evolution.png"] = plot_recency.recency_evolution(table, bin_epochs)
        probed = results[results["run_dir"].isin(set(table["run_dir"]))]
        panels = len(probed[["lr", "subset"]].drop_duplicates())
        if probed["batch_size"].nunique() > 1 or probed["subset"].nunique() > 1:
            if panels <= plot_recency.MAX_RUNS:
                drawn["recency_examples.png"] = plot_recency.in_examples(table, results)
            else:
                skipped.append(f"recency_examples.png: not drawn ({panels} LR factor x subset "
                               f"panels; at most {plot_recency.MAX_RUNS})")
    drawn["critical_batch.png"] = plot_critical.critical_batch(critical_batch(results))
    if "lr_subset.png" not in drawn and results["recipe"].nunique() > 1:
        drawn["recipes.png"] = recipes(results, target_acc)
    return {name: fig for name, fig in drawn.items() if fig is not None}, skipped


def plot_tables(results: pd.DataFrame, tables: dict, out: Path,
                bin_epochs: float = Thresholds.bin,
                target_acc: float | None = None) -> list[Path]:
    """Write every figure the tables allow into `out` (created only when there is one);
    return their paths."""
    return save_all(figures(results, tables, bin_epochs, target_acc)[0], out)


def save_all(drawn: dict, out: Path) -> list[Path]:
    if drawn:
        out.mkdir(parents=True, exist_ok=True)
    return [figure.save(fig, out / name) for name, fig in drawn.items()]


def plot(dirs: list[Path], out: Path, bin_epochs: float = Thresholds.bin,
         target_acc: float | None = None) -> tuple[list[Path], list[str]]:
    """Write every figure the runs under `dirs` allow into `out`; return their paths and a
    line for each figure not drawn, saying why."""
    from forgetting.tables import read as build_tables

    results, tables, _ = build_tables(dirs)
    drawn, skipped = figures(results, tables, bin_epochs, target_acc)
    return save_all(drawn, out), skipped
