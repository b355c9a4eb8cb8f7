"""The job's side of a trial: report each epoch's metric to the trial and ask the pruner.

The job may run in another process or on another node (joblib, submitit): it reaches its trial
through the study's persistent storage, from the three config keys the sweeper gives every job
(`optuna.study`, `optuna.storage`, `optuna.trial`). The study carries what the job needs in its
user attributes, set by the sweeper: `report` (the history column reported, e.g. `test_loss`)
and `pruner` (name and keyword arguments), so every job prunes with the sweep's pruner.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

log = logging.getLogger("forgetting")


def report_to_trial(study_name: str, storage_url: str, number: int
                    ) -> Callable[[dict], bool] | None:
    """An `on_epoch(row) -> stop?` hook that reports `row[report]` at step `row["epoch"]` and
    returns the pruner's verdict; None (with a warning) when the trial cannot be reached.
    A failing report never stops the run: it only ends the reporting."""
    try:
        trial, metric = _open_trial(study_name, storage_url, number)
    except Exception as e:
        log.warning("optuna: cannot reach trial %s of study %r (%s); no pruning", number,
                    study_name, (str(e).splitlines() or [type(e).__name__])[0])
        return None
    state = {"on": True}

    def on_epoch(row: dict) -> bool:
        value = row.get(metric)
        if not state["on"] or value is None or not math.isfinite(value):
            return False
        try:
            trial.report(float(value), step=int(row["epoch"]))
            prune = trial.should_prune()
        except Exception as e:  # the trial was finished elsewhere, or the storage failed
            log.warning("optuna: reporting to trial %d stopped (%s)", number, e)
            state["on"] = False
            return False
        if prune:
            log.info("optuna: trial %d pruned after epoch %d (%s %.4g)", number, row["epoch"],
                     metric, value)
        return prune

    return on_epoch


def _open_trial(study_name: str, storage_url: str, number: int):
    import optuna

    from hydra_plugins.forgetting_optuna_sweeper._study import make_pruner, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    study_id = storage.get_study_id_from_name(study_name)
    attrs = storage.get_study_user_attrs(study_id)
    spec = attrs.get("pruner") or {"name": "none", "kwargs": {}}
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=make_pruner(spec["name"], spec["kwargs"]))
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return optuna.trial.Trial(study, trial_id), attrs.get("report", "test_loss")
