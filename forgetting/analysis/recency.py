"""The forgetting probe's rows, read back: which runs count, the binned recency curve, and how
many steps it takes a seen batch's loss to return to the test level (forgetting.analyze, .plot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forgetting.core.metrics import OK, PRUNED

if TYPE_CHECKING:
    import pandas as pd


# what names a run in the probe's lines (those that differ between the runs are shown)
PROBE_KEYS = ("lr", "trainset", "subset", "augment", "recipe", "batch_size", "seed")


def finished_probes(results: pd.DataFrame, recency: pd.DataFrame | None) -> pd.DataFrame:
    """The probe rows of runs that finished training (ok or pruned): a diverged run may have
    probed before it diverged, but has no final model to speak for."""
    import pandas as pd

    if recency is None or recency.empty:
        return pd.DataFrame()
    finished = results.loc[results["status"].isin([OK, PRUNED]), "run_dir"]
    return recency[recency["run_dir"].isin(set(finished))]


def recency_curve(rows: pd.DataFrame, bin_epochs: float) -> pd.DataFrame:
    """Mean probe loss per bin of steps_ago (bin width in epochs), oldest last."""
    width = max(1, round(bin_epochs * steps_per_epoch_of(rows)))
    binned = rows.assign(bin=rows["steps_ago"] // width * width)
    curve = binned.groupby("bin").agg(loss=("loss", "mean"), accuracy=("accuracy", "mean"),
                                      epochs_ago=("epochs_ago", "min")).reset_index()
    return curve.rename(columns={"bin": "steps_ago"})


def summarize(recency: pd.DataFrame, within: float, bin_epochs: float) -> list[dict]:
    """Per run (its final probe): steps until the recent-batch loss (means over bins of
    `bin_epochs`) is within `within` (a fraction) of the test loss, and the loss of the most
    recent batches vs the oldest probed ones. One groupby over all runs' rows, not a loop."""
    last = recency.groupby("run_dir", sort=False)["probe_epoch"].transform("max")
    rows = recency[recency["probe_epoch"] == last]
    names = list(dict.fromkeys(rows["run_dir"]))
    later = rows[rows["steps_ago"] > 0]
    per_epoch = (later["steps_ago"] / later["epochs_ago"]).groupby(later["run_dir"]).median()
    per_epoch = per_epoch.reindex(names).fillna(1.0)
    width = rows["run_dir"].map((bin_epochs * per_epoch).round().clip(lower=1))
    binned = rows.assign(bin=rows["steps_ago"] // width * width)
    curve = binned.groupby(["run_dir", "bin"])["loss"].mean().reset_index()
    first = rows.groupby("run_dir", sort=False).first()
    curve["level"] = curve["run_dir"].map((1 - within) * first["test_loss"])
    reached = curve[curve["loss"] >= curve["level"]].groupby("run_dir")["bin"].min()
    ends = curve.groupby("run_dir")["loss"].agg(["first", "last"])
    oldest = rows.groupby("run_dir")["epochs_ago"].max()
    out = []
    for name in names:
        steps = int(reached[name]) if name in reached.index else None
        entry = {"run_dir": name, "test_loss": float(first.at[name, "test_loss"]),
                 "recent_loss": float(ends.at[name, "first"]),
                 "oldest_loss": float(ends.at[name, "last"]),
                 "probed_epochs": float(oldest[name] + 1 / per_epoch[name]),
                 "steps_to_test_level": steps,
                 "epochs_to_test_level": steps / per_epoch[name] if steps is not None else None}
        for key in PROBE_KEYS:
            if key in first:
                value = first.at[name, key]
                entry[key] = value.item() if hasattr(value, "item") else value
        out.append(entry)
    return out


def steps_per_epoch_of(rows: pd.DataFrame) -> float:
    """Steps per epoch of a run's probe rows (epochs_ago = steps_ago / steps per epoch)."""
    later = rows[rows["steps_ago"] > 0]
    if later.empty:
        return 1.0
    return float((later["steps_ago"] / later["epochs_ago"]).median())
