"""Experiment trackers: every finished run also in MLflow and TensorBoard (`logger=...`).

`logger=mlflow`, `logger=tensorboard`, `logger=all` (conf/logger/; keys `logger.*` in
forgetting/core/config.py, none of them in the config hash). Two entry points:

- `log_run`, from one place, forgetting/runs/job.py `write_result`, right after metrics.json is
  written: single runs, the points of a sweep and the members of a pack all pass there. The
  MLflow run (mlflow_runs.py) and the TensorBoard event folder (tensorboard_events.py) are
  written from what the run wrote to disk, so they hold the same numbers.
- `log_sweep`, from ResultsTable.on_multirun_end: MLflow's parent run of the sweep (the pivot
  table as an artifact) and every run folder of the sweep a tracker still lacks: a tracker that
  was down, or a sweep run before with `logger=none`. Rerunning the same command with
  `logger=mlflow` skips every finished point and logs what is missing; nothing is logged twice
  (runs are matched by their config hash and folder).

The run folders stay the source of truth. A tracker that cannot be reached or fails gives one
warning line (once per process and tracker) and the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import yaml

from forgetting.core.config import COLUMNS
from forgetting.rundir import folders
from forgetting.runs.tracking.record import Tracked, flatten

log = logging.getLogger("forgetting")

SINGLE_RUNS = "runs"  # the MLflow experiment of runs outside a sweep
MULTIRUN_YAML = "multirun.yaml"  # Hydra writes it into every sweep folder
# not in a run's name: how it is logged, and the sweeper's study and storage (every trial's)
UNNAMED = ("hydra", "logger", "optuna.study", "optuna.storage")
_warned: set[str] = set()


def log_run(run_dir: Path, metrics: dict, history: list[dict]) -> None:
    """Log a run that just wrote its files to the trackers its config asks for; never raises."""
    settings = tracker_settings(metrics.get("config"))
    if not (settings.get("mlflow") or settings.get("tensorboard")):
        return
    try:
        run = tracked(run_dir, metrics, history, settings)
    except Exception as e:  # the run's own folder did not read back: its files are what counts
        log.warning("trackers: %s was not logged (%s)", run_dir,
                    (str(e).splitlines() or [type(e).__name__])[0])
        return
    if settings.get("mlflow"):
        _guarded("mlflow", settings, lambda: _mlflow().log(run, settings["mlflow_uri"]))
    if settings.get("tensorboard"):
        _guarded("tensorboard", settings, lambda: _tensorboard().write(run))


def log_sweep(config, sweep_dir: Path, results, table: str) -> None:
    """At the end of a sweep: log the run folders of `sweep_dir` a tracker lacks, and (MLflow)
    the sweep's parent run with the pivot table `table`; `results`: the sweep's table. Never
    raises."""
    try:
        _log_sweep(config, sweep_dir, results, table)
    except Exception as e:  # reading the sweep back failed: the trackers get nothing new
        log.warning("trackers: the sweep %s was not logged (%s)", sweep_dir,
                    (str(e).splitlines() or [type(e).__name__])[0])


def _log_sweep(config, sweep_dir: Path, results, table: str) -> None:
    from omegaconf import OmegaConf

    node = OmegaConf.select(config, "logger", default=None)
    if node is None:  # another Hydra app
        return
    settings = OmegaConf.to_container(node, resolve=True)
    if not (settings.get("mlflow") or settings.get("tensorboard")):
        return
    runs = []
    if sweep_dir.is_dir():
        runs = [r for r in (read_tracked(d, settings) for d in finished_folders(sweep_dir))
                if r is not None]
    overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    if settings.get("mlflow"):
        _guarded("mlflow", settings, lambda: _mlflow().log_sweep(
            runs, sweep_dir, experiment_name(settings, sweep_dir), settings["mlflow_uri"],
            results, table, overrides))
    if settings.get("tensorboard"):
        _guarded("tensorboard", settings, lambda: _tensorboard().write_missing(runs))


def _mlflow():
    from forgetting.runs.tracking import mlflow_runs

    return mlflow_runs


def _tensorboard():
    from forgetting.runs.tracking import tensorboard_events

    return tensorboard_events


def _guarded(tracker: str, settings: dict, action) -> None:
    """Run `action`; on any error one warning line (once per process and tracker)."""
    try:
        action()
    except Exception as e:
        where = f" at {settings.get('mlflow_uri')}" if tracker == "mlflow" else ""
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        level = logging.DEBUG if tracker in _warned else logging.WARNING
        _warned.add(tracker)
        log.log(level, "%s: not logged%s (%s); the run's files are on disk, and rerunning the "
                "command logs what is missing", tracker, where, reason)


def tracker_settings(config: object) -> dict:
    """The `logger` section of a run's recorded config ({} when it has none)."""
    node = config.get("logger") if isinstance(config, dict) else None
    return node if isinstance(node, dict) else {}


def sweep_folder(run_dir: Path) -> Path | None:
    """The sweep folder a run folder belongs to (Hydra wrote multirun.yaml there), else None."""
    parent = run_dir.parent
    return parent if (parent / MULTIRUN_YAML).is_file() else None


def experiment_name(settings: dict, sweep_dir: Path | None) -> str:
    """`logger.experiment`, else the sweep folder's path under its nearest `multirun` folder
    (`outputs/multirun/demo` -> `demo`), else its absolute path; `runs` for single runs. The
    same from every process and working folder, so a rerun finds its experiment."""
    if settings.get("experiment"):
        return str(settings["experiment"])
    if sweep_dir is None:
        return SINGLE_RUNS
    folder = sweep_dir.resolve()
    for root in folder.parents:
        if root.name == "multirun":
            return folder.relative_to(root).as_posix()
    return folder.as_posix()


def tracked(run_dir: Path, metrics: dict, history: list[dict], settings: dict,
            end_time: float | None = None) -> Tracked:
    import time

    sweep_dir = sweep_folder(run_dir)
    own = point_overrides(run_dir, sweep_dir)
    name = " ".join(own) or run_dir.name
    flat = flatten(metrics.get("config") or {})
    hparams = {column: flat.get(name_) for column, name_ in COLUMNS.items() if name_ in flat}
    for override in own:
        key = _key(override)
        column = next((c for c, k in COLUMNS.items() if k == key), key)
        if key in flat:
            hparams[column] = flat[key]
        elif key in (metrics.get("choices") or {}):
            hparams[column] = metrics["choices"][key]
    return Tracked(run_dir.resolve(), sweep_dir.resolve() if sweep_dir else None,
                   experiment_name(settings, sweep_dir), name, metrics, list(history),
                   hparams, end_time if end_time is not None else time.time())


def point_overrides(run_dir: Path, sweep_dir: Path | None) -> list[str]:
    """The overrides of a run (.hydra/overrides.yaml) less those in UNNAMED and, in a sweep,
    the keys every point sets alike (the sweep command's plain overrides, in multirun.yaml)."""
    own = [o for o in _load_list(run_dir / folders.HYDRA_OVERRIDES)
           if "=" in o and not _key(o).startswith(UNNAMED)]
    fixed = fixed_keys(sweep_dir / MULTIRUN_YAML) if sweep_dir is not None else set()
    return [o for o in own if _key(o) not in fixed] or own  # a one-point sweep: all of them


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def fixed_keys(multirun_yaml: Path) -> set[str]:
    """The keys a sweep command sets to one value for every point."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        saved = yaml.safe_load(multirun_yaml.read_text()) or {}
        task = saved.get("hydra", {}).get("overrides", {}).get("task") or []
        parsed = OverridesParser.create().parse_overrides([str(t) for t in task])
    except Exception:  # unreadable, or a sweep only Hydra's config loader parses (glob)
        return set()
    return {o.key_or_group for o in parsed if not o.is_sweep_override()}


def _load_list(path: Path) -> list[str]:
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def finished_folders(sweep_dir: Path) -> list[Path]:
    """The run folders of a sweep with a metrics.json that says finished or failed (one per
    config: the newest finished, forgetting/runs/resume.py)."""
    from forgetting.runs.resume import latest_runs
    from forgetting.tables import find_runs

    return [d for d in latest_runs(find_runs(sweep_dir)) if (d / folders.METRICS).is_file()]


def read_tracked(run_dir: Path, settings: dict) -> Tracked | None:
    """A run folder read back from disk (metrics.json, history.parquet), or None when it holds
    no result with a config hash."""
    try:
        metrics = json.loads((run_dir / folders.METRICS).read_text())
        end_time = os.stat(run_dir / folders.METRICS).st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("config_hash"), str):
        return None
    history = []
    if (run_dir / folders.HISTORY).is_file():
        import pandas as pd

        try:
            history = pd.read_parquet(run_dir / folders.HISTORY).to_dict("records")
        except Exception:
            history = []
    return tracked(run_dir, metrics, history, settings, end_time)
