"""Replication over seeds: what each seed shows on its own, and on how many seeds a claim holds.
Only for sweeps where some point has at least 2 seeds.

- **LR x subset** (per batch size): each seed's optimal LR factor per subset (its own test
  losses at the factors below the pooled instability onset; analyze.optimum), their geometric
  mean with a 95% t-interval over seeds (on log2 of the factor) and their range; the seed's
  claim "the smallest subset's optimum is >= `shift` x the largest subset's", per seed: holds on
  k of n seeds.
- **Measured curvature** (per batch size, the largest subset): per LR factor each seed's largest
  sharpness ratio over training and its run-level B_simple with its 95% interval;
  on how many seeds the ratio reached the edge (>= `edge_ratio`) and exceeded 1 while the run
  did not diverge; B_simple against every batch size of the sweep: above it (the interval's low
  end is above), below it (the high end is below), or not resolved.
- **Equal eta_eff** (two batch sizes): the points (b1, f1) and (b2, f2) with b1 f1 = b2 f2 take
  the same mean-loss LR schedule (eta_eff = per-example LR x batch); on how many seeds the larger
  batch's largest ratio is the larger one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from forgetting.analysis.curvature import model_name, models
from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}  # Student's t, two-sided 95%, by degrees of freedom


Z975 = 1.959964  # the standard normal's 0.975 quantile


def t975(df: int) -> float:
    """Student's t quantile 0.975 (a table to 10 degrees of freedom, then Cornish-Fisher)."""
    if df in T975:
        return T975[df]
    return Z975 + (Z975 ** 3 + Z975) / (4 * df)


def log2_interval(values: list[float]) -> dict:
    """Geometric mean of positive `values` with a 95% t-interval on log2 (`lo`, `hi`), the 95%
    prediction interval for one more value (`pred_lo`, `pred_hi`: t sd sqrt(1 + 1/n) on log2;
    what a new seed is expected in), and the range."""
    logs = [math.log2(v) for v in values]
    n = len(logs)
    mean = sum(logs) / n
    out = {"n": n, "geomean": 2 ** mean, "min": min(values), "max": max(values),
           "lo": math.nan, "hi": math.nan, "pred_lo": math.nan, "pred_hi": math.nan}
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
        half = t975(n - 1) * sd / math.sqrt(n)
        pred = t975(n - 1) * sd * math.sqrt(1 + 1 / n)
        out.update(lo=2 ** (mean - half), hi=2 ** (mean + half),
                   pred_lo=2 ** (mean - pred), pred_hi=2 ** (mean + pred))
    return out


def replicated(results: pd.DataFrame) -> bool:
    """Some point of the sweep was run with >= 2 seeds."""
    if "seed" not in results or results.empty:
        return False
    keys = [c for c in ("batch_size", "subset", "lr") if c in results]
    if not keys:
        return results["seed"].nunique() > 1
    return bool((results.groupby(keys, dropna=False)["seed"].nunique() > 1).any())


def optima_by_seed(group: pd.DataFrame, subset: float, below: float | None,
                   optimum: Callable) -> dict[int, float]:
    """{seed: its optimal LR factor on `subset`} from its ok runs at factors below `below`."""
    ok = group[(group["status"] == OK) & (group["subset"] == subset)]
    if below is not None:
        ok = ok[ok["lr"] < below]
    out = {}
    for seed, runs in ok.groupby("seed"):
        curve = runs.groupby("lr")["test_loss"].mean().dropna()
        if len(curve):
            out[int(seed)] = optimum(curve.index.tolist(), curve.tolist())[0]
    return out


def lr_subset_seeds(done: pd.DataFrame, entries: list[dict], th, optimum: Callable) -> list[dict]:
    """Per batch size of the LR x subset analysis (`entries`): per subset the optimum of each
    seed with its interval, and on how many seeds the subset shift reaches `th.shift`."""
    out = []
    for entry in entries:
        group = done[done["batch_size"] == entry["batch_size"]]
        subsets = []
        for s in entry["subsets"]:
            by_seed = optima_by_seed(group, s["subset"], entry["onset"], optimum)
            if by_seed:
                subsets.append({"subset": s["subset"], "optima": by_seed,
                                **log2_interval(list(by_seed.values()))})
        claim = None
        if len(subsets) >= 2:
            small, large = subsets[0]["optima"], subsets[-1]["optima"]
            shifts = {k: small[k] / large[k] for k in sorted(small.keys() & large.keys())}
            claim = {"claim": f"smallest subset's optimum >= x{th.shift:g} the largest's",
                     "shifts": shifts, "holds": sum(v >= th.shift for v in shifts.values()),
                     "seeds": len(shifts)}
        out.append({"batch_size": entry["batch_size"], "subsets": subsets, "claim": claim})
    return out


def _noise_side(lo: float, hi: float, batch: int) -> str:
    if lo > batch:
        return "above"
    if hi < batch:
        return "below"
    return "not resolved"


def curvature_seeds(done: pd.DataFrame, th) -> list[dict]:
    """Per batch size (largest subset): per LR factor each seed's largest sharpness ratio and
    B_simple with its interval; counts of seeds at the edge, above 1, and B_simple's side of
    every batch size of the sweep."""
    batches = sorted(int(b) for b in done["batch_size"].unique())
    out = []
    for batch_size, width, group in models(done):
        factors = []
        for lr, runs in group.groupby("lr"):
            seeds = []
            for run in runs.sort_values("seed").to_dict("records"):
                row = {"seed": int(run["seed"]), "diverged": run["status"] == DIVERGED,
                       "max_ratio": float(run.get("max_sharpness_ratio", math.nan))}
                lo, hi = (float(run.get(k, math.nan)) for k in ("noise_scale_lo",
                                                                 "noise_scale_hi"))
                row.update(noise_scale=float(run.get("noise_scale", math.nan)),
                           noise_lo=lo, noise_hi=hi)
                if math.isfinite(lo) and not math.isnan(hi):
                    row["noise_side"] = {b: _noise_side(lo, hi, b) for b in batches}
                seeds.append(row)
            ratios = [r["max_ratio"] for r in seeds if math.isfinite(r["max_ratio"])]
            factors.append({
                "lr": float(lr), "seeds": seeds, "measured": len(ratios),
                "at_edge": sum(v >= th.edge_ratio for v in ratios),
                "above_1_stable": sum(r["max_ratio"] > 1 and not r["diverged"] for r in seeds
                                      if math.isfinite(r["max_ratio"])),
                "noise": {b: {side: sum(r.get("noise_side", {}).get(b) == side for r in seeds)
                              for side in ("above", "below", "not resolved")}
                          for b in batches}})
        out.append({"batch_size": batch_size, "width": width,
                    "subset": float(group["subset"].max()), "factors": factors})
    return out


def equal_eta(curv: list[dict]) -> list[dict]:
    """Pairs of points at two batch sizes (of one model width) with the same eta_eff schedule:
    on how many seeds the larger batch reads the larger ratio."""
    out = []
    for i, small in enumerate(curv):
        for large in curv[i + 1:]:
            if large["batch_size"] == small["batch_size"] or (
                    large.get("width") != small.get("width")):
                continue
            scale = large["batch_size"] / small["batch_size"]
            by_lr = {f["lr"]: f for f in small["factors"]}
            for f in large["factors"]:
                partner = by_lr.get(f["lr"] * scale)
                if partner is None:
                    continue
                a = {r["seed"]: r["max_ratio"] for r in partner["seeds"]}
                b = {r["seed"]: r["max_ratio"] for r in f["seeds"]}
                both = [k for k in sorted(a.keys() & b.keys())
                        if math.isfinite(a[k]) and math.isfinite(b[k])]
                out.append({"width": small.get("width"),
                             "small": (small["batch_size"], partner["lr"]),
                            "large": (large["batch_size"], f["lr"]),
                            "ratios": {k: (a[k], b[k]) for k in both},
                            "larger_sharper": sum(b[k] > a[k] for k in both),
                            "seeds": len(both)})
    return out


def replication(done: pd.DataFrame, report: dict, th, optimum: Callable) -> dict | None:
    """The replication section of analyze's report, or None when no point has 2 seeds."""
    if not replicated(done):
        return None
    out: dict = {"seeds": sorted(int(s) for s in done["seed"].unique())}
    if report.get("lr_subset"):
        out["lr_subset"] = lr_subset_seeds(done, report["lr_subset"], th, optimum)
    if report.get("curvature"):
        out["curvature"] = curvature_seeds(done, th)
        out["equal_eta"] = equal_eta(out["curvature"])
    return out


def _factor(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else "-"


def render_lines(rep: dict, edge_ratio: float) -> list[str]:
    """The replication section as text lines."""
    n = len(rep["seeds"])
    lines = ["", f"replication over {n} seeds ({', '.join(map(str, rep['seeds']))}): a claim "
                 f"that holds on fewer than all seeds is not resolved"]
    for e in rep.get("lr_subset", []):
        lines.append(f"  LR factor x subset, batch {e['batch_size']}: optimum per seed; "
                     "geometric mean [95% t-interval over seeds] (range) {95% prediction "
                     "interval for a new seed}")
        for s in e["subsets"]:
            each = ", ".join(_factor(v) for _, v in sorted(s["optima"].items()))
            lines.append(f"    subset {s['subset']:g}: {each}; {_factor(s['geomean'])} "
                         f"[{_factor(s['lo'])}, {_factor(s['hi'])}] "
                         f"({_factor(s['min'])}-{_factor(s['max'])}) "
                         f"{{{_factor(s['pred_lo'])}, {_factor(s['pred_hi'])}}}")
        c = e["claim"]
        if c is not None:
            shifts = ", ".join(f"x{v:.2g}" for v in c["shifts"].values())
            lines.append(f"    claim {c['claim']}: holds on {c['holds']}/{c['seeds']} seeds "
                         f"({shifts})" + ("" if c["holds"] == c["seeds"] else ": not resolved"))
    for e in rep.get("curvature", []):
        lines.append(f"  measured curvature, {model_name(e)} (subset {e['subset']:g}): "
                     f"max ratio per seed; at the edge (>= {edge_ratio:g}) and above 1 without "
                     "diverging, seeds of those measured; B_simple [95% interval] per seed")
        for f in e["factors"]:
            ratios = ", ".join((f"{r['max_ratio']:.2f}" if math.isfinite(r["max_ratio"])
                                else "-") + ("*" if r["diverged"] else "")
                               for r in f["seeds"])
            noise = "; ".join(f"{_factor(r['noise_scale'])} [{_factor(r['noise_lo'])}, "
                              f"{_factor(r['noise_hi'])}]" for r in f["seeds"]
                              if math.isfinite(r["noise_lo"]))
            lines.append(f"    factor {f['lr']:g}: {ratios}; edge {f['at_edge']}/{f['measured']}"
                         f", above 1 {f['above_1_stable']}/{f['measured']}"
                         + (f"; B_simple {noise}" if noise else ""))
        for b in e["factors"][0]["noise"] if e["factors"] else ():
            counts = Counter()
            for f in e["factors"]:
                counts.update(f["noise"][b])
            if sum(counts.values()):
                lines.append(f"    B_simple against batch {b} (runs): above {counts['above']}, "
                             f"below {counts['below']}, not resolved {counts['not resolved']}")
    for p in rep.get("equal_eta", []):
        each = ", ".join(f"{a:.2f} vs {b:.2f}" for a, b in p["ratios"].values())
        width = f"width {p['width']:g}, " if p.get("width") is not None else ""
        lines.append(f"  equal eta_eff: {width}batch {p['small'][0]} at factor "
                     f"{p['small'][1]:g} vs batch {p['large'][0]} at factor "
                     f"{p['large'][1]:g}: the larger batch's max ratio is larger on "
                     f"{p['larger_sharper']}/{p['seeds']} seeds ({each})")
    if rep.get("curvature"):
        lines.append("  (* = the run diverged)")
    return lines


def mixed_precisions(results: pd.DataFrame, most: int = 5) -> list[str]:
    """A warning for each point (every config column but the seeds, and the recipe) whose
    runs trained in more than one precision (`precision_used`, what `precision=auto` chose on
    each machine): its seeds then differ in precision as well as in seed. At most `most`."""
    from forgetting.core.config import COLUMNS

    if "precision_used" not in results:
        return []
    keys = [c for c in (*COLUMNS, "recipe") if c in results
            and c not in ("seed", "subset_seed", "precision")]
    done = results[results["precision_used"].notna()].astype({k: str for k in keys})
    lines = []
    for point, group in done.groupby(keys, sort=True, dropna=False):
        used = group.groupby("precision_used")["seed"].agg(lambda s: sorted(set(s)))
        if len(used) > 1:
            where = " ".join(f"{k}={v}" for k, v in zip(keys, point)
                             if done[k].nunique() > 1) or "the one point"
            mix = " and ".join(f"{p} (seed{'s' if len(s) > 1 else ''} "
                               f"{', '.join(map(str, s))})" for p, s in used.items())
            lines.append(f"{where}: its runs trained in {mix}; seed and precision are "
                         "confounded there")
    if len(lines) > most:
        lines = lines[:most] + [f"... and {len(lines) - most} more points"]
    return lines
