"""`critical_batch.png`: steps to a target loss against batch size, log-log (premises.py's
critical batch size): each seed's best-LR run (dots), their mean, the fit S = S_min (1 +
B_noise/B) with its two asymptotes (S_min; the line of constant examples E_min/B), B_crit
with its bootstrap interval (shaded) and B_simple with its interval on the same runs (hatched).
One panel per target (training loss, test loss).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forgetting.analysis import figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STEPS = "optimiser steps to the target (count)"
BATCH = "batch size (examples per step)"


def critical_batch(block: dict) -> Figure | None:
    """The figure of premises.critical_batch's entries ({"train": ..., "test": ...}), or None
    when no target was fitted."""
    entries = {name: e for name, e in (block or {}).items() if "fit" in e}
    if not entries:
        return None
    fig, axes = figure.plt().subplots(1, len(entries), figsize=(6.4 * len(entries) + 2.2, 4.6),
                                      squeeze=False)
    for ax, (name, entry) in zip(axes.flat, entries.items()):
        sizes = [s["batch_size"] for s in entry["sizes"]]
        means = [s["steps"]["mean"] for s in entry["sizes"]]
        for s in entry["sizes"]:
            ax.scatter([s["batch_size"]] * len(s["each"]), s["each"], s=14, color="tab:blue",
                       alpha=0.5, label="one seed (its best LR factor)")
        ax.plot(sizes, means, "o", color="tab:blue", ms=7, label="mean over seeds")
        s_min, e_min = entry["fit"]["s_min"][0], entry["fit"]["e_min"][0]
        b_noise, (b_crit, lo, hi) = entry["fit"]["b_noise"][0], entry["fit"]["b_crit"]
        grid = [sizes[0] * (sizes[-1] * 2 / sizes[0]) ** (k / 60) for k in range(61)]
        ax.plot(grid, [s_min * (1 + b_noise / b) for b in grid], color="black",
                label=r"fit $S = S_\mathrm{min}(1 + B_\mathrm{noise}/B)$")
        ax.plot(grid, [s_min] * len(grid), ":", color="grey", label=r"$S_\mathrm{min}$")
        ax.plot(grid, [e_min / b for b in grid], "--", color="grey",
                label=r"$E_\mathrm{min}/B$ (perfect scaling)")
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.2,
                   label=f"$B_\\mathrm{{crit}}$ {b_crit:.0f} [{lo:.0f}, {hi:.0f}]")
        ax.axvline(b_crit, color="tab:orange")
        noise = entry.get("b_simple")
        if noise:
            ax.axvspan(noise["lo"], noise["hi"], facecolor="none", edgecolor="tab:green",
                       hatch="//", label=f"$B_\\mathrm{{simple}}$ {noise['geomean']:.0f} "
                       f"[{noise['lo']:.0f}, {noise['hi']:.0f}]")
            ax.axvline(noise["geomean"], color="tab:green")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(BATCH)
        ax.set_ylabel(STEPS)
        target = f" {entry['target']:g}" if entry["target"] is not None else ""
        ax.set_title(f"{name} loss target{target} ({entry['seeds']} seeds)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        figure.legend_outside(ax, list(unique.values()), list(unique))
    figure.layout(fig)
    return fig
