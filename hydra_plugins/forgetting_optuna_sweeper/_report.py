"""What a sweep leaves in its folder about the study, rebuilt from the storage each time.

- `optimization_results.yaml`: the study, its storage, the counts per state and the best trial
  (one objective) or the Pareto front (several), with params and values by objective name.
- `optuna_trials.parquet`: one row per trial: `study`, `trial` (number), `trial_state`,
  `trial_duration_s`, `params_<name>`, `value_<objective>`, `discarded`, `retry_of`, `note`
  (why it failed, or that it got the worst value). `forgetting.tables` merges it into the
  sweep's results table on (study, trial).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from forgetting.core.files import atomic_write_parquet, atomic_write_text
from forgetting.core.metrics import ABANDONED
from forgetting.rundir.folders import OPTUNA_TRIALS

RESULTS_FILE = "optimization_results.yaml"


def objective_names(objectives: list | None, n_directions: int) -> list[str]:
    if objectives:
        return list(objectives)
    return ["value"] if n_directions == 1 else [f"value_{i}" for i in range(n_directions)]


def trial_row(study_name: str, t, names: list[str], retried: frozenset = frozenset()) -> dict:
    duration = t.duration.total_seconds() if t.duration is not None else math.nan
    row = {"study": study_name, "trial": t.number, "trial_state": t.state.name,
           "trial_duration_s": duration}
    row.update({f"params_{k}": v for k, v in t.params.items()})
    values = t.values or [math.nan] * len(names)
    row.update({f"value_{n}" if not n.startswith("value") else n: v
                for n, v in zip(names, values)})
    # `retried`: failed by Optuna's heartbeat and retried (a database storage, _workers.py)
    history = t.system_attrs.get("retry_history") or []
    row["discarded"] = t.user_attrs.get("discarded") or (ABANDONED if t.number in retried
                                                         else None)
    row["retry_of"] = t.user_attrs.get("retry_of", history[-1] if history else None)
    row["note"] = t.user_attrs.get("note")
    return row


def write_trials(study, folder: Path, objectives: list | None) -> None:
    import pandas as pd

    names = objective_names(objectives, len(study.directions))
    from hydra_plugins.forgetting_optuna_sweeper._workers import heartbeat_retried

    trials = study.get_trials(deepcopy=False)
    retried = frozenset(heartbeat_retried(trials))
    rows = [trial_row(study.study_name, t, names, retried) for t in trials]
    frame = pd.DataFrame(rows)
    for column in ("discarded", "retry_of", "note"):
        frame[column] = frame[column].astype(object)
    atomic_write_parquet(folder / OPTUNA_TRIALS, frame)


def summarize(study, storage_url: str, objectives: list | None) -> dict:
    """The content of optimization_results.yaml."""
    from hydra_plugins.forgetting_optuna_sweeper._workers import counted

    names = objective_names(objectives, len(study.directions))
    trials = counted(study.get_trials(deepcopy=False))
    summary = {"study": study.study_name, "storage": storage_url,
               "directions": [d.name.lower() for d in study.directions],
               "objectives": names, "n_trials": len(trials),
               "states": dict(Counter(t.state.name for t in trials))}

    def describe(t) -> dict:
        return {"trial": t.number, "params": dict(t.params),
                "values": {n: float(v) for n, v in zip(names, t.values)}}

    finite = [t for t in best_trials(study) if all(math.isfinite(v) for v in t.values)]
    if len(study.directions) == 1:
        summary["best"] = describe(finite[0]) if finite else None
    else:
        summary["pareto_front"] = [describe(t) for t in finite]
    return summary


def best_trials(study) -> list:
    """The best COMPLETE trial (one objective) or the Pareto front; [] when none completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def write_results(folder: Path, summary: dict) -> Path:
    import yaml

    path = folder / RESULTS_FILE
    atomic_write_text(path, yaml.safe_dump(summary, sort_keys=False))
    return path


def describe_best(summary: dict) -> str:
    """One or a few lines for the log."""
    counts = ", ".join(f"{v} {k}" for k, v in summary["states"].items())
    head = f"study {summary['study']!r}: {summary['n_trials']} trials ({counts})"
    if "best" in summary:
        best = summary["best"]
        if best is None:
            return head
        return (f"{head}; best trial {best['trial']}: {_params(best['params'])} -> "
                f"{_values(best['values'])}")
    front = [f"  trial {t['trial']}: {_params(t['params'])} -> {_values(t['values'])}"
             for t in summary["pareto_front"]]
    return "\n".join([f"{head}; Pareto front:"] + front)


def _params(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def _values(values: dict) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in values.items())
