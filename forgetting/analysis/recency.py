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
    recent batches vs the oldest probed ones."""
    out = []
    for run_dir, rows in recency.groupby("run_dir", sort=False):
        rows = rows[rows["probe_epoch"] == rows["probe_epoch"].max()]
        test_loss = float(rows["test_loss"].iloc[0])
        curve = recency_curve(rows, bin_epochs)
        level = (1 - within) * test_loss
        close = curve[curve["loss"] >= level]
        steps_per_epoch = steps_per_epoch_of(rows)
        first = int(close["steps_ago"].iloc[0]) if len(close) else None
        entry = {"run_dir": run_dir, "test_loss": test_loss,
                 "recent_loss": float(curve["loss"].iloc[0]),
                 "oldest_loss": float(curve["loss"].iloc[-1]),
                 "probed_epochs": float(rows["epochs_ago"].max() + 1 / steps_per_epoch),
                 "steps_to_test_level": first,
                 "epochs_to_test_level": first / steps_per_epoch if first is not None else None}
        for key in PROBE_KEYS:
            if key in rows:
                value = rows[key].iloc[0]
                entry[key] = value.item() if hasattr(value, "item") else value
        out.append(entry)
    return out


def steps_per_epoch_of(rows: pd.DataFrame) -> float:
    """Steps per epoch of a run's probe rows (epochs_ago = steps_ago / steps per epoch)."""
    later = rows[rows["steps_ago"] > 0]
    if later.empty:
        return 1.0
    return float((later["steps_ago"] / later["epochs_ago"]).median())
