"""Figures of the diagnostics (`diag.*`), from a sweep's gathered history:

- `sharpness.png`: eta_eff (lambda_max + wd) over training, one line per LR factor (mean over
  seeds, the largest subset), one panel per batch size, with the optimiser's stability edge
  drawn as a line: a run whose curve reaches the line trains at the edge of stability.
- `noise_scale.png`: the gradient noise scale B_simple per epoch, one line per LR factor, one
  panel per batch size, with the batch size drawn as a line: below B_simple a larger batch still
  trains in proportionally fewer steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _panels(history: pd.DataFrame, column: str):
    """(figure, [(axes, batch size, the largest subset's rows with `column`)]) or None."""
    from forgetting.analysis.plot import _plt

    if column not in history or not history[column].notna().any():
        return None
    rows = history[history[column].notna()]
    sizes = sorted(rows["batch_size"].dropna().unique())
    plt = _plt()
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.2), squeeze=False)
    out = []
    for ax, size in zip(axes[0], sizes):
        group = rows[rows["batch_size"] == size]
        group = group[group["subset"] == group["subset"].max()]
        out.append((ax, size, group))
    return fig, out


def _lines(ax, group: pd.DataFrame, value: pd.Series) -> None:
    import matplotlib

    lrs = sorted(group["lr"].unique())
    cmap = matplotlib.colormaps["plasma"]
    for i, lr in enumerate(lrs):
        at = group["lr"] == lr
        curve = value[at].groupby(group.loc[at, "epoch"]).mean()
        ax.plot(curve.index, curve.values, marker=".", color=cmap(i / max(1, len(lrs) - 1)),
                label=f"LR factor {lr:g}")
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)


def sharpness(history: pd.DataFrame, results: pd.DataFrame, path: Path) -> Path | None:
    from forgetting.analysis.plot import _save

    panels = _panels(history, "sharpness_ratio")
    if panels is None:
        return None
    fig, out = panels
    edge = float(results["stability_edge"].dropna().iloc[0]) \
        if "stability_edge" in results and results["stability_edge"].notna().any() else None
    for ax, size, group in out:
        scale = edge if edge is not None else 1.0
        _lines(ax, group, group["sharpness_ratio"] * scale)
        if edge is not None:
            ax.axhline(edge, color="black", linestyle="--", label=f"stability edge {edge:.3g}")
        ax.set_ylabel("eta_eff (lambda_max + wd)" if edge is not None else "sharpness ratio")
        ax.set_title(f"batch {size:g}, subset {group['subset'].max():g}", fontsize=10)
        ax.legend(fontsize=8)
    return _save(fig, path)


def noise_scale(history: pd.DataFrame, path: Path) -> Path | None:
    from forgetting.analysis.plot import _save

    panels = _panels(history, "noise_scale")
    if panels is None:
        return None
    fig, out = panels
    for ax, size, group in out:
        _lines(ax, group, group["noise_scale"])
        ax.axhline(size, color="black", linestyle="--", label=f"batch size {size:g}")
        ax.set_ylabel("gradient noise scale B_simple")
        ax.set_title(f"batch {size:g}, subset {group['subset'].max():g}", fontsize=10)
        ax.legend(fontsize=8)
    return _save(fig, path)
