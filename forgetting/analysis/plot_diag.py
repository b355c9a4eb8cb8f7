"""Figures of the diagnostics (`diag.*`), from a sweep's gathered history:

- `sharpness.png`: η_eff (λ_max + wd) over training, one colour per LR factor (the same in
  every panel; mean over seeds with a min-max band, the largest subset), one panel per batch
  size, with the optimiser's stability edge drawn as a line: a run whose curve reaches the line
  trains at the edge of stability. An epoch whose measurement is missing is a hollow marker on
  the bottom edge, its reason (the run's `sharpness_note`) in the legend.
- `noise_scale.png`: the gradient noise scale B_simple per epoch, likewise, with the batch size
  drawn as a line: below B_simple a larger batch still trains in proportionally fewer steps. An
  epoch whose |G|² estimate is not positive has no B_simple: a marker says so.
- `equal_eta.png` (runs at >= 2 batch sizes that measured sharpness): the largest sharpness
  ratio over training and the largest λ_max against η_eff's scale, LR factor × batch / the
  smallest batch (points at the same x take the same mean-loss LR schedule), one line per batch
  size (mean over the seeds that did not diverge), every seed a point, a diverged run a cross:
  at equal η_eff, does the larger batch train sharper?
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.analysis import figure
from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd

NOISE_MISSING = "|G|² not resolved (its estimate or interval reaches 0)"


def _panels(history: pd.DataFrame, measured: str, column: str):
    """(figure, [(axes, batch size, the largest subset's rows of runs that measured)], the
    colour of each LR factor) or None when no run measured `column`. A run that measured
    (`measured` set) but got no value at all still has its panel: its markers say why."""
    if column not in history:
        return None
    on = history[measured].notna() if measured in history else history[column].notna()
    if not on.any() or not history.loc[on, column].notna().any() and measured not in history:
        return None
    rows = history[on]
    sizes = sorted(rows["batch_size"].dropna().unique())
    fig, axes = figure.plt().subplots(1, len(sizes), figsize=(5.2 * len(sizes) + 2.2, 4),
                                      squeeze=False)
    out = []
    for ax, size in zip(axes[0], sizes):
        group = rows[rows["batch_size"] == size]
        group = group[group["subset"] == group["subset"].max()]
        out.append((ax, size, group))
    return fig, out, figure.colours(rows["lr"].unique())


def short_reason(note) -> str | None:
    """A legend's words for a run's note on a missing value (its text before the colon)."""
    if not isinstance(note, str) or not note:
        return None
    head = note.split(":", 1)[0].strip()
    return {"not resolved": NOISE_MISSING,
            "not measured": "not measured (too few measurements)"}.get(head, head)


def _lines(ax, group: pd.DataFrame, value: pd.Series, colour: dict, reason) -> None:
    """Mean over seeds per LR factor and epoch; an epoch without a value is marked with its
    `reason` (texts aligned with `group`; none: not measured that epoch, not marked)."""
    frame = group.assign(value=value)
    stats = frame.groupby(["lr", "epoch"])["value"].agg(["mean", "min", "max", "count"])
    for lr, curve in stats.groupby(level="lr"):
        curve = curve[curve["mean"].notna()]  # measured every k epochs: a line through them
        x = curve.index.get_level_values("epoch")
        figure.spread(ax, x, curve, colour[lr], f"LR factor {lr:g}", marker=".")
    missing = frame.assign(reason=reason)
    missing = missing[missing["value"].isna() & missing["reason"].notna()]
    for (lr, why), at in missing.groupby(["lr", "reason"]):
        figure.mark_missing(ax, sorted(at["epoch"].unique()), colour[lr], why)
    figure.integer_epochs(ax)
    figure.log_if_wide(ax, stats["mean"])
    ax.grid(True, alpha=0.3)


def sharpness(history: pd.DataFrame, results: pd.DataFrame, path: Path) -> Path | None:
    panels = _panels(history, "eta_eff", "sharpness_ratio")
    if panels is None:
        return None
    fig, out, colour = panels
    edge = float(results["stability_edge"].dropna().iloc[0]) \
        if "stability_edge" in results and results["stability_edge"].notna().any() else None
    for ax, size, group in out:
        scale = edge if edge is not None else 1.0
        reason = group["sharpness_note"].map(
            lambda n: n[:70] if isinstance(n, str) and n else None) \
            if "sharpness_note" in group else None
        _lines(ax, group, group["sharpness_ratio"] * scale, colour, reason)
        if edge is not None:
            ax.axhline(edge, color="black", linestyle="--", label=f"stability edge {edge:.3g}")
        ax.set_ylabel(figure.SHARPNESS if edge is not None else "sharpness ratio")
        ax.set_title(f"batch {size:g}, subset {group['subset'].max():g}", fontsize=10)
    _legend(out)
    return figure.save(fig, path)


def noise_scale(history: pd.DataFrame, path: Path) -> Path | None:
    panels = _panels(history, "noise_measurements", "noise_scale")
    if panels is None:
        return None
    fig, out, colour = panels
    for ax, size, group in out:
        reason = None  # the run's own note on an epoch without B_simple, else a measured
        if "noise_note" in group:  # epoch without one: |G|^2 was not positive
            reason = group["noise_note"].map(short_reason)
        elif "noise_measurements" in group:
            reason = (group["noise_measurements"] > 0).map({True: NOISE_MISSING, False: None})
        _lines(ax, group, group["noise_scale"], colour, reason)
        ax.axhline(size, color="black", linestyle="--", label=f"batch size {size:g}")
        if not group["noise_scale"].notna().any():  # only the batch line: a decade either side
            ax.set_yscale("log")  # of it, and why there is nothing else
            ax.set_ylim(size / 10, size * 10)
            ax.text(0.5, 0.5, "no epoch has a value\n(the run's estimate is in the table)",
                    transform=ax.transAxes, ha="center", va="center", fontsize=9)
        ax.set_ylabel(figure.NOISE)
        ax.set_title(f"batch {size:g}, subset {group['subset'].max():g}", fontsize=10)
    _legend(out)
    return figure.save(fig, path)


def equal_eta(history: pd.DataFrame, results: pd.DataFrame, path: Path) -> Path | None:
    if "max_sharpness_ratio" not in results or results["batch_size"].nunique() < 2:
        return None
    runs = results[results["max_sharpness_ratio"].notna() & results["status"].isin(
        (OK, DIVERGED))]
    runs = runs[runs["subset"] == runs["subset"].max()]
    if runs["batch_size"].nunique() < 2:
        return None
    runs = runs.assign(eta=runs["lr"] * runs["batch_size"] / runs["batch_size"].min())
    if "sharpness" in history and "run_dir" in history:
        top = history.groupby("run_dir")["sharpness"].max().rename("max_sharpness")
        runs = runs.join(top, on="run_dir")
    fig, axes = figure.plt().subplots(1, 2, figsize=(12.4, 4.2))
    colour = figure.colours(runs["batch_size"].unique())
    panels = ((axes[0], "max_sharpness_ratio", "largest sharpness ratio over training"),
              (axes[1], "max_sharpness", r"largest $\lambda_\mathrm{max}$ over training"))
    for ax, column, label in panels:
        if column not in runs:
            ax.set_visible(False)
            continue
        for size, group in runs.groupby("batch_size"):
            c = colour[size]
            ok = group[group["status"] == OK]
            bad = group[group["status"] != OK]
            mean = ok.groupby("eta")[column].mean()  # a diverged run's value is its own
            ax.plot(mean.index, mean.values, color=c, marker="o", ms=4, label=f"batch {size:g}")
            ax.plot(ok["eta"], ok[column], linestyle="none", marker=".", color=c, alpha=0.6)
            ax.plot(bad["eta"], bad[column], linestyle="none", marker="x", color=c, ms=7)
        if (runs["status"] != OK).any():  # one legend entry for every batch size's crosses
            ax.plot([], [], linestyle="none", marker="x", color="black", label="diverged")
        if column == "max_sharpness_ratio":
            ax.axhline(1.0, color="black", linestyle="--", label="stability edge")
        figure.lr_axis(ax)
        ax.set_xlabel(f"η_eff scale: LR factor × batch / {runs['batch_size'].min():g}")
        figure.log_if_wide(ax, runs[column].dropna())
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    seeds = runs["seed"].nunique()
    fig.suptitle(f"equal η_eff, batch sizes compared (subset {runs['subset'].max():g}; "
                 f"{seeds} seed{'s' if seeds > 1 else ''}: line = mean of the runs that did not "
                 "diverge, dots = seeds)",
                 fontsize=11)
    handles, labels = figure.dedupe_legend(axes[0])
    figure.legend_outside(axes[1], handles, labels)
    return figure.save(fig, path)


def _legend(out) -> None:
    """One legend for the figure, right of the last panel: every entry of every panel once."""
    handles, labels = [], []
    for ax, _, _ in out:
        for h, lab in zip(*figure.dedupe_legend(ax)):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    figure.legend_outside(out[-1][0], handles, labels)
