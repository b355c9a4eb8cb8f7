"""MLflow: one experiment per sweep, one MLflow run per point, a parent run per sweep.

An MLflow run holds: the run name (the point's own overrides), params (the flattened composed
config and the group choices), metrics per epoch from history.parquet with `step` = epoch (NaN
entries, epochs without a test evaluation, are left out), metrics.json's other numbers once at
the last epoch (one that a history column also names, with another value, as `run_NAME`: the
run's total `wall_s` is `run_wall_s`), tags (`status`, `config_hash`, `git_commit` and
`mlflow.source.git.commit`, `run_dir`, `sweep_dir`, device, Optuna's `study`/`trial`, a failed
run's `error`), and metrics.json and history.parquet as artifacts. Its MLflow status is
FINISHED (FAILED for `status: failed`).

A point is found again by its tags `config_hash` and `run_dir`: a run trained again (force=true,
an unreadable metrics.json) replaces its MLflow run (the old one is deleted, which MLflow keeps
restorable), and the sweep's end logs only the folders the experiment lacks. The parent run
(tag `kind: sweep`) holds the pivot table, results.csv, optimization_results.yaml and
figures/*.png when present, and counts per status; every run of the sweep gets
`mlflow.parentRunId`, so MLflow's UI nests them under it.

Tracking URIs: a plain folder is our local store, a SQLite database `mlflow.db` in it and the
artifacts in `artifacts/` beside it (MLflow's file store is in maintenance mode); anything with
a scheme (`sqlite:///…`, `http://host:port`, `databricks`, …) goes to MLflow as it is. An
http(s) server that accepts no connection within 3 s fails at once instead of being retried.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import socket
import tempfile
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from urllib.parse import urlparse

from forgetting.core.metrics import FAILED, STATUSES
from forgetting.runs.tracking.record import Tracked, flatten, numbers

STORE_DB = "mlflow.db"
ARTIFACTS = "artifacts"
LOCK = ".mlflow.lock"  # in the sweep folder: one process at a time finds and logs its runs
PARENT = "mlflow.parentRunId"
MAX_NAME, MAX_PARAM, MAX_TAG, BATCH = 250, 6000, 8000, 100
CONNECT_S = 3.0
_clients: dict[str, tuple] = {}


def store(uri: str) -> tuple[str, Path | None]:
    """(tracking URI for MLflow, our local store's folder or None). A relative folder is
    relative to the folder the command was started in (also under hydra.job.chdir=true)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri):
        return uri, None
    from hydra.utils import to_absolute_path

    folder = Path(to_absolute_path(str(Path(uri).expanduser()))).resolve()
    return f"sqlite:///{folder / STORE_DB}", folder


def client(uri: str):
    """(MlflowClient, local store folder or None) for `uri`, one per process."""
    if uri in _clients:
        return _clients[uri]
    tracking_uri, folder = store(uri)
    check_reachable(tracking_uri)
    # a server that answers with errors: fail in seconds, not after minutes of back-off
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # their INFO lines (schema set-up) are not ours
        logging.getLogger(name).setLevel(logging.WARNING)

    if folder is None:
        made = MlflowClient(tracking_uri=tracking_uri)
    else:
        from filelock import FileLock

        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / f"{STORE_DB}.lock"):  # one process creates the schema
            made = MlflowClient(tracking_uri=tracking_uri)
            made.search_experiments(max_results=1)
    _clients[uri] = (made, folder)
    return _clients[uri]


def terminate(c, run_id: str, status: str, end_time: int) -> None:
    """Mark an MLflow run ended. The client writes two "View run / View experiment" lines
    to stdout for every run on an http server: dropped (the sweep's one log line says where
    its runs are), so `quiet=true` stays quiet."""
    with redirect_stdout(io.StringIO()):
        c.set_terminated(run_id, status=status, end_time=end_time)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def runs_table_hint(uri: str, experiment_id: str) -> str:
    """For an http(s) server: where its UI shows the experiment's runs table (MLflow 3 opens
    an experiment on its GenAI overview unless asked for the machine-learning view)."""
    if urlparse(uri).scheme not in ("http", "https"):
        return ""
    return (f"; its runs: {uri.rstrip('/')}/#/experiments/{experiment_id}"
            "?workflowType=machine_learning")


def check_reachable(tracking_uri: str) -> None:
    """ConnectionError when an http(s) tracking server accepts no connection."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=CONNECT_S).close()
    except OSError as e:
        raise ConnectionError(f"cannot connect to {parsed.hostname}:{port}: "
                              f"{e.strerror or e}") from None


def sweep_lock(sweep_dir: Path | None):
    if sweep_dir is None or not sweep_dir.is_dir():
        return nullcontext()
    from filelock import FileLock

    return FileLock(sweep_dir / LOCK)


def experiment(c, name: str, folder: Path | None) -> str:
    """The id of experiment `name`, created (artifacts in our store's folder) when absent."""
    from mlflow.exceptions import MlflowException

    found = c.get_experiment_by_name(name)
    if found is None:
        location = None
        if folder is not None:
            location = (folder / ARTIFACTS / re.sub(r"[^\w.=-]+", "_", name)).as_uri()
        try:
            return c.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process created it meanwhile
            found = c.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        c.restore_experiment(found.experiment_id)
    return found.experiment_id


def all_runs(c, experiment_id: str, filter_string: str) -> list:
    runs, token = [], None
    while True:
        page = c.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                             page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def existing(c, experiment_id: str, run: Tracked) -> list:
    """The MLflow runs of the experiment that hold this run (its config hash and folder)."""
    found = all_runs(c, experiment_id, f"tags.config_hash = {_quote(run.key)}")
    return [r for r in found if r.data.tags.get("run_dir") == str(run.run_dir)]


def log(run: Tracked, uri: str, replace: bool = True) -> bool:
    """Log `run` as an MLflow run; one already there is replaced (`replace`) or kept. True
    when it was logged."""
    c, folder = client(uri)
    with sweep_lock(run.sweep_dir):
        experiment_id = experiment(c, run.experiment, folder)
        for old in existing(c, experiment_id, run):
            if not replace:
                return False
            c.delete_run(old.info.run_id)
        create(c, experiment_id, run)
    return True


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _tags(run: Tracked) -> dict:
    m = run.metrics
    tags = {"kind": "run", "status": m.get("status"), "config_hash": run.key,
            "run_dir": str(run.run_dir), "sweep_dir": run.sweep_dir,
            "git_commit": m.get("git_commit"), "mlflow.source.git.commit": m.get("git_commit"),
            "git_dirty": m.get("git_dirty"), "host": m.get("host"), "device": m.get("device"),
            "precision": m.get("precision"), "study": m.get("study"), "trial": m.get("trial"),
            "storage": m.get("storage"), "error": m.get("error"),
            "launcher": m.get("launcher"), "pack_id": m.get("pack_id")}
    return {k: str(v)[:MAX_TAG] for k, v in tags.items() if v is not None}


def metric_records(run: Tracked) -> list:
    """MLflow Metric entities: the history per epoch, then metrics.json's other numbers."""
    from mlflow.entities import Metric

    records, last = [], {}
    for row in run.history:
        at, step = _ms(run.epoch_time(row)), int(row["epoch"])
        for name, value in numbers(row, skip=("epoch",)).items():
            records.append(Metric(name, value, at, step))
            last[name] = value
    step = int(run.history[-1]["epoch"]) if run.history else 0
    for name, value in numbers(run.metrics, skip=("trial", "config_hash")).items():
        if name in last:
            if math.isclose(last[name], value, rel_tol=1e-12, abs_tol=0):
                continue  # the history's last step already holds it
            name = f"run_{name}"
        records.append(Metric(name, value, _ms(run.end_time), step))
    return records


def param_records(run: Tracked) -> list:
    import json

    from mlflow.entities import Param

    flat = flatten(run.metrics.get("config") or {})
    flat.update({f"choices.{k}": v for k, v in (run.metrics.get("choices") or {}).items()})
    return [Param(k, (v if isinstance(v, str) else json.dumps(v))[:MAX_PARAM])
            for k, v in sorted(flat.items())]


def create(c, experiment_id: str, run: Tracked) -> str:
    """A new MLflow run holding `run`; deleted again when logging it fails part-way."""
    start = run.end_time - float(run.metrics.get("wall_s") or 0.0)
    made = c.create_run(experiment_id, start_time=_ms(start), tags=_tags(run),
                        run_name=run.name[:MAX_NAME])
    run_id = made.info.run_id
    try:
        params, metrics = param_records(run), metric_records(run)
        for i in range(0, len(params), BATCH):
            c.log_batch(run_id, params=params[i:i + BATCH])
        for i in range(0, len(metrics), 10 * BATCH):
            c.log_batch(run_id, metrics=metrics[i:i + 10 * BATCH])
        for name in ("metrics.json", "history.parquet"):
            if (run.run_dir / name).is_file():
                c.log_artifact(run_id, str(run.run_dir / name))
        status = "FAILED" if run.metrics.get("status") == FAILED else "FINISHED"
        terminate(c, run_id, status, _ms(run.end_time))
    except BaseException:
        try:
            c.delete_run(run_id)
        except Exception:
            pass
        raise
    return run_id


def log_sweep(runs: list[Tracked], sweep_dir: Path, name: str, uri: str, results, table: str,
              overrides: list[str]) -> None:
    """Log the sweep's runs the experiment lacks, then its parent run (see the docstring)."""
    import time

    from mlflow.entities import Metric

    c, folder = client(uri)
    sweep = str(sweep_dir.resolve())
    with sweep_lock(sweep_dir):
        experiment_id = experiment(c, name, folder)
        have = {(r.data.tags.get("config_hash"), r.data.tags.get("run_dir"))
                for r in all_runs(c, experiment_id, "tags.kind = 'run'")}
        added = [create(c, experiment_id, r) for r in runs
                 if (r.key, str(r.run_dir)) not in have]
        if added:
            logging.getLogger("forgetting").info(
                "mlflow: %s of %s logged at the sweep's end%s", plural(len(added), "run"),
                sweep_dir, runs_table_hint(uri, experiment_id))
        parents = all_runs(c, experiment_id,
                           f"tags.kind = 'sweep' and tags.sweep_dir = {_quote(sweep)}")
        if parents:
            parent = parents[0].info.run_id
        else:
            parent = c.create_run(experiment_id, run_name=f"sweep {name}"[:MAX_NAME],
                                  tags={"kind": "sweep", "sweep_dir": sweep}).info.run_id
        c.set_tag(parent, "overrides", " ".join(overrides)[:MAX_TAG])
        now = _ms(time.time())
        counts = results["status"].value_counts().to_dict() if len(results) else {}
        values = {"runs": len(results), **{s: counts.get(s, 0) for s in STATUSES}}
        if "test_loss" in results and results["test_loss"].notna().any():
            values["best_test_loss"] = float(results["test_loss"].min())
        c.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "pivot.txt").write_text(table + "\n")
            c.log_artifact(parent, str(Path(tmp) / "pivot.txt"))
        for file in ("results.csv", "optimization_results.yaml"):
            if (sweep_dir / file).is_file():
                c.log_artifact(parent, str(sweep_dir / file))
        if (sweep_dir / "figures").is_dir() and any((sweep_dir / "figures").glob("*.png")):
            c.log_artifacts(parent, str(sweep_dir / "figures"), "figures")
        for r in all_runs(c, experiment_id,
                          f"tags.kind = 'run' and tags.sweep_dir = {_quote(sweep)}"):
            if r.data.tags.get(PARENT) != parent:
                c.set_tag(r.info.run_id, PARENT, parent)
        terminate(c, parent, "FINISHED", now)
