"""`mechanism.png`: how runs move above the stability edge (analysis/mechanism.py), one column
per run of the lowest seed with step rows (at most MAX_RUNS, by batch size then LR factor):

1. each step's update along the last measurement's top eigenvector (`top_component`), a colour
   per window; red windows follow a measurement above the edge (ratio > 1);
2. the loss on the fixed batch after each step (nats per example, log scale);
(both against examples seen, step x batch size, so that runs at two batch sizes line up)
3. per measurement: the sharpness ratio, |w|^2 and lambda_max |w|^2 (each over its value at
   the run's first measurement), log scale, with the edge (ratio 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forgetting.analysis import figure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

MAX_RUNS = 8


def mechanism_figure(block: dict | None, steps: pd.DataFrame | None) -> Figure | None:
    runs = (block or {}).get("runs") or []
    if not runs or steps is None or steps.empty:
        return None
    seed = min(r["seed"] for r in runs)
    runs = [r for r in runs if r["seed"] == seed][:MAX_RUNS]
    fig, axes = figure.plt().subplots(3, len(runs), figsize=(3.6 * len(runs) + 1.6, 8.6),
                                      squeeze=False, sharex="row")
    for col, run in enumerate(runs):
        rows = steps[steps["run_dir"] == run["run_dir"]].sort_values("step")
        scale = run["batch_size"] / 1000  # steps -> thousands of examples
        top, loss, per = axes[0, col], axes[1, col], axes[2, col]
        for w in run["windows"]:
            part = rows[rows["step"].between(*w["steps"])]
            top.plot(part["step"] * scale, part["top_component"], lw=0.7,
                     color="tab:red" if w["ratio"] > 1 else "tab:blue")
        top.axhline(0, color="black", lw=0.5)
        loss.plot(rows["step"] * scale, rows["loss"], lw=0.7, color="black")
        loss.set_yscale("log")
        m = run["measures"]
        epochs = [x["epoch"] for x in m]
        per.plot(epochs, [x["ratio"] for x in m], "o-", color="tab:red", ms=4,
                 label="sharpness ratio")
        per.plot(epochs, [(x["weight_norm"] / m[0]["weight_norm"]) ** 2 for x in m], "s-",
                 color="tab:green", ms=3, label=r"$|w|^2$ / first")
        per.plot(epochs, [x["invariant"] / m[0]["invariant"] for x in m], "^-",
                 color="tab:purple", ms=3, label=r"$\lambda_\max |w|^2$ / first")
        per.axhline(1.0, color="black", ls="--", lw=0.8, label="edge (ratio 1)")
        per.set_yscale("log")
        top.set_title(figure.label_of(["batch_size", "lr"], [run["batch_size"], run["lr"]]),
                      fontsize=10)
        for ax in (top, loss, per):
            ax.grid(True, alpha=0.3)
        top.set_xlabel("examples seen (thousands)")
        loss.set_xlabel("examples seen (thousands)")
        per.set_xlabel("epoch (measurement)")
    axes[0, 0].set_ylabel("update along the top\neigenvector (parameter units)")
    axes[1, 0].set_ylabel("loss on the fixed batch\n(nats per example)")
    axes[2, 0].set_ylabel("ratio, and each over its\nfirst value (dimensionless)")
    axes[0, -1].plot([], [], color="tab:red", label="after a measurement above the edge")
    axes[0, -1].plot([], [], color="tab:blue", label="after one at or below it")
    figure.legend_outside(axes[0, -1], *figure.legend_entries([axes[0, -1]]))
    figure.legend_outside(axes[2, -1], *figure.legend_entries([axes[2, -1]]))
    fig.suptitle(f"above the edge, step by step (seed {seed})", fontsize=11)
    return fig
