"""Experiment trackers (`logger=mlflow|tensorboard|all`, forgetting/runs/tracking/): what
MLflow's client and TensorBoard's event reader read back equals the run folders' files; reruns
log nothing twice; a tracker that is down costs one warning line and nothing else."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from forgetting.core.config import UNHASHED
from forgetting.rundir.identity import config_hash
from forgetting.runs import tracking
from forgetting.runs.configs import CONFIG_DIR, register_configs
from helpers import TINY, head_commit, run_cli

LOGGER_KEYS = {"logger.mlflow", "logger.tensorboard", "logger.mlflow_uri", "logger.experiment"}


def composed(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- fast: the config group, hashes, names -----------------------------------------------

def test_logger_keys_leave_the_config_hash_alone():
    plain = composed()
    logged = composed("logger=all", "logger.mlflow_uri=http://127.0.0.1:1",
                      "logger.experiment=mine")
    assert LOGGER_KEYS <= set(UNHASHED)
    assert config_hash(plain) == config_hash(logged)
    before = OmegaConf.to_container(plain, resolve=True)
    del before["logger"]  # a run recorded before the logger section existed
    assert config_hash(before) == config_hash(plain)


@pytest.mark.parametrize("choice, mlflow, tensorboard", [
    (None, False, False), ("logger=none", False, False), ("logger=mlflow", True, False),
    ("logger=tensorboard", False, True), ("logger=all", True, True),
    ("logger=[mlflow,tensorboard]", True, True)])
def test_logger_choices(choice, mlflow, tensorboard):
    cfg = composed(*([choice] if choice else []))
    assert (cfg.logger.mlflow, cfg.logger.tensorboard) == (mlflow, tensorboard)


def test_a_point_is_named_by_its_own_overrides(tmp_path):
    sweep = tmp_path / "outputs" / "multirun" / "demo"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    OmegaConf.save({"hydra": {"overrides": {"task": ["lr=1,2", "subset=0.5", "quiet=true",
                                                      "logger=all"]}}},
                   sweep / "multirun.yaml")
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(
        "- lr=1\n- subset=0.5\n- quiet=True\n- logger=all\n- optuna.study=s\n- optuna.trial=3\n")
    assert tracking.point_overrides(sweep / "0", sweep) == ["lr=1", "optuna.trial=3"]
    assert tracking.experiment_name({}, sweep) == "demo"
    assert tracking.experiment_name({"experiment": "mine"}, sweep) == "mine"
    assert tracking.experiment_name({}, tmp_path / "elsewhere") == \
        str((tmp_path / "elsewhere").resolve())
    assert tracking.sweep_folder(sweep / "0") == sweep
    single = tmp_path / "outputs" / "runs" / "today" / "now"
    assert tracking.sweep_folder(single) is None
    assert tracking.experiment_name({}, None) == "runs"


def test_a_tracker_that_is_down_is_one_warning_line(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(tracking, "_warned", set())
    port = free_port()  # nothing listens there
    uri = f"http://127.0.0.1:{port}"
    metrics = {"status": "ok", "config_hash": "abc", "test_loss": 1.0,
               "config": {"lr": 1.0, "logger": {"mlflow": True, "tensorboard": False,
                                                "mlflow_uri": uri, "experiment": None}}}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    caplog.set_level(logging.DEBUG, logger="forgetting")
    start = time.perf_counter()
    for _ in range(3):  # e.g. three points of a sweep in one process
        tracking.log_run(run_dir, metrics, [{"epoch": 1, "train_loss": 2.0}])
    assert time.perf_counter() - start < 5
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "\n" not in line
    assert line.startswith(f"mlflow: not logged at {uri} (cannot connect to 127.0.0.1:{port}")
    assert "rerunning the command logs what is missing" in line


# --- slow: real sweeps through the CLI -----------------------------------------------------

def mlflow_runs(store: Path, experiment: str, kind: str = "run", deleted: bool = False):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    return client, client.search_runs([found.experiment_id], f"tags.kind = '{kind}'",
                                      run_view_type=view)


def history_of(run_dir: Path, column: str) -> list[tuple[int, float]]:
    history = pd.read_parquet(run_dir / "history.parquet")
    return [(int(e), float(v)) for e, v in zip(history["epoch"], history[column])
            if not math.isnan(v)]


def check_mlflow_run(client, run, tmp_path: Path) -> None:
    """One MLflow run against its run folder: tags, params, metrics per epoch, artifacts."""
    run_dir = Path(run.data.tags["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tags = run.data.tags
    assert tags["status"] == metrics["status"] == "ok"
    assert tags["config_hash"] == metrics["config_hash"]
    assert metrics["git_commit"] == head_commit()  # the tests run from a checkout
    assert tags["git_commit"] == tags["mlflow.source.git.commit"] == metrics["git_commit"]
    params = run.data.params
    config = tracking.flatten(metrics["config"])
    assert set(params) == set(config) | {f"choices.{k}" for k in metrics["choices"]}
    assert params["lr"] == json.dumps(metrics["config"]["lr"])
    assert params["model.name"] == "tiny" and params["choices.data"] == "synthetic"
    assert params["schedule.knots"] == json.dumps(metrics["config"]["schedule"]["knots"])
    for column in ("train_loss", "train_acc", "test_loss", "test_acc", "step_lr", "epoch_s"):
        logged = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, column)]
        assert sorted(logged) == history_of(run_dir, column), column
    assert run.data.metrics["clean_train_loss"] == metrics["clean_train_loss"]
    assert run.data.metrics["epochs_run"] == metrics["epochs_run"] == 2
    assert run.data.metrics["run_wall_s"] == metrics["wall_s"]  # the run's, not an epoch's
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == \
        {"metrics.json", "history.parquet"}
    copy = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == metrics


def tensorboard_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def check_tensorboard_run(folder: Path, run_dir: Path) -> None:
    """A run's event folder against its files: scalars per epoch, final numbers, hparams."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = tensorboard_events(folder)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for column in ("train_loss", "test_loss", "test_acc", "step_lr"):
        logged = [(e.step, e.value) for e in events.Scalars(column)]
        expected = history_of(run_dir, column)
        assert [s for s, _ in logged] == [s for s, _ in expected], column
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    assert events.Scalars("final/clean_train_loss")[0].value == \
        pytest.approx(metrics["clean_train_loss"], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["lr"].number_value == metrics["config"]["lr"]
    assert hparams["model"].string_value == "tiny"
    assert hparams["status"].string_value == "ok"
    experiment = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    infos = plugin_data_pb2.HParamsPluginData.FromString(experiment).experiment.metric_infos
    assert "final/test_loss" in {m.name.tag for m in infos}


def tracker_state(store: Path, experiment: str, sweep: Path) -> dict:
    _, runs = mlflow_runs(store, experiment)
    _, parents = mlflow_runs(store, experiment, kind="sweep")
    events = {p.parent.name: p.stat().st_mtime_ns
              for p in (sweep / "tensorboard").glob("*/events.out.tfevents.*")}
    return {"runs": sorted(r.info.run_id for r in runs),
            "parents": [p.info.run_id for p in parents], "events": events}


@pytest.mark.slow
def test_a_sweep_in_mlflow_and_tensorboard(tmp_path):
    """No logger, then logger=all (the finished points are logged from disk, none trained),
    force=true (retrained: each MLflow run and event folder replaced, through the run's own
    hook), a plain rerun (nothing new)."""
    sweep, store = tmp_path / "sweep", tmp_path / "mlruns"
    experiment = str(sweep.resolve())  # outside any multirun/ folder: its absolute path
    args = ["-m", *TINY, "lr=1,2", f"hydra.sweep.dir={sweep}", f"logger.mlflow_uri={store}"]

    plain = run_cli(*args)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert not store.exists() and not (sweep / "tensorboard").exists()

    late = run_cli(*args, "logger=all")
    assert late.returncode == 0, late.stderr[-3000:]
    assert late.stdout.count("skipped: this config already finished") == 2
    assert "mlflow: 2 runs of" in late.stdout
    first = tracker_state(store, experiment, sweep)
    assert len(first["runs"]) == 2 and len(first["parents"]) == 1
    assert sorted(first["events"]) == ["0", "1"]

    forced = run_cli(*args, "logger=all", "force=true")
    assert forced.returncode == 0, forced.stderr[-3000:]
    second = tracker_state(store, experiment, sweep)
    assert len(second["runs"]) == 2 and not set(second["runs"]) & set(first["runs"])
    assert second["parents"] == first["parents"]
    assert all(second["events"][n] != first["events"][n] for n in ("0", "1"))
    client, deleted = mlflow_runs(store, experiment, deleted=True)
    assert sorted(r.info.run_id for r in deleted) == first["runs"]  # replaced, restorable

    client, runs = mlflow_runs(store, experiment)
    assert sorted(r.info.run_name for r in runs) == ["lr=1", "lr=2"]
    parent = second["parents"][0]
    for run in runs:
        check_mlflow_run(client, run, tmp_path / run.info.run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent
        run_dir = Path(run.data.tags["run_dir"])
        check_tensorboard_run(sweep / "tensorboard" / run_dir.name, run_dir)
    pivot = Path(client.download_artifacts(parent, "pivot.txt", str(tmp_path)))
    assert pivot.read_text().strip() in forced.stdout
    assert client.get_run(parent).data.metrics["ok"] == 2

    again = run_cli(*args, "logger=all")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped: this config already finished") == 2
    assert tracker_state(store, experiment, sweep) == second


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 (its own process group, stopped after)."""
    exe = Path(sys.executable).parent / "mlflow"
    if not exe.is_file():
        pytest.skip("the mlflow command is not installed (pip install -e '.[test]')")
    port = free_port()
    server = subprocess.Popen(
        [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "server-artifacts")],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start (exit code {server.poll()})")
                time.sleep(0.5)
        yield url, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_single_run_on_an_mlflow_server_then_with_the_server_down(tmp_path, mlflow_server):
    from mlflow.tracking import MlflowClient

    url, server = mlflow_server
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, "lr=2", "logger=all", f"logger.mlflow_uri={url}",
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "View run" not in proc.stdout and "View experiment" not in proc.stdout  # quiet
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("runs")
    (run,) = client.search_runs([experiment.experiment_id])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert run.data.tags["run_dir"] == str(run_dir.resolve())
    assert run.data.metrics["test_loss"] == metrics["test_loss"]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss")] \
        == history_of(run_dir, "train_loss")
    assert run.info.run_name.split() == TINY + ["lr=2"]  # a single run: all its overrides
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == \
        {"metrics.json", "history.parquet"}
    check_tensorboard_run(run_dir / "tensorboard", run_dir)

    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
    down = tmp_path / "down"
    proc = run_cli(*TINY, "lr=2", "logger=all", f"logger.mlflow_uri={url}",
                   f"hydra.run.dir={down}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((down / "metrics.json").read_text())["status"] == "ok"
    output = proc.stdout + proc.stderr
    lines = [ln for ln in output.splitlines() if "not logged" in ln]
    assert len(lines) == 1 and f"mlflow: not logged at {url} (cannot connect" in lines[0]
    assert "Traceback" not in output
    check_tensorboard_run(down / "tensorboard", down)  # the other tracker still logs


def test_the_sweep_line_counts_runs_and_points_to_the_runs_table():
    from forgetting.runs.tracking.mlflow_runs import plural, runs_table_hint

    assert [plural(n, "run") for n in (1, 2)] == ["1 run", "2 runs"]
    assert runs_table_hint("http://127.0.0.1:5000/", "7") == (
        "; its runs: http://127.0.0.1:5000/#/experiments/7?workflowType=machine_learning")
    assert runs_table_hint("sqlite:////tmp/mlflow.db", "7") == ""
