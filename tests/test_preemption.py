"""Pre-emption: a run stopped at a step boundary saves a checkpoint and a rerun resumes it.

Tolerance: none. On a CPU with a fixed seed the resumed run takes exactly the steps of the
uninterrupted one (same weights, momentum buffers, BatchNorm statistics, batch order and
augmentation redrawn from the data generator's state at the epoch's start, same thread count),
so every loss and accuracy is compared for bit equality. (On a GPU cuDNN's autotuned kernels
do not promise bit-reproducibility, even without an interruption.)
"""

import json
import os
import signal
import subprocess
import sys
import time
from itertools import count
from pathlib import Path

import pandas as pd
import pytest
import torch

from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.train import train
from forgetting.runs import preemption
from helpers import REPO, TINY, run_cli

COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "step_lr"]
FINAL = ["train_loss", "clean_train_loss", "test_loss", "test_acc", "clean_train_acc"]


def stop_before_step(k: int):
    """A stop flag that turns true before the k-th step (0-based) and stays true."""
    calls = count()
    return lambda: next(calls) >= k


@pytest.mark.parametrize("stops", [[13], [10, 0, 7]], ids=["mid-epoch", "three-times"])
def test_resumed_run_is_bit_identical(make_cfg, tmp_path, stops):
    # 640 images / batch 64 = 10 steps per epoch. Each attempt stops `k` steps after it
    # started: [13] at epoch 2, batch 3; [10, 0, 7] at epoch 2's start, again there before any
    # step, then at epoch 2, batch 7.
    cfg = make_cfg("epochs=4", "cutout=4", "threads=1", "probe.every=1", "probe.verify=true")
    reference = train(cfg)
    path = tmp_path / "checkpoint.pt"
    for k in stops:
        with pytest.raises(Preempted):
            train(cfg, checkpoint=Checkpoint(path, "h", stop=stop_before_step(k)))
        assert path.is_file()
    state = torch.load(path, weights_only=True)
    assert state["resumes"] == len(stops) - 1 and {"model", "optimizer", "rng"} <= set(state)
    resumed = train(cfg, checkpoint=Checkpoint(path, "h"))
    assert resumed.info["resumes"] == len(stops)
    assert pd.DataFrame(resumed.history)[COLUMNS].equals(pd.DataFrame(reference.history)[COLUMNS])
    assert {k: resumed.final[k] for k in FINAL} == {k: reference.final[k] for k in FINAL}
    # the forgetting probe's batch log and rows travel through the checkpoint
    assert pd.DataFrame(resumed.recency).equals(pd.DataFrame(reference.recency))
    assert len(reference.recency) == 10 + 20 + 20 + 20  # after epochs 1, 2, 3, end (K=2)


def test_checkpoint_of_another_config_is_ignored(make_cfg, tmp_path):
    cfg = make_cfg("epochs=2", "threads=1")
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train(cfg, checkpoint=Checkpoint(path, "one", stop=stop_before_step(5)))
    assert Checkpoint(path, "other").load() is None
    assert Checkpoint(path, "one", fresh=True).load() is None  # force=true
    assert Checkpoint(path, "one").load().progress.step == 5


def test_watch_turns_signals_into_a_flag(monkeypatch):
    monkeypatch.setattr(preemption, "_received", None)
    handed = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handed.append(signum))
    try:
        with preemption.watch():
            signal.raise_signal(signal.SIGUSR1)
            signal.raise_signal(signal.SIGTERM)  # the first signal is the one kept
        assert preemption.requested() and preemption.received() == signal.SIGUSR1
        with pytest.raises(SystemExit) as exit_info:
            preemption.hand_over(signal.SIGUSR1)
        assert handed == [signal.SIGUSR1] and exit_info.value.code == 128 + signal.SIGUSR1
    finally:
        signal.signal(signal.SIGUSR1, previous)


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text():
            return
        assert proc.poll() is None, path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not in {path} after {timeout}s")


LONG = [*TINY, "epochs=12", "quiet=false", "threads=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pd.DataFrame:
    run_dir = tmp_path_factory.mktemp("reference")
    proc = run_cli(*LONG, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    return pd.read_parquet(run_dir / "history.parquet")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT],
                         ids=["USR1", "TERM", "INT"])
def test_signal_saves_checkpoint_and_rerun_resumes(tmp_path, signum, uninterrupted):
    args = LONG
    run_dir = tmp_path / "run"
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "forgetting.run", *args,
                                 f"hydra.run.dir={run_dir}"], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for_line(log, "epoch 2/12", proc)
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 128 + signum
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "metrics.json").exists()
    assert "a rerun of this config" in log.read_text()
    assert "Traceback" not in log.read_text()  # Ctrl-C too: one line, exit 130
    second = run_cli(*args, f"hydra.run.dir={run_dir}")
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    assert not (run_dir / "checkpoint.pt").exists()  # deleted once the run finished
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["resumes"] == 1
    history = pd.read_parquet(run_dir / "history.parquet")
    assert len(history) == 12 and history[COLUMNS].equals(uninterrupted[COLUMNS])


@pytest.mark.slow
def test_an_interrupted_sweep_point_is_resumable_in_the_table(tmp_path):
    """Ctrl-C in a sweep: the point is `interrupted` (not failed) in the table, collect
    exits 0, no error.log; rerunning the sweep resumes it."""
    folder = tmp_path / "sweep"
    log = tmp_path / "first.log"
    args = ["-m", *LONG, "lr=1", f"hydra.sweep.dir={folder}"]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "forgetting.run", *args], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for_line(log, "epoch 2/12", proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    assert "Traceback" not in log.read_text()
    assert not (folder / "0" / "error.log").exists()
    collected = run_cli(str(folder), module="forgetting.collect")
    assert collected.returncode == 0, collected.stderr
    table = pd.read_parquet(folder / "results.parquet")
    assert table["status"].tolist() == ["interrupted"]
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert pd.read_parquet(folder / "results.parquet")["status"].tolist() == ["ok"]
    assert json.loads((folder / "0" / "metrics.json").read_text())["resumes"] == 1
