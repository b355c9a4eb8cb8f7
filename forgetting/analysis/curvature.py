"""Measured curvature across LR factors: does the sharpness ratio reach the stability edge where
the training loss turns unstable? One entry per batch size (and per model width, where the runs
differ in it: `models`) of runs that measured sharpness (`diag.sharpness=true`) at several LR
factors (the largest subset is used); the noise scale against the batch size where the runs
measured it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from forgetting.core.metrics import DIVERGED, OK

if TYPE_CHECKING:
    import pandas as pd


def measured_grid(results: pd.DataFrame) -> bool:
    done = results[results["status"].isin([OK, DIVERGED])]
    return ("max_sharpness_ratio" in done and done["max_sharpness_ratio"].notna().any()
            and done["lr"].nunique() > 1)


def models(done: pd.DataFrame):
    """(batch size, width, its runs at the largest subset) per batch size, and per model width
    when the runs differ in it (width None otherwise): a curve never pools two models."""
    keys = ["batch_size"] + (["width"] if "width" in done and done["width"].nunique() > 1
                             else [])
    for key, group in done.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        width = float(key[1]) if len(key) > 1 else None
        yield int(key[0]), width, group[group["subset"] == group["subset"].max()]


def model_name(entry: dict) -> str:
    """`batch B` or `batch B, width W`: which curve an entry is."""
    width = entry.get("width")
    return f"batch {entry['batch_size']}" + (f", width {width:g}" if width is not None else "")


def curvature(results: pd.DataFrame, th, onset) -> list[dict]:
    """Per batch size: per LR factor the final train loss, the largest sharpness ratio over
    training and the run's noise scale (means over seeds); the loss's instability onset
    (analyze.onset) and the first factor whose ratio reached `th.edge_ratio`."""
    done = results[results["status"].isin([OK, DIVERGED])]
    out = []
    for batch_size, width, group in models(done):
        rows = []
        for lr, runs in group.groupby("lr"):
            ok = runs[runs["status"] == OK]
            rows.append({"lr": float(lr), "train_loss": float(ok["train_loss"].mean()),
                         "test_loss": float(ok["test_loss"].mean()),
                         "unstable": bool((runs["status"] == DIVERGED).any()),
                         "max_sharpness_ratio": float(runs["max_sharpness_ratio"].mean()),
                         "noise_scale_run": float(runs["noise_scale_run"].mean())
                         if "noise_scale_run" in runs else math.nan})
        import pandas as pd

        curve = pd.DataFrame(rows)
        loss_onset, why = onset(curve, th)
        reached = next((r["lr"] for r in rows if r["max_sharpness_ratio"] >= th.edge_ratio),
                       None)
        if loss_onset is None and reached is None:
            agree = "neither the loss nor the measured ratio shows the edge within the grid"
        elif loss_onset is not None and reached is not None and reached <= loss_onset:
            agree = (f"the measured ratio reaches the edge (>= {th.edge_ratio:g}) from factor "
                     f"{reached:g}, at or before the loss's instability onset {loss_onset:g}")
        elif loss_onset is None:
            agree = (f"the measured ratio reaches the edge from factor {reached:g} while the "
                     "loss stays stable in the grid (training at the edge of stability)")
        else:
            agree = (f"the loss turns unstable from factor {loss_onset:g} but the measured "
                     "ratio stays below the edge: curvature does not explain it")
        out.append({"batch_size": batch_size, "width": width,
                    "subset": float(group["subset"].max()), "factors": rows,
                    "loss_onset": loss_onset, "loss_onset_reason": why, "edge_from": reached,
                    "reading": agree})
    return out


def render_lines(entries: list[dict], edge_ratio: float) -> list[str]:
    lines = []
    for e in entries:
        lines += ["", f"measured curvature, {model_name(e)} (subset {e['subset']:g}): "
                      f"{e['reading']}",
                  f"  {'LR factor':>10} {'train loss':>11} {'test loss':>10} "
                  f"{'max ratio':>10} {'B_simple':>9}"]
        for r in e["factors"]:
            noise = f"{r['noise_scale_run']:.0f}" if math.isfinite(r["noise_scale_run"]) else "-"
            lines.append(f"  {r['lr']:>10g} {r['train_loss']:>11.4f} {r['test_loss']:>10.4f} "
                         f"{r['max_sharpness_ratio']:>10.2f} {noise:>9}")
        lines.append(f"  (max ratio = largest eta_eff (lambda_max + wd) / stability edge over "
                     f"training; the edge counts as reached from {edge_ratio:g}; B_simple = "
                     "the run's gradient noise scale)")
    return lines
