"""What a sweep shows: the optimal LR factor per subset, the instability edge, and a verdict.

    python -m forgetting.analyze DIR [DIR ...] [--out FOLDER] [--jump 1.0] [--within 0.1] ...

Reads the run folders under each DIR (forgetting/tables/results.py), prints a short text and writes
`verdict.json` and `verdict.txt` into the first DIR. Sections, each where the data allow:

- **LR × subset** (per batch size): the optimal LR factor per subset size by mean test loss over
  seeds among the factors below the onset, interpolated on the log2 grid (a parabola through the
  best point and its neighbours);
  the instability onset: the smallest factor where a run diverged (its training loss not
  finite or above 1,000 nats: metrics.blown_up), or the final train loss rose by more than
  `--jump` (relative) and `--jump-abs` (nats) over the previous grid point; and the verdict:
  *forgetting-limited* when the full set's optimum sits below the edge by at least
  `--edge-gap` (a factor) and the smallest subset's optimum is at least `--shift` times the
  largest subset's; *curvature-limited* when the largest subset's optimum is within
  `--edge-gap` of the edge; otherwise *inconclusive*, with the reason.
- **Recipes** (runs that differ in recipe): runs, share reaching `target_acc`, median time.
- **Replication** (some point run on >= 2 seeds; seeds.py): each seed's optima and the claims
  on k of n seeds, per-seed sharpness ratios and noise scales with their intervals.
- **Probe** (recency.parquet): per run, how many steps ago a batch must have been seen for its
  loss (averaged over bins of `--bin` of an epoch) to be within `--within` of the test loss.
- **Onset against width** (onset.py; >= 2 widths with sharpness measured): per width and seed
  the onset's bracket, a power law in width and its prediction at width 1.
- **Above the edge, step by step** (mechanism.py; runs with steps.parquet and sharpness): per
  run whether the updates oscillate with period 2 along the top eigenvector, and how much of
  lambda_max's fall the weight norm's growth accounts for; equal-eta_eff pairs split.
- **Premises** (premises.py): forgetting against batch size and dataset size in examples, and
  the critical batch size against B_simple, each with its interval and on how many seeds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.analysis.curvature import curvature, measured_grid
from forgetting.analysis.mechanism import measured_steps, mechanism
from forgetting.analysis.onset import measured_widths, onset_width
from forgetting.analysis.premises import premises
from forgetting.analysis.recency import finished_probes, summarize
from forgetting.analysis.seeds import mixed_precisions, replication
from forgetting.analysis.verdict import decide
from forgetting.core.config import Config
from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Thresholds:
    jump: float = 1.0  # relative rise of the final train loss over one grid step (1.0 = doubling)
    jump_abs: float = 0.05  # ... and at least this many nats
    edge_gap: float = 2.0  # "at the edge": optimum within this factor of the onset
    shift: float = 2.0  # "moves with subset size": smallest/largest subset optimum >= this
    within: float = 0.1  # probe: recent-batch loss within this fraction of the test loss
    bin: float = 0.05  # probe: bin width in epochs for the recency curve
    target_acc: float | None = None  # recipes: default the runs' own target_acc
    fit: float = 0.5  # "fitted": train loss at most this times the test loss (verdict.py)
    min_seeds: float = 2  # seeds per point a label needs
    edge_ratio: float = 0.8  # measured sharpness ratio from which the edge counts as reached
    onset_ratio: float = 1.0  # onset against width: the ratio way's onset is above this


def optimum(lrs: list[float], losses: list[float]) -> tuple[float, bool]:
    """The loss-minimising factor on a log2 grid, refined by a parabola through the best point
    and its two neighbours; and whether the best point is at the grid's edge."""
    i = min(range(len(losses)), key=losses.__getitem__)
    if i == 0 or i == len(lrs) - 1:
        return lrs[i], True
    x = [math.log2(v) for v in lrs[i - 1:i + 2]]
    y = losses[i - 1:i + 2]
    denom = (x[0] - x[1]) * (x[0] - x[2]) * (x[1] - x[2])
    a = (x[2] * (y[1] - y[0]) + x[1] * (y[0] - y[2]) + x[0] * (y[2] - y[1])) / denom
    b = (x[2] ** 2 * (y[0] - y[1]) + x[1] ** 2 * (y[2] - y[0]) + x[0] ** 2 * (y[1] - y[2])) / denom
    if a <= 0:
        return lrs[i], False
    vertex = min(max(-b / (2 * a), x[0]), x[2])
    return 2 ** vertex, False


def onset(curve: pd.DataFrame, th: Thresholds) -> tuple[float | None, str]:
    """First factor of a subset's curve (columns lr, train_loss, unstable) that is unstable."""
    previous = None
    for row in curve.itertuples():
        if row.unstable:
            return row.lr, DIVERGED
        if previous is not None and math.isfinite(row.train_loss) and (
                row.train_loss - previous > max(th.jump * previous, th.jump_abs)):
            return row.lr, f"train loss {previous:.3g} -> {row.train_loss:.3g}"
        if math.isfinite(row.train_loss):
            previous = row.train_loss
    return None, "none within the grid"


def not_a_grid(results: pd.DataFrame) -> str | None:
    """Why the runs with an outcome do not form an LR factor x subset grid (None when they
    do): they must vary LR factor and subset size, and nothing else about the data (the probe
    preset's datasets also differ in augmentation: not a subset-size comparison)."""
    results = results[results["status"].isin([OK, DIVERGED])]  # with an outcome
    if results.empty:
        return "no run finished (ok or diverged)"
    values = {k: sorted(results[k].dropna().unique()) if k in results else []
              for k in ("lr", "subset")}
    for key, name in (("lr", "LR factor"), ("subset", "subset")):
        if len(values[key]) < 2:
            one = f" ({values[key][0]:g})" if values[key] else ""
            return (f"the finished runs have {len(values[key])} {name}{one}; a verdict needs "
                    f"at least 2 LR factors x 2 subsets")
    differ = [k for k in ("augment", "cutout") if k in results and results[k].nunique() > 1]
    if differ:
        return (f"the runs differ in {' and '.join(differ)} as well as in subset: not a "
                "subset-size comparison")
    return None


def is_lr_subset_grid(results: pd.DataFrame) -> bool:
    """Whether the runs with an outcome form an LR factor x subset grid (`not_a_grid`)."""
    return not_a_grid(results) is None


def lr_subset(results: pd.DataFrame, th: Thresholds) -> list[dict]:
    """The LR x subset analysis, one entry per batch size."""
    out = []
    for batch_size, group in results.groupby("batch_size"):
        ok = group[group["status"] == OK]
        # one groupby for the sweep: mean losses of the ok runs, and whether any run diverged
        means = ok.groupby(["subset", "lr"])[["train_loss", "test_loss"]].mean()
        unstable = (group["status"] == DIVERGED).groupby([group["subset"], group["lr"]]).any()
        curves, edges = {}, []
        for subset, runs in group.groupby("subset"):
            curve = means.reindex(unstable.xs(subset, level="subset", drop_level=False).index)
            curve["unstable"] = unstable.xs(subset, level="subset", drop_level=False)
            curve = curve.reset_index(level="subset", drop=True).reset_index()
            lrs = curve["lr"].tolist()
            edge, why = onset(curve, th)
            # the optimum among the stable factors: below the onset, finite losses
            stable = curve["lr"] < edge if edge is not None else True
            finite = curve[curve["test_loss"].notna() & ~curve["unstable"] & stable]
            entry = {"subset": float(subset), "runs": int(len(runs)), "onset": edge,
                     "onset_reason": why}
            if len(finite):
                best, at_end = optimum(finite["lr"].tolist(), finite["test_loss"].tolist())
                where = "interior"
                if at_end:
                    where = ("grid low end" if best == lrs[0] else "grid high end"
                             if best == lrs[-1] else "last stable factor")
                entry.update(best_lr=best, best_lr_where=where,
                             best_test_loss=float(finite["test_loss"].min()))
            curves[float(subset)] = entry
            if edge is not None:
                edges.append(edge)
        entry = {"batch_size": int(batch_size), "subsets": list(curves.values()),
                 "onset": min(edges) if edges else None}
        entry.update(judge(entry, th))
        entry.update(decide(group, entry, th, optimum))
        out.append(entry)
    return out


def judge(entry: dict, th: Thresholds) -> dict:
    """forgetting-limited / curvature-limited / inconclusive for one batch size."""
    subsets = [s for s in entry["subsets"] if "best_lr" in s]
    if len(subsets) < 2:
        return {"verdict": "inconclusive", "why": "needs optimal LR factors for >= 2 subsets"}
    largest, smallest = subsets[-1], subsets[0]
    edge = entry["onset"]
    shift = smallest["best_lr"] / largest["best_lr"]
    moves = shift >= th.shift
    facts = (f"optimum {largest['best_lr']:.3g} on subset {largest['subset']:g}, "
             f"{smallest['best_lr']:.3g} on subset {smallest['subset']:g} "
             f"(x{shift:.2g}); instability from "
             f"{f'{edge:g}' if edge is not None else 'beyond the grid'}")
    if edge is not None and largest["best_lr"] * th.edge_gap >= edge:
        return {"verdict": "curvature-limited", "shift": shift,
                "why": f"{facts}: the largest subset's optimum is within x{th.edge_gap:g} of "
                       "the instability edge"}
    if moves:
        where = (f"sits below the edge (> x{th.edge_gap:g})" if edge is not None else
                 "is not at an instability (none in the grid)")
        return {"verdict": "forgetting-limited", "shift": shift,
                "why": f"{facts}: the optimum {where} and rises >= x{th.shift:g} as the "
                       "subset shrinks"}
    if shift * th.shift <= 1:
        return {"verdict": "inconclusive", "shift": shift,
                "why": f"{facts}: the optimum falls as the subset shrinks, the opposite of "
                       "what forgetting predicts"}
    if largest["best_lr_where"] == "grid low end":
        return {"verdict": "inconclusive", "shift": shift,
                "why": f"{facts}: the optimum is at the grid's low end; extend the grid"}
    return {"verdict": "inconclusive", "shift": shift,
            "why": f"{facts}: the optimum sits below the edge but does not move with subset "
                   f"size (< x{th.shift:g})"}


def recipes(results: pd.DataFrame, th: Thresholds) -> list[dict]:
    """Per recipe: runs, how many reached the target accuracy, median test accuracy and time."""
    out = []
    for recipe, group in results.groupby("recipe"):
        ok = group[group["status"] == OK]
        target = th.target_acc if th.target_acc is not None else float(
            group["target_acc"].dropna().iloc[0] if group["target_acc"].notna().any()
            else Config.target_acc)  # runs from before the key existed
        reached = int((ok["test_acc"] >= target).sum())
        out.append({"recipe": recipe, "batch_size": int(group["batch_size"].iloc[0]),
                    "runs": int(len(group)), "ok": int(len(ok)), "target_acc": target,
                    "reached": reached, "share": reached / len(group),
                    "median_test_acc": float(ok["test_acc"].median()) if len(ok) else None,
                    "median_train_s": float(ok["train_s"].median()) if len(ok) else None})
    return out


def analyze(dirs: list[Path], th: Thresholds) -> dict:
    """The report of the runs under `dirs` (see the module's docstring)."""
    from forgetting.tables import read as build_tables

    results, tables, _ = build_tables(dirs)
    return analyze_tables(results, tables, th, dirs)


def analyze_tables(results: pd.DataFrame, tables: dict, th: Thresholds,
                   dirs: list[Path]) -> dict:
    """The report of a sweep's tables (results, and `tables["recency"]` for the probe)."""
    if results.empty:
        return {"dirs": [str(d) for d in dirs], "runs": 0}
    report: dict = {"dirs": [str(d) for d in dirs], "thresholds": asdict(th),
                    "runs": int(len(results)),
                    "status": {k: int(v) for k, v in results["status"].value_counts().items()}}
    done = results[results["status"].isin([OK, DIVERGED])]  # failed/pruned: no outcome
    why = not_a_grid(done)
    if why is None:
        report["lr_subset"] = lr_subset(done, th)
    else:
        report["no_verdict"] = why
    if measured_grid(done):
        report["curvature"] = curvature(done, th, onset)
    if measured_widths(done):
        report["onset_width"] = onset_width(done, th, onset)
    if measured_steps(tables):
        report["mechanism"] = mechanism(done, tables)
    if mixed := mixed_precisions(done):
        report["warnings"] = mixed
    seeds = replication(done, report, th, optimum)
    if seeds is not None:
        report["replication"] = seeds
    if "lr_subset" not in report and results["recipe"].nunique() > 1:
        report["recipes"] = recipes(results, th)
    recency = finished_probes(results, tables.get("recency"))
    if not recency.empty:
        report["probe"] = summarize(recency, th.within, th.bin)
    if measured := premises(results, recency, th.within):
        report["premises"] = measured
    return report
