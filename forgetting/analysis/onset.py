"""The instability onset against model width: where it lies per width, and where a power law
puts it at the seed's width 1. For sweeps that vary `width` (model.width) at several LR factors
with the sharpness ratio measured (`diag.sharpness=true`) at >= 2 widths.

Per batch size and width (the largest subset), per seed, the onset factor two ways:

- **ratio**: the first factor (ascending) whose largest sharpness ratio over training,
  eta_eff (lambda_max + wd) / edge, exceeds `onset_ratio` (1: the edge itself); a diverged
  run counts as above. Past its onset the ratio often plateaus near 1 (the sharpness settles
  at the edge), so a lower threshold (0.9, 0.8) shows where the plateau begins;
- **loss**: the first factor where the final train loss turns unstable (analyze.onset: a run
  diverged, or the loss rose by more than the `jump` thresholds over one grid step).

A grid only brackets an onset: it lies above the last factor below it and at or below the first
factor at it, (below, at]. Across seeds: each seed's bracket, the smallest and largest onset and
the bracket that holds every seed's, (lowest below, largest onset].

The fit, per batch size and way: onset = a * width^k by least squares of log2(onset) on
log2(width), one point per seed and width: the bracket's geometric midpoint sqrt(below * at).
Brackets open below (the onset at the grid's lowest factor) or above (no onset in the grid) are
left out and counted. The residual variance is the fit's, RSS / (n - 2), but at least the
brackets' own (a uniform spread over a bracket of log2 width w has variance w^2 / 12: equal
brackets would fit exactly and give a zero-width interval). At width 1 (log2 width 0): a times
the 95% prediction interval of one more point, t(n - 2) s sqrt(1 + 1/n + xbar^2 / Sxx) on
log2; k with its 95% t-interval. No fit below 2 widths with closed brackets; not resolved when
n - 2 < 1 (the interval unbounded). `check_lrs`: the powers of 2 that bracket every resolved
interval at width 1, the factors for the width-1 run (scripts/gpu_packed.sh onset1). An
interval that holds every factor the sweep measured at that batch size is *not informative*
(any outcome on that grid would agree with it): it is named and left out of `check_lrs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from forgetting.analysis.seeds import t975
from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd

WAYS = {"ratio": "sharpness ratio > {onset_ratio:g} (a diverged run counts as above)",
        "loss": "final train loss unstable (diverged, or the jump thresholds)"}


def measured_widths(results: pd.DataFrame) -> bool:
    """>= 2 widths whose finished runs measured the sharpness ratio, at >= 2 LR factors."""
    done = results[results["status"].isin([OK, DIVERGED])]
    if "width" not in done or "max_sharpness_ratio" not in done or done["lr"].nunique() < 2:
        return False
    return done.loc[done["max_sharpness_ratio"].notna(), "width"].nunique() >= 2


def bracket(lrs: list[float], at: float | None) -> dict:
    """The onset `at` on the ascending factors `lrs` as (below, at]; none in the grid: (last,
    None)."""
    if at is None:
        return {"below": lrs[-1] if lrs else None, "at": None}
    i = lrs.index(at)
    return {"below": lrs[i - 1] if i > 0 else None, "at": at}


def seed_curve(runs: pd.DataFrame) -> pd.DataFrame:
    """One seed's runs as a curve over factors: lr, train_loss (mean of its ok runs), unstable
    (a run diverged), ratio (the largest max_sharpness_ratio)."""
    import pandas as pd

    rows = []
    for lr, at in runs.groupby("lr"):
        ok = at[at["status"] == OK]
        rows.append({"lr": float(lr), "train_loss": float(ok["train_loss"].mean()),
                     "unstable": bool((at["status"] == DIVERGED).any()),
                     "ratio": float(at["max_sharpness_ratio"].max())})
    return pd.DataFrame(rows)


def seed_onsets(curve: pd.DataFrame, th, onset: Callable) -> dict[str, dict]:
    """Both ways' brackets of one seed's curve (sorted by lr)."""
    rated = curve[curve["unstable"] | curve["ratio"].notna()]
    above = rated[rated["unstable"] | (rated["ratio"] > th.onset_ratio)]
    at_ratio = float(above["lr"].iloc[0]) if len(above) else None
    at_loss, _ = onset(curve, th)
    return {"ratio": bracket(rated["lr"].tolist(), at_ratio),
            "loss": bracket(curve["lr"].tolist(), at_loss)}


def across(seeds: dict[int, dict]) -> dict:
    """Across seeds: the smallest and largest onset, the bracket holding every seed's (`low`:
    None when one is open below) and how many seeds have none in the grid."""
    found = [b for b in seeds.values() if b["at"] is not None]
    lows = [b["below"] for b in found]
    return {"first": min((b["at"] for b in found), default=None),
            "last": max((b["at"] for b in found), default=None),
            "low": None if not found or None in lows else min(lows),
            "none": len(seeds) - len(found)}


def fit(points: list[tuple[float, float, float]]) -> dict:
    """Power law through (width, below, at) brackets (the module's docstring says how)."""
    widths = sorted({w for w, _, _ in points})
    out = {"n": len(points), "widths": widths, "resolved": False}
    if len(widths) < 2:
        out["why"] = (f"closed brackets at {len(widths)} width{'s' * (len(widths) != 1)}: "
                      "a fit needs 2")
        return out
    x = [math.log2(w) for w, _, _ in points]
    y = [(math.log2(lo) + math.log2(hi)) / 2 for _, lo, hi in points]
    n = len(x)
    xbar, ybar = sum(x) / n, sum(y) / n
    sxx = sum((v - xbar) ** 2 for v in x)
    k = sum((u - xbar) * (v - ybar) for u, v in zip(x, y)) / sxx
    a = ybar - k * xbar
    out.update(k=k, at_width_1=2 ** a)
    dof = n - 2
    if dof < 1:
        out["why"] = f"{n} onsets: 0 degrees of freedom, the interval is unbounded"
        return out
    rss = sum((v - a - k * u) ** 2 for u, v in zip(x, y))
    spread = sum(math.log2(hi / lo) ** 2 for _, lo, hi in points) / (12 * n)
    s2 = max(rss / dof, spread)
    t = t975(dof)
    half_k = t * math.sqrt(s2 / sxx)
    half = t * math.sqrt(s2 * (1 + 1 / n + xbar ** 2 / sxx))
    out.update(resolved=True, k_lo=k - half_k, k_hi=k + half_k, pred_lo=2 ** (a - half),
               pred_hi=2 ** (a + half), sd=math.sqrt(s2), bracket_sd=math.sqrt(spread),
               dof=dof)
    return out


def way_entry(widths: dict[float, dict[int, dict]], way: str, th) -> dict:
    """One way's per-width brackets across seeds and its power-law fit."""
    rows, points, open_below, beyond = [], [], 0, 0
    for width, seeds in sorted(widths.items()):
        each = {seed: b[way] for seed, b in sorted(seeds.items())}
        rows.append({"width": width, "seeds": each, **across(each)})
        for b in each.values():
            if b["at"] is None and b["below"] is None:
                continue  # no factor measured
            if b["at"] is None:
                beyond += 1
            elif b["below"] is None:
                open_below += 1
            else:
                points.append((width, b["below"], b["at"]))
    return {"way": way, "label": WAYS[way].format(onset_ratio=th.onset_ratio),
            "widths": rows, "fit": fit(points),
            "open_below": open_below, "beyond": beyond}


def onset_width(results: pd.DataFrame, th, onset: Callable) -> dict:
    """Per batch size, both ways (module docstring); `check_lrs` the factors for width 1."""
    done = results[results["status"].isin([OK, DIVERGED])]
    batches = []
    for batch_size, group in done.groupby("batch_size"):
        group = group[group["subset"] == group["subset"].max()]
        widths: dict[float, dict[int, dict]] = {}
        for (width, seed), runs in group.groupby(["width", "seed"]):
            curve = seed_curve(runs).sort_values("lr").reset_index(drop=True)
            widths.setdefault(float(width), {})[int(seed)] = seed_onsets(curve, th, onset)
        ways = [way_entry(widths, way, th) for way in WAYS]
        lrs = (float(group["lr"].min()), float(group["lr"].max()))
        for w in ways:
            if w["fit"]["resolved"]:
                w["fit"]["informative"] = not (w["fit"]["pred_lo"] <= lrs[0]
                                               and w["fit"]["pred_hi"] >= lrs[1])
        batches.append({"batch_size": int(batch_size), "subset": float(group["subset"].max()),
                        "lrs": lrs, "ways": ways})
    ends = [e for b in batches for w in b["ways"] if w["fit"].get("informative")
            for e in (w["fit"]["pred_lo"], w["fit"]["pred_hi"])]
    check = []
    if ends:
        low, high = math.floor(math.log2(min(ends))), math.ceil(math.log2(max(ends)))
        check = [2.0 ** e for e in range(low, high + 1)]
    return {"batches": batches, "check_lrs": check}


def _bracket(b: dict) -> str:
    if b["at"] is None:
        return f"> {b['below']:g}" if b["below"] is not None else "-"
    if b["below"] is None:
        return f"<= {b['at']:g}"
    return f"({b['below']:g}, {b['at']:g}]"


def _fit_line(f: dict, left: str, lrs: tuple[float, float]) -> str:
    """The fit as one line; `left`: what was left out ("" for nothing); `lrs`: the smallest
    and largest factor measured."""
    if not f["resolved"]:
        what = "none" if "k" not in f else "not resolved"
        return f"    fit: {what} ({f['why']}{'; ' + left if left else ''})"
    return (f"    fit: onset = {f['at_width_1']:.3g} x width^{f['k']:.2f} (k 95% "
            f"[{f['k_lo']:.2f}, {f['k_hi']:.2f}]) on {f['n']} onsets at {len(f['widths'])} "
            f"widths{f' ({left})' if left else ''}; width 1: {f['at_width_1']:.3g}, 95% "
            f"prediction interval [{f['pred_lo']:.3g}, {f['pred_hi']:.3g}] (residual sd "
            f"{f['sd']:.2f} on log2, brackets' own {f['bracket_sd']:.2f}; {f['dof']} d.o.f.)"
            + ("" if f["informative"] else f"; it holds every factor measured ({lrs[0]:g} to "
               f"{lrs[1]:g}): not informative, left out of the width-1 check"))


def render_lines(report: dict) -> list[str]:
    """The onset-against-width block as text lines."""
    lines = []
    for b in report["batches"]:
        lines += ["", f"onset against width, batch {b['batch_size']} (subset {b['subset']:g}): "
                      "per seed the onset's bracket (below, at] on the grid"]
        for w in b["ways"]:
            lines.append(f"  {w['way']}: {w['label']}")
            for r in w["widths"]:
                each = ", ".join(f"{_bracket(s)}" for s in r["seeds"].values())
                if r["first"] is None:
                    span = "none in the grid"
                else:
                    span = (f"onset {r['first']:g}" if r["first"] == r["last"] else
                            f"onsets {r['first']:g}-{r['last']:g}")
                    span += (f", every one in ({r['low']:g}, {r['last']:g}]"
                             if r["low"] is not None else f", every one <= {r['last']:g}")
                    if r["none"]:
                        span += f"; {r['none']} seed(s) none in the grid"
                lines.append(f"    width {r['width']:g}: {each}; {span}")
            left = [f"{w[k]} {name}" for k, name in (("open_below", "open below"),
                                                     ("beyond", "beyond the grid")) if w[k]]
            lines.append(_fit_line(w["fit"], f"{', '.join(left)} left out" if left else "",
                                   b["lrs"]))
    check = report["check_lrs"]
    lines.append("  (fit: least squares of log2(onset) on log2(width), one point per seed and "
                 "width at its bracket's geometric midpoint; width-1 check: "
                 + (f"ONSET_LRS={','.join(f'{v:g}' for v in check)} scripts/gpu_packed.sh OUT "
                    "onset1)" if check else "no resolved, informative fit: the preset's factors)"))
    return lines
