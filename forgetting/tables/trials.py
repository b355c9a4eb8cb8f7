"""Optuna's trials in a sweep's results table: each run's trial state, params, values and
duration (optuna_trials.parquet, written by the optuna_study sweeper), and the runs of trials
their worker abandoned marked as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.core.metrics import ABANDONED, FINISHED
from forgetting.rundir import folders

if TYPE_CHECKING:
    import pandas as pd


def merge_trials(results: pd.DataFrame, roots: list[Path]) -> pd.DataFrame:
    """Add each Optuna trial's state, params, values and duration to its run's row."""
    import pandas as pd

    frames = [pd.read_parquet(root / folders.OPTUNA_TRIALS) for root in roots
              if (root / folders.OPTUNA_TRIALS).is_file()]
    if not frames or "trial" not in results:
        return results
    trials = pd.concat(frames, ignore_index=True).drop_duplicates(["study", "trial"], keep="last")
    trials = trials.rename(columns={"discarded": "trial_discarded", "retry_of": "trial_retry_of",
                                    "note": "trial_note"})
    results["trial"] = results["trial"].astype("Int64")
    trials["trial"] = trials["trial"].astype("Int64")
    return mark_abandoned(results.merge(trials, on=["study", "trial"], how="left"), trials)


def mark_abandoned(results: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Unfinished runs of trials abandoned by their worker (killed): status `abandoned`, and
    which trial retried their params; not failures of the sweep."""
    if "trial_discarded" not in results or "trial_retry_of" not in trials:
        return results
    retried = {(s, int(r)): int(n) for s, r, n in
               zip(trials["study"], trials["trial_retry_of"], trials["trial"]) if r == r
               and r is not None}
    results["error"] = results.get("error", None)
    results["error"] = results["error"].astype(object)
    for i in results.index[(results["trial_discarded"] == ABANDONED)
                           & ~results["status"].isin(FINISHED)]:
        retry = retried.get((results.at[i, "study"], int(results.at[i, "trial"])))
        results.loc[i, "status"] = ABANDONED
        results.loc[i, "error"] = (f"abandoned by its worker; retried as trial {retry}"
                                   if retry is not None else "abandoned by its worker")
    return results
