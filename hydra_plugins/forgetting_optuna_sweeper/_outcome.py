"""What Optuna is told of a finished job: state, values and a note.

- the job raised -> FAIL (note: the exception)
- `status` in its metrics.json: `failed` -> FAIL (note: its error), `pruned` -> PRUNED
- else the objectives: metrics.json keys, or the task's return value (a number, or a list of
  one per direction); not numbers, or too few -> FAIL
- a non-finite objective (a diverged run): `on_nan=fail` -> FAIL; `on_nan=worst` -> COMPLETE
  with +inf (minimize) or -inf (maximize) in place of each non-finite value
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import ListConfig

from forgetting.core.metrics import DIVERGED, FAILED, PRUNED
from forgetting.rundir.folders import METRICS


def judge(ret, objectives: list | None, directions: list, on_nan: str):
    """(state, values or None, note) for one JobReturn (see the module docstring)."""
    from optuna.trial import TrialState

    try:
        value = ret.return_value
    except Exception as e:  # the job raised
        return TrialState.FAIL, None, f"{type(e).__name__}: {e}".splitlines()[0]
    metrics = read_metrics(ret)
    status = metrics.get("status")
    if status == FAILED:
        return TrialState.FAIL, None, str(metrics.get("error") or "failed")
    if status == PRUNED:
        return TrialState.PRUNED, None, None
    if objectives:
        missing = [name for name in objectives if name not in metrics]
        if missing:
            return TrialState.FAIL, None, f"metrics.json has no {', '.join(missing)}"
        raw = [metrics[name] for name in objectives]
    else:
        raw = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    try:
        values = [float(v) for v in raw]
    except (TypeError, ValueError):
        return TrialState.FAIL, None, f"objective is not a number: {raw!r}"
    if len(values) != len(directions):
        return TrialState.FAIL, None, (f"{len(values)} objective values for "
                                       f"{len(directions)} directions")
    if all(math.isfinite(v) for v in values):
        return TrialState.COMPLETE, values, None
    note = DIVERGED if status == DIVERGED else "non-finite objective"
    if on_nan == "fail":
        return TrialState.FAIL, None, note
    worst = [v if math.isfinite(v) else (math.inf if d == "minimize" else -math.inf)
             for v, d in zip(values, directions)]
    return TrialState.COMPLETE, worst, f"{note}: told the worst value"


def read_metrics(ret) -> dict:
    """The job's metrics.json (forgetting's runs write one), or {}."""
    try:
        path = Path(ret.hydra_cfg.hydra.runtime.output_dir) / METRICS
        metrics = json.loads(path.read_text())
    except Exception:
        return {}
    return metrics if isinstance(metrics, dict) else {}
