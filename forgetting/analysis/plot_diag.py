"""Figures of the diagnostics (`diag.*`), from a sweep's gathered history:

- `sharpness.png`: η_eff (λ_max + wd) over training, one colour per LR factor (the same in
  every panel; mean over seeds with a min-max band, the largest subset), one panel per batch
  size, with the optimiser's stability edge drawn as a line: a run whose curve reaches the line
  trains at the edge of stability. An epoch whose measurement is missing is a hollow marker on
  the bottom edge, its reason (the run's `sharpness_note`) in the legend.
- `noise_scale.png`: the gradient noise scale B_simple per epoch, likewise, with the panel's
  batch size drawn as a line: below B_simple a larger batch still trains in proportionally
  fewer steps; each run's own estimate from all its measurements (the table's `noise_scale`) a
  diamond right of its last epoch. An epoch whose |G|² estimate is not positive has no
  B_simple: a marker says so, one marker per reason.
- `equal_eta.png` (runs at >= 2 batch sizes that measured sharpness): the largest sharpness
  ratio over training and the largest λ_max against η_eff's scale, LR factor × batch / the
  smallest batch (points at the same x take the same mean-loss LR schedule), one line per batch
  size (mean over the seeds that did not diverge), every seed a point, a diverged run a cross:
  at equal η_eff, does the larger batch train sharper?
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forgetting.analysis import figure
from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

NOISE_MISSING = "|G|² not resolved (its estimate or interval reaches 0)"
RUN_NOISE = "the run's B_simple (all its measurements)"
BATCH_LINE = "the panel's batch size"


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


def _lines(ax, group: pd.DataFrame, value: pd.Series, colour: dict, reason,
           markers: dict) -> pd.Series:
    """Mean over seeds per LR factor and epoch; an epoch without a value is marked with its
    `reason` (texts aligned with `group`; none: not measured that epoch, not marked) and that
    reason's marker. Returns the means drawn."""
    frame = group.assign(value=value)
    stats = frame.groupby(["lr", "epoch"])["value"].agg(["mean", "min", "max", "count"])
    for lr, curve in stats.groupby(level="lr"):
        curve = curve[curve["mean"].notna()]  # measured every k epochs: a line through them
        x = curve.index.get_level_values("epoch")
        figure.spread(ax, x, curve, colour[lr], figure.label_of(["lr"], [lr]), marker=".")
    if reason is not None:
        missing = frame.assign(reason=reason)
        missing = missing[missing["value"].isna() & missing["reason"].notna()]
        order = sorted(colour)  # side by side where several factors miss the same epoch
        for (lr, why), at in missing.groupby(["lr", "reason"]):
            dodge = 8.0 * (order.index(lr) - (len(order) - 1) / 2)
            figure.mark_missing(ax, sorted(at["epoch"].unique()), colour[lr], why, markers[why],
                                dodge)
    figure.integer_epochs(ax)
    ax.grid(True, alpha=0.3)
    return stats["mean"]


def _empty(ax, values, text: str) -> None:
    """A panel with no measured value: its reference values (lines, run-level points) in its
    lower half, its note above them."""
    values = [v for v in values if v == v and v > 0]
    if values and ax.get_yscale() == "log":
        lo, hi = min(values), max(values)
        ax.set_ylim(lo / 10, hi * 10 * hi / lo)
        figure.log_ticks(ax, (hi / lo) ** 2 * 100)
    elif values:
        ax.set_ylim(0, 2 * max(values))
    figure.note(ax, text)


def _title(ax, size, subset) -> None:
    ax.set_title(figure.label_of(["batch_size", "subset"], [size, subset]), fontsize=10)


def sharpness(history: pd.DataFrame, results: pd.DataFrame) -> Figure | None:
    panels = _panels(history, "eta_eff", "sharpness_ratio")
    if panels is None:
        return None
    fig, out, colour = panels
    edge = float(results["stability_edge"].dropna().iloc[0]) \
        if "stability_edge" in results and results["stability_edge"].notna().any() else None
    reasons = [group["sharpness_note"].map(lambda n: n[:70] if isinstance(n, str) and n
                                           else None)
               if "sharpness_note" in group else None for _, _, group in out]
    markers = figure.missing_markers(r for rs in reasons if rs is not None for r in rs)
    scale = edge if edge is not None else 1.0
    drawn = []
    for (ax, size, group), reason in zip(out, reasons):
        means = _lines(ax, group, group["sharpness_ratio"] * scale, colour, reason, markers)
        if edge is not None:
            ax.axhline(edge, color="black", linestyle="--", label=f"stability edge {edge:.3g}")
        ax.set_ylabel(figure.SHARPNESS if edge is not None else
                      "sharpness ratio (dimensionless)")
        _title(ax, size, group["subset"].max())
        drawn.append((ax, means, [edge] if edge is not None else []))
    figure.log_y([(ax, [*means, *refs]) for ax, means, refs in drawn])
    for ax, means, refs in drawn:
        if not means.notna().any():
            _empty(ax, refs, "no epoch has a value\n(the markers say why)")
    _legend(out)
    return fig


def run_values(results: pd.DataFrame, group: pd.DataFrame) -> pd.DataFrame:
    """Each run of `group`: its LR factor, last epoch and run-level B_simple (where known)."""
    column = "noise_scale" if "noise_scale" in results else "noise_scale_run"
    runs = group.groupby("run_dir").agg(lr=("lr", "first"), epoch=("epoch", "max"))
    if column not in results:
        return runs.iloc[:0].assign(value=[])
    value = results.drop_duplicates("run_dir").set_index("run_dir")[column]
    runs = runs.assign(value=value.reindex(runs.index))
    return runs[runs["value"].notna() & (runs["value"] > 0)]


def noise_scale(history: pd.DataFrame, results: pd.DataFrame) -> Figure | None:
    panels = _panels(history, "noise_measurements", "noise_scale")
    if panels is None:
        return None
    fig, out, colour = panels
    reasons = []
    for _, _, group in out:  # the run's own note on an epoch without B_simple, else a
        if "noise_note" in group:  # measured epoch without one: |G|^2 was not positive
            reasons.append(group["noise_note"].map(short_reason))
        elif "noise_measurements" in group:
            reasons.append((group["noise_measurements"] > 0).map({True: NOISE_MISSING,
                                                                  False: None}))
        else:
            reasons.append(None)
    markers = figure.missing_markers(r for rs in reasons if rs is not None for r in rs)
    drawn = []
    for (ax, size, group), reason in zip(out, reasons):
        means = _lines(ax, group, group["noise_scale"], colour, reason, markers)
        ax.axhline(size, color="black", linestyle="--", label=BATCH_LINE)
        runs = run_values(results, group)
        for lr, at in runs.groupby("lr"):  # right of the run's last epoch: its whole run
            ax.plot(at["epoch"] + 0.3, at["value"], linestyle="none", marker="D", ms=5,
                    color=colour[lr], label=RUN_NOISE, gid="run level")
        ax.set_ylabel(figure.NOISE)
        _title(ax, size, group["subset"].max())
        drawn.append((ax, means, [size, *runs["value"]]))
    figure.log_y([(ax, [*means, *refs]) for ax, means, refs in drawn])
    for ax, means, refs in drawn:
        if not means.notna().any():
            _empty(ax, refs, "no epoch has a value (the markers say why)" +
                   ("\nthe diamonds: the run's own estimate" if len(refs) > 1 else ""))
    _legend(out)
    return fig


def equal_eta(history: pd.DataFrame, results: pd.DataFrame) -> Figure | None:
    if "max_sharpness_ratio" not in results or results["batch_size"].nunique() < 2:
        return None
    runs = results[results["max_sharpness_ratio"].notna() & results["status"].isin(
        (OK, DIVERGED))]
    runs = runs[runs["subset"] == runs["subset"].max()]
    if runs["batch_size"].nunique() < 2:
        return None
    smallest = runs["batch_size"].min()
    runs = runs.assign(eta=runs["lr"] * runs["batch_size"] / smallest)
    if "sharpness" in history and "run_dir" in history:
        top = history.groupby("run_dir")["sharpness"].max().rename("max_sharpness")
        runs = runs.join(top, on="run_dir")
    fig, axes = figure.plt().subplots(1, 2, figsize=(12.4, 4.2))
    colour = figure.colours(runs["batch_size"].unique())
    keys = ["batch_size"] + (["width"] if "width" in runs and runs["width"].nunique() > 1
                             else [])  # never pool two model widths in one line
    styles = dict(zip(sorted(runs["width"].unique()) if len(keys) > 1 else [],
                      ("-", "--", ":", "-.") * 4))
    panels = ((axes[0], "max_sharpness_ratio",
               "largest sharpness ratio over training (dimensionless)"),
              (axes[1], "max_sharpness", r"largest $\lambda_\mathrm{max}$ over training"
               "\n(nats per example / parameter²)"))
    scaled = []
    for ax, column, label in panels:
        if column not in runs:
            ax.set_visible(False)
            continue
        for key, group in runs.groupby(keys):  # a line per batch size (and width)
            key = key if isinstance(key, tuple) else (key,)
            c = colour[key[0]]
            ok = group[group["status"] == OK]
            bad = group[group["status"] != OK]
            mean = ok.groupby("eta")[column].mean()  # a diverged run's value is its own
            ax.plot(mean.index, mean.values, color=c, marker="o", ms=4,
                    linestyle=styles[key[1]] if len(key) > 1 else "-",
                    label=figure.label_of(keys, list(key)))
            ax.plot(ok["eta"], ok[column], linestyle="none", marker=".", color=c, alpha=0.6)
            ax.plot(bad["eta"], bad[column], linestyle="none", marker="x", color=c, ms=7)
        if (runs["status"] != OK).any():  # one legend entry for every batch size's crosses
            ax.plot([], [], linestyle="none", marker="x", color="black", label="diverged")
        if column == "max_sharpness_ratio":
            ax.axhline(1.0, color="black", linestyle="--", label="stability edge")
        figure.lr_axis(ax)
        ax.set_xlabel(f"η_eff scale (LR factor × batch / {smallest:g})")
        scaled.append((ax, runs[column].dropna()))
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    figure.log_y(scaled)
    seeds = runs["seed"].nunique()
    fig.suptitle(f"equal η_eff, batch sizes compared (subset {runs['subset'].max():g}; "
                 f"{seeds} seed{'s' if seeds > 1 else ''}: line = mean of the runs that did not "
                 "diverge, dots = seeds)",
                 fontsize=11)
    figure.legend_outside(scaled[-1][0], *figure.legend_entries([axes[0]]))
    return fig


def _legend(out) -> None:
    """One legend for the figure, right of the last panel: every entry of every panel once."""
    figure.legend_outside(out[-1][0], *figure.legend_entries([ax for ax, _, _ in out]))
