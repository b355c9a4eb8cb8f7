"""Why a run trains above its optimiser's stability edge: the per-step evidence of
`diag.step_loss_every` (steps.parquet) read against the per-epoch sharpness and weight norm
(history), per run that has both.

Windows. A sharpness measurement after epoch m leaves its top Ritz vector v_m, along which
every later step's update is projected (`top_component`) until the next measurement. A window
is the steps under one v_m: steps m*S+1 .. m'*S (S steps an epoch, m' the next measurement's
epoch or the run's end). Per window:

- `flips` of `pairs`: consecutive measured steps (step_loss_every = 1: each step and the next)
  whose components along v_m have opposite signs, with a 95% Wilson interval. A period-2
  oscillation across the valley along v reads near 1; a drift along v (momentum's smoothing
  below the edge) near 0; noise 0.5. `oscillates`: the interval's low end above 0.5.
- `steps`: the window's first and last step row;
- `rms_first`, `rms_last`: the root mean square component over the window's first and second
  half of its steps (parameter units): a growing oscillation reads last > first, one that dies
  out last < first (or v turned away from the run's top direction since it was measured).
- `invariant_after`: lambda_max |w|^2 at the next measurement over its value at this one. Pooled
  per run over the windows above the edge and over those at or below it (geometric means): the
  edge-of-stability picture has the scale-free sharpness fall after windows above the edge
  (self-stabilisation) and rise below it (progressive sharpening).

Per measurement: the sharpness ratio eta_eff (lambda_max + wd) / edge, lambda_max, the norm |w|
of the weights that feed a BatchNorm, and `invariant` = lambda_max |w|^2. Under BatchNorm's
scale invariance the curvature of those weights scales as 1 / |w|^2, so lambda_max can fall
two ways: |w| grows (lambda_max |w|^2 unchanged: norm growth) or the landscape itself flattens
(lambda_max |w|^2 falls: what self-stabilisation does). Between a measurement above the edge and
the next one, `norm_share` = log(|w_b|^2 / |w_a|^2) / log(lambda_a / lambda_b): the part of
lambda_max's fall (on log scale) that the norm's growth accounts for, summed over every such
pair of the run (None when lambda_max did not fall).

Equal eta_eff pairs (two batch sizes, one width and seed, LR factors in the batch sizes'
inverse ratio, so the same mean-loss LR schedule): at the measurement where the larger batch
reads its largest ratio, the ratio of their ratios split into lambda_max |w|^2's ratio and
|w|^2's inverse ratio (ratio_L / ratio_S = invariant_L / invariant_S x |w_S|^2 / |w_L|^2).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from forgetting.analysis.seeds import Z975
from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd

RUN_KEYS = ("batch_size", "lr", "seed", "width")


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a share k / n."""
    if n == 0:
        return math.nan, math.nan
    z, p = Z975, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def measured_steps(tables: dict) -> bool:
    """The sweep's tables hold step rows, and a history with sharpness and weight norms."""
    steps, history = tables.get("steps"), tables.get("history")
    return (steps is not None and not steps.empty and history is not None
            and "sharpness" in history and "weight_norm" in history)


def windows(steps: pd.DataFrame, measures: list[dict], per_epoch: int) -> list[dict]:
    """One run's windows (module docstring); `measures` in epoch order."""
    import numpy as np

    out = []
    for i, m in enumerate(measures):
        end = measures[i + 1]["epoch"] if i + 1 < len(measures) else math.inf
        rows = steps[(steps["step"] > m["epoch"] * per_epoch)
                     & (steps["step"] <= end * per_epoch)].sort_values("step")
        if rows.empty:  # the run's last measurement, or a run that stopped
            continue
        c = rows["top_component"].to_numpy(float)
        keep = np.isfinite(c[1:]) & np.isfinite(c[:-1])  # consecutive rows: K steps apart
        flips = int(((np.sign(c[1:]) != np.sign(c[:-1])) & keep).sum())
        pairs = int(keep.sum())
        lo, hi = wilson(flips, pairs)
        half = len(c) // 2
        rms = [float(np.sqrt(np.nanmean(part ** 2))) if len(part) else math.nan
               for part in (c[:half], c[half:])]
        after = (measures[i + 1]["invariant"] / m["invariant"] if i + 1 < len(measures)
                 else math.nan)
        out.append({"epoch": m["epoch"], "ratio": m["ratio"], "flips": flips, "pairs": pairs,
                    "steps": (int(rows["step"].iloc[0]), int(rows["step"].iloc[-1])),
                    "invariant_after": after,
                    "lo": lo, "hi": hi, "oscillates": pairs > 0 and lo > 0.5,
                    "rms_first": rms[0], "rms_last": rms[1]})
    return out


def norm_share(measures: list[dict]) -> float | None:
    """The part of lambda_max's fall after measurements above the edge that |w|^2's growth
    accounts for (module docstring)."""
    fall = grow = 0.0
    for a, b in zip(measures, measures[1:]):
        if a["ratio"] > 1 and b["sharpness"] < a["sharpness"]:
            fall += math.log(a["sharpness"] / b["sharpness"])
            grow += 2 * math.log(b["weight_norm"] / a["weight_norm"])
    return grow / fall if fall > 0 else None


def run_entry(run: dict, steps: pd.DataFrame, history: pd.DataFrame) -> dict:
    hist = history.sort_values("epoch")
    measured = hist[hist["sharpness"].notna() & hist["weight_norm"].notna()]
    measures = [{"epoch": int(r.epoch), "ratio": float(r.sharpness_ratio),
                 "sharpness": float(r.sharpness), "weight_norm": float(r.weight_norm),
                 "invariant": float(r.sharpness * r.weight_norm ** 2)}
                for r in measured.itertuples()]
    per_epoch = max(1, round(run["steps"] / run["epochs_run"])) if run.get("epochs_run") else 1
    wins = windows(steps, measures, per_epoch)
    above = [w for w in wins if w["ratio"] > 1]
    below = [w for w in wins if w["ratio"] <= 1]
    pooled = {}
    for name, group in (("above", above), ("below", below)):
        k, n = sum(w["flips"] for w in group), sum(w["pairs"] for w in group)
        changes = [math.log(w["invariant_after"]) for w in group
                   if math.isfinite(w["invariant_after"]) and w["invariant_after"] > 0]
        pooled[name] = {"windows": len(group), "flips": k, "pairs": n, **dict(zip(
            ("lo", "hi"), wilson(k, n))), "invariant_after": math.exp(
                sum(changes) / len(changes)) if changes else math.nan}
    first, last = (measures[0], measures[-1]) if measures else (None, None)
    return {**{k: run.get(k) for k in RUN_KEYS}, "status": run["status"],
            "run_dir": run["run_dir"], "measures": measures,
            "windows": wins, "pooled": pooled, "norm_share": norm_share(measures),
            "norm_growth": (last["weight_norm"] / first["weight_norm"]) ** 2 if first else None,
            "invariant_change": last["invariant"] / first["invariant"] if first else None}


def pair_entry(small: dict, large: dict) -> dict | None:
    """An equal-eta_eff pair at the larger batch's largest-ratio measurement."""
    if not large["measures"]:
        return None
    peak = max(large["measures"], key=lambda m: m["ratio"])
    partner = next((m for m in small["measures"] if m["epoch"] == peak["epoch"]), None)
    if partner is None:
        return None
    return {"small": (small["batch_size"], small["lr"]), "large": (large["batch_size"],
            large["lr"]), "seed": small["seed"], "width": small["width"], "epoch": peak["epoch"],
            "ratios": (partner["ratio"], peak["ratio"]),
            "norms": (partner["weight_norm"], peak["weight_norm"]),
            "invariants": (partner["invariant"], peak["invariant"]),
            "norm_factor": (partner["weight_norm"] / peak["weight_norm"]) ** 2,
            "invariant_factor": peak["invariant"] / partner["invariant"]}


def mechanism(results: pd.DataFrame, tables: dict) -> dict:
    """The block of forgetting.analyze: per run with step rows, and the equal-eta_eff pairs."""
    steps, history = tables["steps"], tables["history"]
    done = results[results["status"].isin([OK, DIVERGED]) & results["run_dir"].isin(
        set(steps["run_dir"]))]
    by_run_steps = dict(tuple(steps.groupby("run_dir")))
    by_run_hist = dict(tuple(history.groupby("run_dir")))
    runs = []
    for run in done.sort_values([k for k in RUN_KEYS if k in done]).to_dict("records"):
        if run["run_dir"] in by_run_hist:
            runs.append(run_entry(run, by_run_steps[run["run_dir"]],
                                  by_run_hist[run["run_dir"]]))
    pairs = []
    for small in runs:
        for large in runs:
            if (large["batch_size"] > small["batch_size"] and large["seed"] == small["seed"]
                    and large["width"] == small["width"] and math.isclose(
                        large["lr"] * large["batch_size"], small["lr"] * small["batch_size"])):
                if (pair := pair_entry(small, large)) is not None:
                    pairs.append(pair)
    return {"runs": runs, "pairs": pairs}


def _times(v: float) -> str:
    return f"x{v:.2f}" if math.isfinite(v) else "-"


def _share(p: dict) -> str:
    if not p["pairs"]:
        return "-"
    return f"{p['flips']}/{p['pairs']} [{p['lo']:.2f}, {p['hi']:.2f}]"


def render_lines(report: dict) -> list[str]:
    """The mechanism block as text lines."""
    lines = ["", "above the edge, step by step (steps.parquet): per run, the share of "
                 "consecutive steps whose update along the top eigenvector flips sign "
                 "[95% Wilson], in windows after a measurement above the edge (ratio > 1) and "
                 "at or below it; the scale-free sharpness lambda_max |w|^2 from one "
                 "measurement to the next after each; |w|^2's growth and lambda_max |w|^2's "
                 "change over the run; "
                 "the part of lambda_max's falls after measurements above the edge that |w|^2 "
                 "accounts for"]
    for r in report["runs"]:
        width = f" width {r['width']:g}" if r.get("width") is not None else ""
        share = r["norm_share"]
        name = f"  batch {r['batch_size']} factor {r['lr']:g} seed {r['seed']}{width}"
        if not r["measures"]:
            lines.append(f"{name} ({r['status']}): no sharpness measured, nothing to read")
            continue
        lines.append(
            f"{name} ({r['status']}): flips above {_share(r['pooled']['above'])} in "
            f"{r['pooled']['above']['windows']} windows, at or below "
            f"{_share(r['pooled']['below'])}; lambda |w|^2 to the next measurement "
            f"{_times(r['pooled']['above']['invariant_after'])} after above, "
            f"{_times(r['pooled']['below']['invariant_after'])} after at or below; "
            f"|w|^2 x{r['norm_growth']:.2f}, lambda |w|^2 "
            f"x{r['invariant_change']:.2f}; norm share "
            + (f"{share:.0%}" if share is not None else "-"))
        for w in r["windows"]:
            lines.append(f"    after epoch {w['epoch']:>2}: ratio {w['ratio']:.2f}, flips "
                         f"{w['flips']}/{w['pairs']}{' (oscillates)' if w['oscillates'] else ''}"
                         f", rms {w['rms_first']:.3g} -> {w['rms_last']:.3g}, lambda |w|^2 "
                         f"{_times(w['invariant_after'])} to the next")
    for p in report["pairs"]:
        lines.append(
            f"  equal eta_eff, seed {p['seed']}: batch {p['large'][0]} at {p['large'][1]:g} "
            f"vs {p['small'][0]} at {p['small'][1]:g}, epoch {p['epoch']}: ratio "
            f"{p['ratios'][1]:.2f} vs {p['ratios'][0]:.2f} = lambda |w|^2 x"
            f"{p['invariant_factor']:.2f} times |w_small|^2 / |w_large|^2 x"
            f"{p['norm_factor']:.2f} (|w| {p['norms'][1]:.1f} vs {p['norms'][0]:.1f})")
    return lines
