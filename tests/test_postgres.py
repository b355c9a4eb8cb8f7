"""Optuna studies on a real PostgreSQL server, and Optuna's own heartbeat for database
storages (hydra_plugins/forgetting_optuna_sweeper/_workers.py).

The server: $FORGETTING_TEST_POSTGRES (a SQLAlchemy URL; .ci/run starts a throwaway cluster and
sets it), else a throwaway cluster these tests start themselves from Debian's postgresql
binaries (as the `postgres` user when run as root), else the tests skip, saying why. Each test
gets a database of its own. The heartbeat's bookkeeping is also checked on sqlite, without a
server, in the fast tier.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy
from optuna.trial import TrialState

from helpers import REPO, TINY, run_cli
from hydra_plugins.forgetting_optuna_sweeper import _workers as workers
from hydra_plugins.forgetting_optuna_sweeper._report import write_trials
from hydra_plugins.forgetting_optuna_sweeper._study import open_storage

ENV = "FORGETTING_TEST_POSTGRES"
OPTUNA = ["hydra/sweeper=optuna_study"]
DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


# --- the server ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster():
    """(URL, stop) of a throwaway cluster on 127.0.0.1, or (None, why not)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        return None, "no PostgreSQL server binaries (apt-get install postgresql) and no " \
                     f"${ENV}"
    bindir = Path(initdb).parent
    folder = Path(tempfile.mkdtemp(prefix="forgetting-pg-"))
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(folder, user="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    try:
        subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(folder / "data"), "-U",
                                  "forgetting", "-A", "trust", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-l",
                                  str(folder / "server.log"), "-w", "-o",
                                  f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        return None, f"could not start a PostgreSQL cluster ({e})"

    def stop() -> None:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-m",
                                  "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)

    return f"postgresql+psycopg://forgetting@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="module")
def server():
    """A URL of a PostgreSQL server's maintenance database."""
    pytest.importorskip("psycopg", reason="needs psycopg (pip install 'psycopg[binary]')")
    url, stop = os.environ.get(ENV), None
    if not url:
        url, stop = _start_cluster()
        if url is None:
            pytest.skip(stop)
    try:
        yield url
    finally:
        if stop is not None:
            stop()


@pytest.fixture
def database(server):
    """A fresh database on the server for one test (dropped after): its SQLAlchemy URL."""
    name = f"forgetting_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = sqlalchemy.engine.make_url(server).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def load(url: str, name: str):
    return optuna.load_study(study_name=name, storage=url)


def worker(folder: Path, url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "forgetting.run", "-m", *TINY, *OPTUNA,
            f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={folder}", *args]


# --- fast: Optuna's heartbeat bookkeeping on sqlite -------------------------------------------

def test_a_stale_trial_is_failed_and_retried_by_optunas_heartbeat(tmp_path):
    """A database storage runs Optuna's heartbeat: a claimed trial whose heartbeat went stale
    is failed by optuna.storages.fail_stale_trials and queued again by its retry callback; it
    does not count towards n_trials, and the trials table shows it abandoned and retried."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, stale_after_s=30)
    assert storage.get_heartbeat_interval() == 3 and storage.grace_period == 30
    study = optuna.create_study(study_name="hb", storage=storage)
    lock = workers.claim_lock(tmp_path / "claim.lock")
    (orphan,) = workers.claim(study, DIST, 2, 1, lock, lambda k: None)
    assert workers.recover_abandoned(study, 30) == []  # its heartbeat is fresh
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as c:  # its worker died a minute ago
        c.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = "
                                  "datetime(heartbeat, '-60 seconds')"))
    assert workers.recover_abandoned(study, 30) == [orphan.number]
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and "discarded" not in trials[0].user_attrs
    assert trials[1].state == TrialState.WAITING
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == orphan.params
    assert workers.counted(trials) == []  # the failed one is retried, the retry not yet run
    (retry,) = workers.claim(study, DIST, 2, 1, lock, lambda k: None)
    assert retry.number == 1 and retry.params == orphan.params
    study.tell(retry, 0.5)
    write_trials(study, tmp_path, None)
    table = pd.read_parquet(tmp_path / "optuna_trials.parquet")
    assert table["discarded"][0] == "abandoned" and pd.isna(table["discarded"][1])
    assert pd.isna(table["retry_of"][0]) and table["retry_of"][1] == 0


# --- slow: real workers on PostgreSQL ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgres_run_exactly_n_trials(tmp_path, database):
    """Two worker processes with their own sweep folders (as on two nodes: no shared file,
    only the database) end with exactly n_trials counted trials, each run once."""
    folders = [tmp_path / "a", tmp_path / "b"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["epochs=1", "lr=tag(log, interval(0.1, 8))", "hydra.sweeper.study_name=shared",
            "hydra.sweeper.n_trials=6"]
    procs = [subprocess.Popen(worker(f, database, *args), cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in folders]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    study = load(database, "shared")
    kept = workers.counted(study.trials)
    assert len(kept) == 6 and all(t.state == TrialState.COMPLETE for t in kept)
    assert {t.user_attrs["worker"]["pid"] for t in kept} == {p.pid for p in procs}
    ran = {}
    for folder in folders:
        for path in folder.glob("*/metrics.json"):
            trial = json.loads(path.read_text())["trial"]
            assert trial not in ran, f"trial {trial} ran twice"
            ran[trial] = path.parent
    assert sorted(ran) == sorted(t.number for t in kept)
    for t in kept:  # what each run recorded is what the study was told
        metrics = json.loads((ran[t.number] / "metrics.json").read_text())
        assert metrics["storage"] == database and metrics["study"] == "shared"
        assert t.value == pytest.approx(metrics["test_loss"])


@pytest.mark.slow
@pytest.mark.postgres
def test_pruning_reaches_jobs_through_postgres(tmp_path, database):
    """Jobs in joblib's worker processes report each epoch to their trial in the database;
    the median pruner stops the bad trial after its first epoch."""
    folder = tmp_path / "sweep"
    proc = run_cli(*worker(folder, database, "epochs=3", "lr=choice(4,0.01)",
                          "hydra.sweeper.sampler=grid", "hydra.sweeper.study_name=prune",
                          "hydra.sweeper.pruner=median",
                          "+hydra.sweeper.pruner_kwargs.n_startup_trials=1",
                          "hydra.sweeper.n_jobs=1", "hydra/launcher=joblib",
                          "hydra.launcher.n_jobs=2")[1:], module=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(database, "prune")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert list(study.trials[0].intermediate_values) == [1, 2, 3]
    assert list(study.trials[1].intermediate_values) == [1]
    assert len(pd.read_parquet(folder / "1" / "history.parquet")) == 1
    table = pd.read_parquet(folder / "results.parquet").sort_values("trial")
    assert table["status"].tolist() == ["ok", "pruned"]
    assert table["storage"].tolist() == [database] * 2


@pytest.mark.slow
@pytest.mark.postgres
def test_a_killed_worker_is_failed_and_retried_by_optunas_heartbeat(tmp_path, database):
    """kill -9 of a worker mid-trial: its trial's Optuna heartbeat stops, another worker's
    fail_stale_trials marks it FAIL after the grace period (4 s here) and the retry callback
    queues its params, which that worker runs; the study ends with n_trials COMPLETE."""
    folder = tmp_path / "sweep"
    args = worker(folder, database, "epochs=3", "lr=tag(log, interval(0.5, 4))",
                  "hydra.sweeper.study_name=kill", "hydra.sweeper.n_trials=3",
                  "hydra.sweeper.stale_after_s=4")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    engine = sqlalchemy.create_engine(database)  # plain SQL: no Optuna set-up races the worker
    query = sqlalchemy.text("SELECT t.number FROM trials t JOIN studies s USING (study_id) "
                            "WHERE s.study_name = 'kill' AND t.state = 'RUNNING'")
    deadline, running = time.monotonic() + 300, []
    while not running and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
        try:
            with engine.connect() as c:
                running = c.execute(query).scalars().all()
        except sqlalchemy.exc.ProgrammingError:  # no tables yet
            continue
    engine.dispose()
    assert running, "the first worker never started a trial"
    time.sleep(1.0)  # well inside the trial (its heartbeat recorded)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    killed = load(database, "kill").trials[running[0]]
    assert killed.state == TrialState.RUNNING

    second = run_cli(*args[1:], module=None)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"trial {killed.number} went stale" in second.stdout + second.stderr
    trials = load(database, "kill").trials
    assert trials[killed.number].state == TrialState.FAIL
    assert "discarded" not in trials[killed.number].user_attrs  # Optuna's mechanism, not ours
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    kept = workers.counted(trials)
    assert len(kept) == 3 and all(t.state == TrialState.COMPLETE for t in kept)
    table = pd.read_parquet(folder / "results.parquet").set_index("trial")
    assert table.loc[killed.number, "status"] == "abandoned"
    assert table.loc[killed.number, "error"] == \
        f"abandoned by its worker; retried as trial {retry.number}"
    assert table.loc[retry.number, "status"] == "ok"
