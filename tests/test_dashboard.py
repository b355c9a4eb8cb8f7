"""optuna-dashboard against a finished study of our sweeper, started exactly as the README says
(`optuna-dashboard STORAGE --host 127.0.0.1 --port P`), read back through its HTTP API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest

from hydra_plugins.forgetting_optuna_sweeper._study import open_storage

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:Future Hydra versions:UserWarning")]

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def finished_study(hydra_sweep_runner, tmp_path: Path, url: str):
    """Run a 3-trial search with our sweeper on Hydra's test app into `url`; its study."""
    sweep = hydra_sweep_runner(
        calling_file=None, calling_module="hydra.test_utils.a_module", config_path="configs",
        config_name="compose.yaml", temp_dir=tmp_path / "sweep",
        task_function=lambda cfg: (cfg.x - 0.3) ** 2,
        overrides=["hydra/sweeper=optuna_study", "hydra.sweeper.n_trials=3",
                   "hydra.sweeper.study_name=watched", f"hydra.sweeper.storage={url}",
                   "+x=interval(0, 1)"])
    with sweep:
        pass
    return optuna.load_study(study_name="watched", storage=open_storage(url))


@pytest.mark.parametrize("storage", ["journal", "sqlite", "postgresql"])
def test_the_dashboard_shows_a_finished_study(hydra_sweep_runner, tmp_path, storage):
    if not DASHBOARD.is_file():
        pytest.skip("optuna-dashboard is not installed (pip install -e '.[test]')")
    if storage == "journal":  # the README's command: the journal file's path
        url = f"journal:{tmp_path / 'optuna_journal.log'}"
        argument = str(tmp_path / "optuna_journal.log")
    elif storage == "sqlite":
        url = argument = f"sqlite:///{tmp_path / 'study.db'}"
    else:
        url = argument = os.environ.get("FORGETTING_TEST_POSTGRES", "")
        if not url:
            pytest.skip("no PostgreSQL server: $FORGETTING_TEST_POSTGRES is unset (.ci/run "
                        "sets it)")
        pytest.importorskip("psycopg", reason="needs psycopg (pip install 'psycopg[binary]')")
        try:
            optuna.delete_study(study_name="watched", storage=url)
        except KeyError:
            pass
    study = finished_study(hydra_sweep_runner, tmp_path, url)
    assert len(study.trials) == 3

    port = free_port()
    server = subprocess.Popen([str(DASHBOARD), argument, "--host", "127.0.0.1", "--port",
                               str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = get(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not start: {server.stdout.read()}")
                time.sleep(0.3)
        (summary,) = [s for s in studies if s["study_name"] == "watched"]
        detail = get(f"{base}/api/studies/{summary['study_id']}")
        shown = sorted((t["number"], t["state"], float(t["params"][0]["param_external_value"]),
                        t["values"][0]) for t in detail["trials"])
        expected = sorted((t.number, t.state.name.capitalize(), t.params["x"], t.value)
                          for t in study.trials)
        assert [s[:2] for s in shown] == [e[:2] for e in expected]
        assert [v for s in shown for v in s[2:]] == \
            pytest.approx([v for e in expected for v in e[2:]])
        assert detail["best_trials"][0]["number"] == study.best_trial.number
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
