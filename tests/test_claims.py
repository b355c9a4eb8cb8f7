"""Nothing lost, nothing run twice (issue 12, items 1-5): tables never shrink, abandoned Optuna
trials are what they are, files honour the umask, a run folder is trained by one process at a
time, a truncated metrics.json is retrained with a word."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from forgetting.collect import main as collect_main
from forgetting.core.files import atomic_write_json, atomic_write_text
from forgetting.rundir.claims import claim, holder
from forgetting.runs.configs import CONFIG_DIR, register_configs
from forgetting.runs.job import run_one
from forgetting.tables.results import build_tables, collect, report_failures
from helpers import REPO, TINY, run_cli, write_run


def table(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "results.parquet")


# ---------------------------------------------------------------- 1: tables never shrink

def test_collect_never_replaces_a_table_with_fewer_rows(tmp_path, capsys):
    for n in range(3):
        write_run(tmp_path / str(n), "ok", lr=n + 1)
    assert collect_main([str(tmp_path)]) == 0 and len(table(tmp_path)) == 3
    before = (tmp_path / "results.parquet").read_bytes()
    (tmp_path / "2" / "metrics.json").unlink()
    (tmp_path / "2").rmdir()
    capsys.readouterr()
    assert collect_main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'results.parquet'} has 3 rows, the run folders give 2; not "
        "replaced (--replace replaces it)"]
    assert (tmp_path / "results.parquet").read_bytes() == before
    assert collect_main([str(tmp_path), "--replace"]) == 0 and len(table(tmp_path)) == 2


def test_collect_without_run_folders_writes_nothing(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    assert collect_main([str(sweep)]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert list(sweep.iterdir()) == []  # no empty table, not even a lock file
    pd.DataFrame({"lr": [1, 2], "status": ["ok", "ok"]}).to_parquet(sweep / "results.parquet")
    before = (sweep / "results.parquet").read_bytes()
    assert collect_main([str(sweep)]) == 2
    assert (sweep / "results.parquet").read_bytes() == before  # the only copy of 2 rows


# ---------------------------------------------------------------- 2: abandoned Optuna trials

def test_an_abandoned_trial_is_a_row_that_says_so_and_fails_nothing(tmp_path, capsys):
    killed = tmp_path / "0" / ".hydra"  # SIGKILLed worker: Hydra's files, no metrics.json
    killed.mkdir(parents=True)
    (killed / "config.yaml").write_text("lr: 2.0\nsubset: 1.0\noptuna:\n  study: s\n"
                                        "  storage: journal:/j.log\n  trial: 0\n")
    write_run(tmp_path / "1", "ok", lr=2.0, test_loss=0.5, study="s", trial=1,
              config={"lr": 2.0, "subset": 1.0})
    pd.DataFrame({"study": ["s", "s"], "trial": [0, 1], "trial_state": ["FAIL", "COMPLETE"],
                  "discarded": ["abandoned", None], "retry_of": [None, 0],
                  "note": [None, None]}).to_parquet(tmp_path / "optuna_trials.parquet")
    results, _ = collect(tmp_path)
    row = results.set_index("trial").loc[0]
    assert row["status"] == "abandoned"
    assert row["error"] == "abandoned by its worker; retried as trial 1"
    assert report_failures(results) == 0
    assert collect_main([str(tmp_path)]) == 0, capsys.readouterr().err


# ---------------------------------------------------------------- 3: the umask

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_honour_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_json(tmp_path / "sub" / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "sub" / "m.json").stat().st_mode & 0o777 == mode


# ---------------------------------------------------------------- 4: claims

def test_a_claimed_folder_cannot_be_claimed_again_until_released(tmp_path):
    first = claim(tmp_path)
    assert first is not None and first.fd is not None
    assert claim(tmp_path, attempts=1) is None  # another open file: the lock is held
    assert holder(tmp_path) == {"host": os.uname().nodename, "pid": os.getpid()}
    first.release()
    assert holder(tmp_path) is None and not (tmp_path / ".claim").exists()
    with claim(tmp_path) as again:
        assert again.fd is not None


def test_the_claim_of_a_killed_process_is_free(tmp_path):
    code = ("import sys; from pathlib import Path; from forgetting.rundir.claims import claim; "
            f"c = claim(Path({str(tmp_path)!r})); print('held', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "held\n"
        assert holder(tmp_path)["pid"] == child.pid
        assert claim(tmp_path, attempts=1) is None
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (tmp_path / ".claim").exists()  # left behind by SIGKILL, but stale
    assert holder(tmp_path) is None
    assert claim(tmp_path) is not None


def test_a_claimed_unfinished_point_is_running_not_failed(tmp_path):
    run = tmp_path / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("lr: 1.0\nsubset: 1.0\n")
    with claim(run):
        results, _, _ = build_tables([tmp_path])
        assert results["status"].tolist() == ["running"] and report_failures(results) == 0
    results, _, _ = build_tables([tmp_path])
    assert results["status"].tolist() == ["interrupted"] and report_failures(results) == 0


@pytest.fixture
def tiny_cfg():
    """The tiny composed config (conftest puts Hydra's global version base back)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[*TINY, "epochs=1", "probe.epochs=0"])


def test_a_folder_claimed_by_another_process_is_skipped(tmp_path, tiny_cfg, caplog):
    with claim(tmp_path), caplog.at_level(logging.INFO, logger="forgetting"):
        assert math.isnan(run_one(tiny_cfg, tmp_path, {}))
        assert math.isnan(run_one(tiny_cfg, tmp_path, {}))
    assert not (tmp_path / "metrics.json").exists()
    assert [r.getMessage() for r in caplog.records] == 2 * [
        f"skipped: another process (pid {os.getpid()} on {os.uname().nodename}) is training "
        f"this config in {tmp_path}"]


# ---------------------------------------------------------------- 5: a truncated metrics.json

def test_a_truncated_metrics_json_is_retrained_with_one_line(tmp_path, tiny_cfg, caplog):
    (tmp_path / "metrics.json").write_text('{"status": "ok", "test_lo')
    with caplog.at_level(logging.INFO, logger="forgetting"):
        run_one(tiny_cfg, tmp_path, {})
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"{tmp_path / 'metrics.json'} is unreadable (truncated?): the run is trained again"]
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "ok"


def test_a_killed_writers_temporary_file_is_removed_by_the_next_claim(tmp_path, tiny_cfg):
    """SIGKILL during an atomic write leaves `.NAME.XXXX.tmp`; the process that claims the
    folder next removes it (nobody else writes there while it holds the claim)."""
    stale = tmp_path / ".history.parquet.k1ll3d.tmp"
    stale.write_bytes(b"")
    run_one(tiny_cfg, tmp_path, {})
    assert not stale.exists() and not list(tmp_path.glob(".*.tmp"))
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "ok"


# ---------------------------------------------------------------- 4, end to end

# Each training appends its LR factor to $FORGETTING_TEST_MARKER: a count of trainings that
# does not depend on what the sweeps print (loaded by Python at start-up, through PYTHONPATH).
MARKER_SITE = """
import os
if os.environ.get("FORGETTING_TEST_MARKER"):
    import forgetting.core.train as _train
    _original = _train.train

    def train(conf, *args, **kwargs):
        with open(os.environ["FORGETTING_TEST_MARKER"], "a") as marker:
            marker.write(f"{conf.lr}\\n")
        return _original(conf, *args, **kwargs)

    _train.train = train
"""
LRS = ["0.5", "1.0", "1.5", "2.0"]
# the race is in choosing and claiming folders, not in training: the smallest runs
RACE = [*TINY, "epochs=1", "threads=1", "data.train_size=128", "data.test_size=64"]


def race(folder: Path, site: Path, marker: Path, *launcher: str) -> list[str]:
    """Two identical 4-point sweeps started together into `folder`; their outputs."""
    args = [sys.executable, "-m", "forgetting.run", "-m", *RACE, f"lr={','.join(LRS)}",
            f"hydra.sweep.dir={folder}", *launcher]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(site),
           "FORGETTING_TEST_MARKER": str(marker)}
    procs = [subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("rounds, launcher", [(9, []), (1, ["hydra/launcher=joblib",
                                                            "hydra.launcher.n_jobs=2"])])
def test_two_identical_sweeps_into_one_folder_train_each_point_once(tmp_path, rounds,
                                                                    launcher):
    """A race of two identical sweeps, repeated: every round trains each point exactly once,
    counted by a marker each training writes, into folders 0-3 (never an `N-HASH`)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(MARKER_SITE)
    for n in range(rounds):
        folder, marker = tmp_path / f"sweep{n}", tmp_path / f"trained{n}.txt"
        outputs = race(folder, site, marker, *launcher)
        told = [[ln for ln in out.splitlines() if "skipped" in ln or "#" in ln or "error" in ln]
                for out in outputs]  # what each sweep said of each point, should this fail
        assert sorted(marker.read_text().split()) == LRS, (n, told)  # each point trained once
        assert sorted(p.parent.name for p in folder.glob("*/.hydra")) == ["0", "1", "2", "3"], \
            (n, told)  # run folders: never an N-HASH
        assert (table(folder)["status"] == "ok").all() and len(table(folder)) == 4
    rerun = run_cli("-m", *RACE, f"lr={','.join(LRS)}",
                    f"hydra.sweep.dir={folder}", *launcher,
                    env={"PYTHONPATH": str(site), "FORGETTING_TEST_MARKER": str(marker)})
    assert rerun.stdout.count("skipped: this config already finished") == 4, rerun.stdout
    assert sorted(marker.read_text().split()) == LRS  # nothing trained again
