"""Figures of the forgetting probe, one panel per run (at most MAX_RUNS, chosen evenly):

- `recency.png`: at the end of training, the final model's loss on every batch of the last
  epochs, rebuilt exactly as it was fed, against how many steps ago it was fed; its binned mean,
  the test loss (dashed) and half an epoch (dotted).
- `recency_evolution.png`: the binned curve at each probed epoch (`probe.every`), one colour per
  probed epoch in every panel.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from forgetting.analysis import figure
from forgetting.analysis.recency import PROBE_KEYS, recency_curve, steps_per_epoch_of

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

MAX_RUNS = 12
PROBE_LOSS = "final model's loss on the batch\nas it was fed (nats per example)"


def per_run_panels(table: pd.DataFrame):
    """A figure with one titled panel per run of `table` (3 to a row, spare panels hidden);
    returns it and the (axes, the run's rows) pairs."""
    names = list(dict.fromkeys(table["run_dir"]))
    shown = set(figure.evenly(names, MAX_RUNS))
    runs = [rows for name, rows in table[table["run_dir"].isin(shown)].groupby(
        "run_dir", sort=False)]
    cols = min(3, len(runs))
    nrows = math.ceil(len(runs) / cols)
    fig, axes = figure.plt().subplots(nrows, cols, figsize=(4.6 * cols + 2.2, 3.6 * nrows),
                                      squeeze=False)
    keys = figure.varying(table, PROBE_KEYS) or ["lr"]
    for ax in list(axes.flat)[len(runs):]:
        ax.set_visible(False)
    for ax, rows in zip(axes.flat, runs):
        first = rows.iloc[0]
        ax.set_title(figure.label_of(keys, [first[k] for k in keys]), fontsize=9)
        ax.grid(True, alpha=0.3)
    if len(runs) < len(names):
        fig.suptitle(f"{len(runs)} of {len(names)} runs", fontsize=10)
    return fig, list(zip(axes.flat, runs))


def recency(table: pd.DataFrame, bin_epochs: float) -> Figure:
    from matplotlib.ticker import MaxNLocator

    fig, panels = per_run_panels(table)
    for ax, rows in panels:
        rows = rows[rows["probe_epoch"] == rows["probe_epoch"].max()]
        curve = recency_curve(rows, bin_epochs)
        half = steps_per_epoch_of(rows) / 2
        ax.scatter(rows["steps_ago"], rows["loss"], s=3, alpha=0.3, color="tab:blue",
                   label="one batch")
        ax.plot(curve["steps_ago"], curve["loss"], color="tab:blue", lw=2,
                label=f"mean per {bin_epochs:g} epoch")
        ax.axhline(rows["test_loss"].iloc[0], color="tab:red", ls="--",
                   label="test loss (same model)")
        ax.axvline(half, color="tab:gray", ls=":", label="half an epoch ago")
        ax.set_xlabel(figure.STEPS_AGO)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are counts
        ax.set_ylabel(PROBE_LOSS)
    figure.legend_outside(panels[min(3, len(panels)) - 1][0],
                          *figure.legend_entries([panels[0][0]]))
    return fig


def recency_evolution(table: pd.DataFrame, bin_epochs: float) -> Figure:
    from matplotlib.lines import Line2D

    fig, panels = per_run_panels(table)
    colour = figure.colours(table["probe_epoch"].unique())
    for ax, rows in panels:
        for epoch, at in rows.groupby("probe_epoch"):
            curve = recency_curve(at, bin_epochs)
            ax.plot(curve["epochs_ago"], curve["loss"], color=colour[epoch],
                    label=f"after epoch {epoch}")
            ax.axhline(at["test_loss"].iloc[0], color=colour[epoch], ls="--", lw=0.8)
        ax.set_xlabel(figure.EPOCHS_AGO)
        ax.set_ylabel(PROBE_LOSS)
    handles, labels = figure.legend_entries([ax for ax, _ in panels])
    order = sorted(range(len(labels)), key=lambda i: int(labels[i].split()[-1]))
    handles = [handles[i] for i in order] + [Line2D([], [], color="black", ls="--", lw=0.8)]
    labels = [labels[i] for i in order] + ["test loss (dashed, the epoch's colour)"]
    figure.legend_outside(panels[min(3, len(panels)) - 1][0], handles, labels)
    return fig


def in_examples(table: pd.DataFrame, results: pd.DataFrame) -> Figure:
    """`recency_examples.png`: the final probe's loss against *examples* since the batch was fed
    (steps ago x batch size), binned as premises.py bins it, the mean over seeds per batch size
    (one colour each, the test loss dashed in it), one panel per LR factor and subset."""
    from matplotlib.lines import Line2D

    from forgetting.analysis.premises import BIN_EXAMPLES

    keys = results.set_index("run_dir")[["lr", "subset", "batch_size", "seed"]]
    last = table.groupby("run_dir")["probe_epoch"].transform("max")
    rows = table[table["probe_epoch"] == last].drop(
        columns=[c for c in keys.columns if c in table]).join(keys, on="run_dir")
    rows = rows.assign(examples=rows["steps_ago"] * rows["batch_size"])
    rows = rows.assign(bin=(rows["examples"] // BIN_EXAMPLES + 0.5) * BIN_EXAMPLES)
    per_run = rows.groupby(["lr", "subset", "batch_size", "seed", "bin"])[
        ["loss", "test_loss"]].mean().reset_index()
    curves = per_run.groupby(["lr", "subset", "batch_size", "bin"])[["loss", "test_loss"]].agg(
        ["mean", "count"]).reset_index()
    points = sorted({(lr, s) for lr, s in zip(curves["lr"], curves["subset"])})
    colour = figure.colours(curves["batch_size"].unique())
    cols = min(3, len(points))
    nrows = math.ceil(len(points) / cols)
    fig, axes = figure.plt().subplots(nrows, cols, figsize=(4.6 * cols + 2.2, 3.6 * nrows),
                                      squeeze=False, sharey=True)
    for ax in list(axes.flat)[len(points):]:
        ax.set_visible(False)
    for ax, (lr, subset) in zip(axes.flat, points):
        here = curves[(curves["lr"] == lr) & (curves["subset"] == subset)]
        for batch, c in here.groupby("batch_size"):
            seeds = int(c[("loss", "count")].max())
            ax.plot(c["bin"], c[("loss", "mean")], color=colour[batch],
                    label=f"batch {batch} (mean of {seeds} seed{'s' * (seeds > 1)})")
            ax.axhline(c[("test_loss", "mean")].mean(), color=colour[batch], ls="--", lw=0.8)
        ax.set_title(figure.label_of(["lr", "subset"], [lr, subset]), fontsize=9)
        ax.set_xlabel("examples since the batch was fed (count)")
        ax.set_ylabel(PROBE_LOSS)
        ax.grid(True, alpha=0.3)
    handles, labels = figure.legend_entries([ax for ax in axes.flat if ax.get_visible()])
    figure.legend_outside(axes.flat[min(3, len(points)) - 1], handles + [
        Line2D([], [], color="black", ls="--", lw=0.8)],
        labels + ["test loss (dashed, the batch's colour)"])
    figure.layout(fig)
    return fig
