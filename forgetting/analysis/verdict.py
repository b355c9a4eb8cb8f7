"""A verdict that checks its own preconditions and cites the measurements.

The loss-shape inference (analyze.judge: where the optimum sits against the instability onset
and how it moves with subset size) proposes a label; this module decides whether the sweep can
carry it. Checks, each printed with its threshold:

- **equal steps**: every subset got the same number of steps (`budget=steps`). Under
  `budget=epochs` a small subset also gets fewer steps, and under-training predicts a rising
  optimum just as forgetting does.
- **small subsets fit**: at the smallest subset's optimum the training loss (whole subset, eval
  mode: `clean_train_loss`) is at most `fit` x the test loss. Forgetting can only limit a
  subset the model would otherwise retain.
- **seeds**: each point has >= `min_seeds` seeds, and the claim holds for the per-seed optima
  (the interval from the least to the most favourable seed combination does not span the
  threshold).
- **measured sharpness** (runs with `diag.sharpness=true`): the sharpness ratio eta_eff
  (lambda_max + wd) / edge, largest over training, at the full set's optimum and at the
  instability onset. A point is curvature-limited only where the ratio reached `edge_ratio`;
  a forgetting-limited optimum must sit below it. Where measurement and loss shape disagree,
  the verdict says so.

A failed check turns the label into "confounded: <check>" (steps, fit) or "not resolved:
<reason>" (seeds, measurements), never into a label.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from forgetting.analysis.seeds import optima_by_seed
from forgetting.core.metrics import OK

if TYPE_CHECKING:
    import pandas as pd

LABELS = ("forgetting-limited", "curvature-limited")


# budget=steps takes whole passes (core/setup.py plan_passes): the subsets' steps differ by up
# to half a pass, 768-780 in the quick presets (x1.016); budget=epochs differs by the subsets'
# ratio (x2 and more)
EQUAL_STEPS = 1.1


def _nearest(lrs: list[float], target: float) -> float:
    return min(lrs, key=lambda v: abs(math.log2(v) - math.log2(target)))


def equal_steps(group: pd.DataFrame) -> dict:
    """Did every subset get the same number of steps?"""
    ok = group[group["status"] == OK]
    if "steps" in ok and ok["steps"].notna().all() and len(ok):
        per_subset = ok.groupby("subset")["steps"].median()
        ratio = per_subset.max() / per_subset.min()
        text = (f"steps per run {int(per_subset.min())}-{int(per_subset.max())} across subsets"
                f" (x{ratio:.3g})")
        return {"check": "equal steps", "ok": bool(ratio <= EQUAL_STEPS), "text": text}
    budgets = set(group["budget"].dropna()) if "budget" in group else set()
    same = budgets == {"steps"}
    return {"check": "equal steps", "ok": same,
            "text": f"budget={'/'.join(sorted(budgets)) or 'unknown'}"}


def small_subsets_fit(group: pd.DataFrame, entry: dict, fit: float) -> dict:
    """Does the model retain the smallest subset it can be said to forget?"""
    subsets = [s for s in entry["subsets"] if "best_lr" in s]
    ok = group[group["status"] == OK]
    if not subsets:
        return {"check": "small subsets fit", "ok": False, "text": "no optimum"}
    small = subsets[0]
    runs = ok[ok["subset"] == small["subset"]]
    lr = _nearest(sorted(runs["lr"].unique()), small["best_lr"])
    at = runs[runs["lr"] == lr]
    column = "clean_train_loss" if "clean_train_loss" in at and \
        at["clean_train_loss"].notna().any() else "train_loss"
    train, test = float(at[column].mean()), float(at["test_loss"].mean())
    fits = math.isfinite(train) and math.isfinite(test) and train <= fit * test
    text = (f"subset {small['subset']:g} at factor {lr:g}: {column} {train:.3g} vs test "
            f"{test:.3g} (fitted means <= {fit:g} x test)")
    return {"check": "small subsets fit", "ok": bool(fits), "text": text}


def seed_optima(group: pd.DataFrame, subset: float, below: float | None, optimum) -> list[float]:
    """The optimal LR factor of each seed for one subset (factors below the onset)."""
    return list(optima_by_seed(group, subset, below, optimum).values())


def seeds_check(group: pd.DataFrame, entry: dict, label: str, th, optimum) -> dict:
    """Enough seeds, and the claim holds over the per-seed optima."""
    seeds = int(group.groupby(["subset", "lr"])["seed"].nunique().min()) if len(group) else 0
    subsets = [s for s in entry["subsets"] if "best_lr" in s]
    if seeds < th.min_seeds:
        return {"check": "seeds", "ok": False,
                "text": f"{seeds} seed(s) per point; a claim needs >= {th.min_seeds:g}"}
    if len(subsets) < 2:
        return {"check": "seeds", "ok": False, "text": "needs optima for >= 2 subsets"}
    small, large = subsets[0], subsets[-1]
    onset = entry["onset"]
    lo_small = seed_optima(group, small["subset"], onset, optimum)
    lo_large = seed_optima(group, large["subset"], onset, optimum)
    small["best_lr_seeds"], large["best_lr_seeds"] = lo_small, lo_large
    if not lo_small or not lo_large:
        return {"check": "seeds", "ok": False, "text": "no per-seed optimum"}
    low, high = min(lo_small) / max(lo_large), max(lo_small) / min(lo_large)
    text = (f"{seeds} seeds; optimum per seed {min(lo_large):.3g}-{max(lo_large):.3g} on "
            f"subset {large['subset']:g}, {min(lo_small):.3g}-{max(lo_small):.3g} on subset "
            f"{small['subset']:g}: shift x{low:.2g}-x{high:.2g}")
    if label == "forgetting-limited":
        return {"check": "seeds", "ok": low >= th.shift,
                "text": text + f" (the claim needs >= x{th.shift:g} for every seed)"}
    if label == "curvature-limited" and onset is not None:
        held = min(lo_large) * th.edge_gap >= onset
        return {"check": "seeds", "ok": held,
                "text": text + f"; least optimum x{th.edge_gap:g} "
                               f"{'reaches' if held else 'stays below'} the onset {onset:g}"}
    return {"check": "seeds", "ok": True, "text": text}


def measured_sharpness(group: pd.DataFrame, entry: dict) -> dict | None:
    """Largest sharpness ratio over training at the full set's optimum and at the onset."""
    if "max_sharpness_ratio" not in group or not group["max_sharpness_ratio"].notna().any():
        return None
    subsets = [s for s in entry["subsets"] if "best_lr" in s]
    if not subsets:
        return None
    large = subsets[-1]
    runs = group[group["subset"] == large["subset"]]
    lrs = sorted(runs["lr"].unique())
    at_opt = _nearest(lrs, large["best_lr"])
    out = {"subset": large["subset"], "optimum_lr": at_opt,
           "at_optimum": float(runs[runs["lr"] == at_opt]["max_sharpness_ratio"].mean())}
    onset = entry["onset"]
    if onset is not None:
        out["onset_lr"] = onset
        out["at_onset"] = float(runs[runs["lr"] == onset]["max_sharpness_ratio"].mean())
        stable = [v for v in lrs if v < onset]
        if stable:
            out["last_stable_lr"] = stable[-1]
            out["at_last_stable"] = float(
                runs[runs["lr"] == stable[-1]]["max_sharpness_ratio"].mean())
    return out


def measurement_check(measured: dict | None, label: str, edge_ratio: float) -> dict | None:
    """Do the measurements agree with the label the loss shape proposes?"""
    if measured is None or not math.isfinite(measured["at_optimum"]):
        return None
    ratio = measured["at_optimum"]
    at_edge = ratio >= edge_ratio
    text = (f"sharpness ratio at the optimum (factor {measured['optimum_lr']:g}) {ratio:.2f}"
            + (f", at the onset (factor {measured['onset_lr']:g}) {measured['at_onset']:.2f}"
               if "at_onset" in measured and math.isfinite(measured["at_onset"]) else "")
            + f" (the edge counts as reached from {edge_ratio:g})")
    if label == "curvature-limited":
        return {"check": "measured sharpness", "ok": at_edge, "text": text + (
            "" if at_edge else "; the loss shape says curvature-limited but the edge was "
                               "not reached")}
    if label == "forgetting-limited":
        return {"check": "measured sharpness", "ok": not at_edge, "text": text + (
            "" if not at_edge else "; the loss shape says forgetting-limited but the optimum "
                                   "sits at the edge of stability")}
    return {"check": "measured sharpness", "ok": True,
            "text": text + ("; the optimum sits at the edge of stability" if at_edge else "")}


def noise_note(group: pd.DataFrame, entry: dict, batch_size: int) -> dict | None:
    """The gradient noise scale at the full set's optimum against the batch size."""
    if "noise_scale" not in group or not group["noise_scale"].notna().any():
        return None
    subsets = [s for s in entry["subsets"] if "best_lr" in s]
    if not subsets:
        return None
    runs = group[(group["subset"] == subsets[-1]["subset"]) & (group["status"] == OK)]
    lr = _nearest(sorted(runs["lr"].unique()), subsets[-1]["best_lr"])
    value = float(runs[runs["lr"] == lr]["noise_scale"].median())
    if not math.isfinite(value):
        return None
    pays = value > 4 * batch_size
    return {"noise_scale": value, "lr": lr, "batch_size": batch_size, "text": (
        f"gradient noise scale B_simple {value:.3g} at the end of training (factor {lr:g}) vs "
        f"batch {batch_size}: " + (f"a 4x batch ({4 * batch_size}) is still below it and "
                                   "should train in fewer steps" if pays else
                                   f"a 4x batch ({4 * batch_size}) would exceed it: diminishing"
                                   " returns"))}


def decide(group: pd.DataFrame, entry: dict, th, optimum) -> dict:
    """The final verdict for one batch size, from the loss-shape label and the checks."""
    label = entry["verdict"]
    checks = [equal_steps(group), small_subsets_fit(group, entry, th.fit),
              seeds_check(group, entry, label, th, optimum)]
    measured = measured_sharpness(group, entry)
    check = measurement_check(measured, label, th.edge_ratio)
    if check is not None:
        checks.append(check)
    out = {"loss_shape": label, "loss_shape_why": entry["why"], "checks": checks}
    if measured is not None:
        out["sharpness"] = measured
    note = noise_note(group, entry, entry["batch_size"])
    if note is not None:
        out["noise"] = note
    if label not in LABELS:
        return out
    confounded = [c["check"] for c in checks[:2] if not c["ok"]]
    unresolved = [c for c in checks[2:] if not c["ok"]]
    if confounded:
        out["verdict"] = "confounded: " + ", ".join(confounded)
    elif unresolved:
        out["verdict"] = "not resolved: " + "; ".join(c["text"] for c in unresolved)
    return out


def render_lines(entry: dict) -> list[str]:
    """The verdict's lines for the text report: label, the loss shape, each check."""
    lines = [f"  verdict: {entry['verdict']}"]
    if entry["verdict"] != entry["loss_shape"]:
        lines.append(f"  loss shape alone: {entry['loss_shape']} ({entry['loss_shape_why']})")
    else:
        lines.append(f"  loss shape: {entry['loss_shape_why']}")
    for c in entry["checks"]:
        lines.append(f"  [{'ok' if c['ok'] else 'fails'}] {c['check']}: {c['text']}")
    if "noise" in entry:
        lines.append(f"  {entry['noise']['text']}")
    return lines
