"""The seed's premises, measured (`forgetting.analyze`'s "premises" block), each where the sweep
holds what it needs:

- **Forgetting does not depend on the batch size** (runs probed at two or more batch sizes with
  the same LR factor and subset, the same per-example LR): each run's forgetting horizons in
  examples (horizon.py, 95% bootstrap over its batches: the half rise, and the test level) and,
  per seed, the ratio of the largest batch's half-rise horizon to the smallest's. The premise
  holds on a seed where the ratio's interval contains 1; "not resolved" where a horizon is
  unbounded in more than 2.5% of its draws. Over the seeds: the ratios' geometric mean with a
  95% t-interval (log2_interval), which may resolve a shift that no single seed does. Beside
  it, forgetting events per example per pass (the run's mean count over its passes), mean over
  seeds with a 95% t-interval.
- **Forgetting depends on the dataset size** (runs probed at two or more subsets, the same LR
  factor and batch size): each subset's test-level horizon in examples and in passes of it. The
  seed's reading holds on a seed where the smallest subset's horizon, in passes, is longer than
  the largest subset's (its interval's low end above the other's high end, or beyond its probe):
  a small subset is seen again before it is forgotten.
- **The critical batch size** (runs with `target.*`): for each batch size and seed the best LR
  factor's steps to the target, the fit S = S_min (1 + B_noise/B) with B_crit = E_min/S_min
  and a bootstrap over seeds (critical.py), and B_simple measured on the same runs (their
  run-level noise scale: geometric mean over the runs with a 95% t-interval).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from forgetting.analysis import critical
from forgetting.analysis.horizon import ratio, run_horizon
from forgetting.analysis.seeds import log2_interval, t975
from forgetting.core.metrics import OK

if TYPE_CHECKING:
    import pandas as pd

BIN_EXAMPLES = 2500  # the horizon's bins, in examples at every batch size
# target: (the column of its crossing, the column of the target's value)
TARGETS = {"train": ("steps_to_train_target", "train_loss_target"),
           "test": ("examples_to_test_target", "test_loss_target")}


def premises(results: pd.DataFrame, recency: pd.DataFrame, within: float) -> dict:
    """The block's entries (see the module's docstring); {} when the sweep has none."""
    out: dict = {}
    compared = compared_runs(results, recency)
    if compared:
        runs = horizons(results, recency[recency["run_dir"].isin(compared)], within)
        if batch := batch_premise(runs, results):
            out["batch"] = batch
        if subset := subset_premise(runs):
            out["subset"] = subset
    if crit := critical_batch(results):
        out["critical"] = crit
    return out


def compared_runs(results: pd.DataFrame, recency: pd.DataFrame) -> set:
    """The probed runs a premise compares: those of an LR factor and subset probed at two or
    more batch sizes, or of an LR factor and batch size probed at two or more subsets (the
    horizons' bootstrap is computed for these only)."""
    if recency.empty:
        return set()
    probed = results[results["run_dir"].isin(set(recency["run_dir"]))]
    out: set = set()
    for keys, varied in ((["lr", "subset"], "batch_size"), (["lr", "batch_size"], "subset")):
        sizes = probed.groupby(keys)[varied].transform("nunique")
        out |= set(probed.loc[sizes > 1, "run_dir"])
    return out


def horizons(results: pd.DataFrame, recency: pd.DataFrame, within: float) -> list[dict]:
    """Each probed run's horizon (its last probe), with its point and its events per pass."""
    last = recency.groupby("run_dir")["probe_epoch"].transform("max")
    rows = recency[recency["probe_epoch"] == last]
    by_dir = results.set_index("run_dir")
    out = []
    for i, (name, group) in enumerate(rows.groupby("run_dir", sort=False)):
        run = by_dir.loc[name]
        h = run_horizon(group.assign(batch_size=run["batch_size"]), within, BIN_EXAMPLES,
                        seed=i)
        events = run.get("mean_forgetting_events", math.nan)
        passes = run.get("epochs_run", math.nan)
        out.append({**h, "run_dir": name, "lr": float(run["lr"]),
                    "batch_size": int(run["batch_size"]), "subset": float(run["subset"]),
                    "seed": int(run["seed"]), "events_per_pass": float(events) / float(passes)
                    if events is not None and passes else math.nan})
    return out


def _mean_interval(values: list[float]) -> dict:
    values = [v for v in values if math.isfinite(v)]
    n = len(values)
    mean = sum(values) / n if n else math.nan
    half = math.nan
    if n > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = t975(n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half}


def _public(h: dict) -> dict:
    return {k: h[k] for k in ("horizon", "lo", "hi", "half", "half_lo", "half_hi", "probed",
                              "per_pass", "batches")}


def batch_premise(runs: list[dict], results: pd.DataFrame) -> list[dict]:
    """Per LR factor and subset with two or more batch sizes: per seed the horizons and the
    ratio largest/smallest batch; events per pass per batch size."""
    out = []
    points = sorted({(r["lr"], r["subset"]) for r in runs})
    for lr, subset in points:
        here = [r for r in runs if r["lr"] == lr and r["subset"] == subset]
        sizes = sorted({r["batch_size"] for r in here})
        if len(sizes) < 2:
            continue
        small, large = sizes[0], sizes[-1]
        seeds = []
        for seed in sorted({r["seed"] for r in here}):
            a = next((r for r in here if r["seed"] == seed and r["batch_size"] == large), None)
            b = next((r for r in here if r["seed"] == seed and r["batch_size"] == small), None)
            if a is None or b is None:
                continue
            r = ratio(a["half_draws"], b["half_draws"])
            verdict = "not resolved" if r is None else \
                "holds" if r[1] <= 1 <= r[2] else "fails"
            seeds.append({"seed": seed, "large": _public(a), "small": _public(b),
                          "ratio": r, "verdict": verdict})
        events = {b: _mean_interval([r["events_per_pass"] for r in here if r["batch_size"] == b])
                  for b in sizes}
        ratios = [s["ratio"][0] for s in seeds if s["ratio"] is not None]
        out.append({"lr": lr, "subset": subset, "small": small, "large": large,
                    "seeds": seeds, "holds": sum(s["verdict"] == "holds" for s in seeds),
                    "over_seeds": log2_interval(ratios) if ratios else None,
                    "events_per_pass": events})
    return out


def subset_premise(runs: list[dict]) -> list[dict]:
    """Per LR factor and batch size with two or more subsets: per seed each subset's horizon
    in examples and in passes, and whether the smallest subset's is the longer in passes."""
    out = []
    for lr, batch in sorted({(r["lr"], r["batch_size"]) for r in runs}):
        here = [r for r in runs if r["lr"] == lr and r["batch_size"] == batch]
        subsets = sorted({r["subset"] for r in here})
        if len(subsets) < 2:
            continue
        seeds = []
        for seed in sorted({r["seed"] for r in here}):
            mine = {r["subset"]: r for r in here if r["seed"] == seed}
            if subsets[0] not in mine or subsets[-1] not in mine:
                continue
            small, large = mine[subsets[0]], mine[subsets[-1]]
            # in passes: the small subset's low end (inf: beyond its probe) above the large's
            # high end
            holds = small["lo"] / small["per_pass"] > large["hi"] / large["per_pass"]
            seeds.append({"seed": seed, "holds": bool(holds),
                          "subsets": {s: _public(mine[s]) for s in subsets if s in mine}})
        out.append({"lr": lr, "batch_size": batch, "subsets": subsets, "seeds": seeds,
                    "holds": sum(s["holds"] for s in seeds)})
    return out


def critical_batch(results: pd.DataFrame) -> dict | None:
    """The critical batch size from runs with a target (None without two batch sizes)."""
    out = {}
    for name, (column, key) in TARGETS.items():
        if column not in results:
            continue
        ok = results[(results["status"] == OK) & results[column].notna()]
        if ok["batch_size"].nunique() < 2:
            continue
        steps = ok[column] / (ok["batch_size"] if column.startswith("examples") else 1)
        ok = ok.assign(steps=steps.astype(float))
        best = ok.loc[ok.groupby(["batch_size", "seed"])["steps"].idxmin()]
        seeds = sorted(set.intersection(*(set(g["seed"]) for _, g in best.groupby("batch_size"))))
        if not seeds:
            continue
        best = best[best["seed"].isin(seeds)]
        runs = {int(b): [float(g.set_index("seed").at[s, "steps"]) for s in seeds]
                for b, g in best.groupby("batch_size")}
        sizes = []
        for b, g in best.groupby("batch_size"):
            tried = results[results["batch_size"] == b].groupby("seed")["lr"].nunique()
            sizes.append({"batch_size": int(b), "steps": _mean_interval(runs[int(b)]),
                          "each": runs[int(b)],
                          "best_lr": sorted({float(v) for v in g["lr"]}),
                          "factors_tried": int(tried.max())})
        target = results[key].dropna().unique() if key in results else []
        entry = {"target": float(target[0]) if len(target) == 1 else None,
                 "seeds": len(seeds), "sizes": sizes}
        try:
            entry["fit"] = critical.bootstrap(runs)
        except ValueError as e:
            entry["no_fit"] = str(e)
        if "noise_scale" in best and best["noise_scale"].notna().any():
            noise = [float(v) for v in best["noise_scale"] if v and math.isfinite(v) and v > 0]
            entry["b_simple"] = log2_interval(noise) if noise else None
        out[name] = entry
    return out or None


def _examples(value: float) -> str:
    return "beyond" if math.isinf(value) else f"{value:,.0f}"


def _horizon(h: dict, half: bool = False) -> str:
    """A horizon with its interval: the test level's, or with `half` the half rise's."""
    value, lo, hi = ((h["half"], h["half_lo"], h["half_hi"]) if half else
                     (h["horizon"], h["lo"], h["hi"]))
    if value is None:
        return f"beyond {h['probed']:,.0f}"
    return f"{value:,.0f} [{_examples(lo)}, {_examples(hi)}]"


def render_lines(block: dict, within: float) -> list[str]:
    """The premises block as text lines."""
    lines = ["", "premises (each measured; 95% intervals):"]
    for entry in block.get("batch", []):
        seeds = entry["seeds"]
        lines.append(f"  forgetting vs batch size, LR factor {entry['lr']:g}, subset "
                     f"{entry['subset']:g}: half-rise horizon in examples (bins of "
                     f"{BIN_EXAMPLES:,}; bootstrap over batches), batch {entry['large']} / "
                     f"batch {entry['small']}: ratio contains 1 on {entry['holds']}/"
                     f"{len(seeds)} seeds")
        for s in seeds:
            r = s["ratio"]
            shown = f"{r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}]" if r else "-"
            lines.append(f"    seed {s['seed']}: batch {entry['small']} "
                         f"{_horizon(s['small'], half=True)}, batch {entry['large']} "
                         f"{_horizon(s['large'], half=True)}; ratio {shown}: {s['verdict']} "
                         f"(test level within {within:.0%}: {_horizon(s['small'])} and "
                         f"{_horizon(s['large'])})")
        over = entry["over_seeds"]
        if over and over["n"] > 1:
            lines.append(f"    over seeds: ratio {over['geomean']:.2f} [{over['lo']:.2f}, "
                         f"{over['hi']:.2f}] (geometric mean, 95% t-interval, n={over['n']}): "
                         + ("contains 1" if over["lo"] <= 1 <= over["hi"] else "excludes 1"))
        events = "; ".join(f"batch {b} {e['mean']:.4f} [{e['lo']:.4f}, {e['hi']:.4f}] (n={e['n']})"
                           for b, e in entry["events_per_pass"].items() if e["n"])
        if events:
            lines.append(f"    forgetting events per example per pass: {events}")
    for entry in block.get("subset", []):
        lines.append(f"  forgetting vs dataset size, LR factor {entry['lr']:g}, batch "
                     f"{entry['batch_size']}: the smallest subset's horizon in passes is the "
                     f"longer on {entry['holds']}/{len(entry['seeds'])} seeds")
        for s in entry["seeds"]:
            parts = []
            for subset, h in s["subsets"].items():
                passes = (f"{h['horizon'] / h['per_pass']:.2f} passes" if h["horizon"] is not None
                          else f"> {h['probed'] / h['per_pass']:.2f} passes")
                parts.append(f"subset {subset:g}: {_horizon(h)} ({passes})")
            lines.append(f"    seed {s['seed']}: " + "; ".join(parts))
    for name, entry in (block.get("critical") or {}).items():
        target = f" {entry['target']:g}" if entry["target"] is not None else ""
        lines.append(f"  critical batch size, {name} loss target{target} ({entry['seeds']} "
                     f"seeds; each batch size at its best LR factor):")
        for size in entry["sizes"]:
            st = size["steps"]
            spread = (f" [{st['lo']:.0f}, {st['hi']:.0f}]" if st["n"] > 1 else "")
            lines.append(f"    batch {size['batch_size']:>5}: {st['mean']:.0f} steps{spread}, "
                         f"best factor {', '.join(f'{v:g}' for v in size['best_lr'])} "
                         f"(of {size['factors_tried']} tried)")
        if "fit" in entry:
            f = entry["fit"]
            lines.append(f"    fit S = S_min (1 + B_noise/B): S_min {f['s_min'][0]:.0f} "
                         f"[{f['s_min'][1]:.0f}, {f['s_min'][2]:.0f}], B_crit = E_min/S_min "
                         f"{f['b_crit'][0]:.0f} [{f['b_crit'][1]:.0f}, {f['b_crit'][2]:.0f}] "
                         f"(bootstrap over seeds)")
        else:
            lines.append(f"    no fit: {entry['no_fit']}")
        b = entry.get("b_simple")
        if b:
            lines.append(f"    B_simple on the same runs: {b['geomean']:.0f} [{b['lo']:.0f}, "
                         f"{b['hi']:.0f}] (n={b['n']})"
                         + (f"; B_crit / B_simple = {f['b_crit'][0] / b['geomean']:.2f}"
                            if "fit" in entry else ""))
    return lines
