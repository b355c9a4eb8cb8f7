"""Live progress (forgetting/runs/progress.py, run_line.py): `[k/N] done …` after each point
of a sweep (basic and joblib launchers); within a run a tqdm bar (a single run on a terminal),
else under quiet=true one short line per epoch and a heartbeat within a long epoch."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from forgetting.core import train as training
from forgetting.runs import progress, run_line
from forgetting.runs.configs import CONFIG_DIR, register_configs
from helpers import REPO, TINY, run_cli

RUN_LINE = re.compile(r"^  (#\d+ [^:]*: )?epoch (\d+)/(\d+), \d+\.\d+ s/epoch, "
                      r"train_loss (\S+)(, test_loss \d\.\d{3}, test_acc \d\.\d{3})?$")
HEARTBEAT = re.compile(r"^  (#\d+ [^:]*: )?epoch (\d+) of (\d+), step (\d+)/(\d+), \d+ s in$")
LINE = re.compile(r"^\[(\d+)/(\d+)\] done: (\d+) ok, (\d+) diverged, (\d+) failed(.*); "
                  r"elapsed (\S+), ETA (\S+)$")


def sweep_config(*command_line: str, sweeper: str | None = None, params: dict | None = None):
    """The primary config a sweep's callbacks get: the command line's overrides in
    hydra.overrides.task (compose alone refuses sweeps), the sweeper and its params."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/sweeper={sweeper}"] if sweeper else [],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(command_line)
        if params is not None:
            cfg.hydra.sweeper.params = params
    return cfg


def test_the_line_counts_outcomes_and_estimates_what_is_left():
    counts = {"start": 100.0, "total": 12, "trained": 3, "busy": 90.0,
              "counts": {"ok": 2, "diverged": 1, "skipped": 2}}
    assert progress.progress_line(counts, now=190.0) == \
        "[5/12] done: 2 ok, 1 diverged, 0 failed, 2 skipped; elapsed 1m30s, ETA 3m30s"
    counts.update(total=None)  # another sweeper: no N, no ETA
    assert progress.progress_line(counts, now=112.0) == \
        "[5] done: 2 ok, 1 diverged, 0 failed, 2 skipped; elapsed 12s"
    counts.update(total=5, trained=0)
    assert progress.progress_line(counts, now=112.0).endswith("ETA 0s")
    counts.update(total=9, busy=0.0)  # only skipped so far: no rate to go by
    assert progress.progress_line(counts, now=112.0).endswith("ETA after the first point")
    assert [progress.duration(s) for s in (0, 59.6, 61, 3600 + 7 * 60 + 5)] == \
        ["0s", "1m00s", "1m01s", "1h07m"]


def test_the_sweep_size_is_the_basic_sweepers_grid():
    def size(*args, **kwargs):
        return progress.sweep_size(sweep_config(*args, **kwargs))[0]

    assert size("lr=1,2,4", "subset=0.5,1", "seed=0") == 6
    assert size("lr=range(1,5)", "lr=1,2") == 2  # last one wins
    assert size("subset=0.5,1", params={"lr": "1,2,4"}) == 6
    assert size("lr=1") == 1
    assert progress.sweep_size(sweep_config("lr=1,2", sweeper="optuna_study")) == (None, None)


def test_a_sweeps_work_is_its_points_passes_times_width_squared():
    """epochs x subset per point under budget=epochs (epochs under budget=steps), x width²."""
    epochs = sweep_config().epochs
    _, work = progress.sweep_size(sweep_config("lr=1,2", "subset=0.025,0.05,0.1"))
    assert work == pytest.approx(2 * epochs * (0.025 + 0.05 + 0.1))
    _, work = progress.sweep_size(sweep_config("subset=0.5,1", "budget=steps", "epochs=3"))
    assert work == pytest.approx(2 * 3)
    _, work = progress.sweep_size(sweep_config("model.width=0.5,1", "subset=0.5", "epochs=4"))
    assert work == pytest.approx(4 * 0.5 * (0.25 + 1))
    values = {"epochs": 4, "model.width": None, "budget": "epochs", "subset": "${lr}"}
    assert progress.point_work(values.get) is None  # a size that is no number: points alike
    assert progress.point_work({**values, "subset": "0.5"}.get) == 2.0


def test_the_eta_goes_by_the_work_left_not_the_points_left():
    """A grid's first points are its smallest (subset 0.025 before 0.05 before 0.1): the ETA
    after the first is its rate per unit of work times the work left, which the next points
    confirm rather than push up."""
    works = [0.025, 0.05, 0.1] * 4
    counts = {"start": 0.0, "total": 12, "trained": 0, "busy": 0.0, "workers": 1,
              "counts": {}, "work": sum(works), "work_done": 0.0, "work_trained": 0.0}
    etas = []
    for k, work in enumerate(works[:3]):
        progress.add_outcome(counts, "ok", 400.0 * work, work)  # 400 s per unit of work
        etas.append(progress.eta_seconds(counts, left=11 - k))
    assert etas == pytest.approx([400.0 * (sum(works) - sum(works[:k + 1]))
                                  for k in range(3)])
    assert etas[0] > etas[1] > etas[2]  # it falls as the points end
    progress.add_outcome(counts, "skipped", None, 0.025)  # skipped: its work is done, no time
    assert progress.eta_seconds(counts, left=8) == pytest.approx(
        400.0 * (sum(works) - sum(works[:4])))
    progress.add_outcome(counts, "ok", 9.0)  # a point of unknown size: points count alike
    assert counts["work"] is None
    assert progress.eta_seconds(counts, left=7) == pytest.approx(counts["busy"] / 4 * 7)


def test_the_bar_follows_the_epoch_records():
    stream = io.StringIO()
    bar = run_line.EpochBar(stream)
    logger = logging.getLogger("forgetting.test_progress")
    logger.addHandler(bar)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("a heartbeat", extra={"steps": (7, 10), "epoch": 3, "epochs": 4,
                                            "epoch_s": 31.0})
        for epoch in (3, 4):  # a run resumed at epoch 3 of 4
            row = {"epoch": epoch, "train_loss": 1.5 / epoch, "test_loss": float("nan"),
                   "test_acc": 0.5}
            logger.info("epoch %d/4", epoch, extra={"epoch_row": row, "epochs": 4})
        logger.info("a line without a row")
    finally:
        logger.removeHandler(bar)
        bar.close()
    shown = stream.getvalue()
    assert "step 7/10" in shown
    assert "4/4" in shown and "train_loss 0.3750" in shown and "test_acc 0.5000" in shown
    assert "test_loss" not in shown  # NaN: not evaluated that epoch


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_a_sweep_says_where_it_is_after_each_point(tmp_path, launcher):
    args = ["-m", *TINY, "epochs=1", "lr=1,2,1e9", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *launcher]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [LINE.match(ln) for ln in proc.stdout.splitlines() if ln.startswith("[")]
    lines = [m for m in lines if m]
    assert sorted(int(m[1]) for m in lines) == [1, 2, 3]  # one line per point
    assert all(m[2] == "3" for m in lines)
    last = max(lines, key=lambda m: int(m[1]))
    assert last.group(3, 4, 5) == ("2", "1", "0") and last[6] == "" and last[8] == "0s"
    assert not list((tmp_path / "sweep" / ".progress").glob("*.json"))  # cleaned up
    runs = [RUN_LINE.match(ln) for ln in proc.stdout.splitlines() if ln.startswith("  #")]
    assert all(runs) and sorted(m[1] for m in runs) == \
        ["#0 lr=1: ", "#1 lr=2: ", "#2 lr=1000000000.0: "]  # as Hydra's `#2 :` line says
    assert all(m.group(2, 3) == ("1", "1") for m in runs)  # quiet: one line per epoch

    again = run_cli(*args)  # a rerun: every point finished before, skipped
    assert again.returncode == 0, again.stderr[-3000:]
    final = [ln for ln in again.stdout.splitlines() if ln.startswith("[3/3]")]
    assert final and final[0].startswith("[3/3] done: 0 ok, 0 diverged, 0 failed, 3 skipped;")
    assert final[0].endswith("ETA 0s") and "  #" not in again.stdout  # nothing trained
    first = [ln for ln in again.stdout.splitlines() if ln.startswith("[1/3]")]
    assert first[0].endswith("ETA after the first point")


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run `python -m forgetting.run ARGS` with a pseudo-terminal (100 columns) as its
    stdin, stdout and stderr; (exit code, everything it wrote)."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "forgetting.run", *args], cwd=cwd,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), out.decode(errors="replace")


@pytest.mark.slow
def test_a_single_run_on_a_terminal_shows_a_bar_else_plain_lines(tmp_path):
    args = [a for a in TINY if a != "quiet=true"] + ["epochs=3"]
    code, shown = run_in_terminal(args + [f"hydra.run.dir={tmp_path / 'tty'}"], cwd=REPO)
    assert code == 0, shown[-3000:]
    bars = re.findall(r"run: +(\d+)%\|[^|\r\n]*\| (\d)/3 \[", shown)
    assert ("100", "3") in bars and ("33", "1") in bars
    assert shown.count("epoch 3/3") == 1  # the log lines still print, above the bar

    piped = run_cli(*args, f"hydra.run.dir={tmp_path / 'pipe'}")
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert "epoch 3/3" in piped.stdout
    assert "it/s" not in piped.stdout + piped.stderr and "|" not in piped.stderr
    assert "epoch/s" not in piped.stdout + piped.stderr


def test_the_eta_divides_the_points_left_among_parallel_workers():
    """joblib with 2 workers: 2 points of 10 s each done 10 s after the start, 2 left: ETA
    10 s, not the 20 s a sequential launcher would need."""
    counts = {"start": 100.0, "total": 4, "trained": 2, "busy": 20.0, "workers": 2,
              "counts": {"ok": 2}}
    assert progress.progress_line(counts, now=110.0).endswith("elapsed 10s, ETA 10s")
    counts.update(workers=1)
    assert progress.progress_line(counts, now=110.0).endswith("ETA 20s")
    counts.update(workers=8, total=3)  # more workers than points left: one point's time
    assert progress.progress_line(counts, now=110.0).endswith("ETA 10s")


def test_a_sweep_refused_before_its_points_leaves_no_progress_file(tmp_path):
    """The counts file is created by the first point that ends, not when the sweep starts."""
    callback = progress.Progress()
    config = sweep_config("lr=1,2")
    with open_dict(config):
        config.hydra.sweep.dir = str(tmp_path / "sweep")
    callback.on_multirun_start(config)
    assert callback.state is not None and not (tmp_path / "sweep").exists()
    line = progress.count_point(callback.state, "ok", 3.0, callback.initial)
    assert line.startswith("[1/") and callback.state.is_file()
    assert json.loads(callback.state.read_text())["busy"] == 3.0


def test_the_eta_after_the_first_point_is_its_time_times_the_points_left_per_worker():
    """Measured from the trained points' own jobs, not from the sweep's elapsed time (which
    holds its start-up and the skipped points); before one was trained, no number."""
    counts = {"start": 0.0, "total": 12, "trained": 0, "busy": 0.0, "workers": 2,
              "counts": {"skipped": 2}}
    assert progress.progress_line(counts, now=100.0).endswith(
        "elapsed 1m40s, ETA after the first point")
    progress.add_outcome(counts, "ok", 10.0)  # the first trained point: 10 s of its job
    assert progress.eta_seconds(counts, left=9) == 10.0 * 9 / 2
    assert progress.progress_line(counts, now=130.0).endswith("elapsed 2m10s, ETA 45s")
    counts.pop("busy")  # no job times (a counts file of an older version): no number either
    assert progress.progress_line(counts, now=130.0).endswith("ETA after the first point")


def run_lines(cfg, monkeypatch, heartbeat_s: float, **line) -> list[str]:
    """The lines a RunLine shows (a StringIO, as a pipe) while `cfg` trains in this process,
    with a heartbeat every `heartbeat_s` seconds."""
    monkeypatch.setattr(training, "HEARTBEAT_S", heartbeat_s)
    stream = io.StringIO()
    with run_line.listening(run_line.RunLine(stream, **line)):
        training.train(cfg)
    return stream.getvalue().splitlines()


def test_a_quiet_run_prints_one_line_per_epoch(make_cfg, monkeypatch):
    lines = run_lines(make_cfg("epochs=3"), monkeypatch, 30.0, label="#3 lr=1")
    matches = [RUN_LINE.match(ln) for ln in lines]
    assert len(lines) == 3 and all(matches), lines
    assert [m.group(1, 2, 3) for m in matches] == [("#3 lr=1: ", str(e), "3") for e in (1, 2, 3)]
    assert all(m[5] for m in matches)  # the test set is evaluated every epoch (eval_every=1)


def test_a_heartbeat_comes_within_an_epoch_longer_than_the_interval(make_cfg, monkeypatch):
    """Interval 0 s: every step outlasts it, so a heartbeat after each step but an epoch's last
    (its epoch line follows); 640 examples / 64 = 10 steps an epoch."""
    lines = run_lines(make_cfg("epochs=2"), monkeypatch, 0.0)
    beats = [HEARTBEAT.match(ln) for ln in lines]
    assert [m.group(2, 3, 4, 5) for m in beats if m] == \
        [(str(e), "2", str(s), "10") for e in (1, 2) for s in range(1, 10)]
    assert [ln for ln, m in zip(lines, beats) if not m] == [lines[9], lines[19]]
    assert RUN_LINE.match(lines[9])[2] == "1" and RUN_LINE.match(lines[19])[2] == "2"
    # quiet=false: the full log line says where the epoch is; the heartbeats only
    lines = run_lines(make_cfg("epochs=1"), monkeypatch, 0.0, epochs=False)
    assert len(lines) == 9 and all(HEARTBEAT.match(ln) for ln in lines)
    assert run_lines(make_cfg("epochs=1"), monkeypatch, 30.0, epochs=False) == []


def test_on_a_terminal_the_run_line_is_rewritten_in_place(make_cfg, monkeypatch):
    monkeypatch.setattr(training, "HEARTBEAT_S", 30.0)
    stream = io.StringIO()
    with run_line.listening(run_line.RunLine(stream, in_place=True)):
        training.train(make_cfg("epochs=2"))
        assert "\n" not in stream.getvalue()
    shown = stream.getvalue()
    assert shown.count("\r") == 2 and shown.endswith(run_line.CLEAR_TO_END + "\n")
    assert RUN_LINE.match(shown.split("\r")[-1].removesuffix(run_line.CLEAR_TO_END + "\n"))


def test_the_progress_records_print_nothing_unless_listened_to(make_cfg, monkeypatch, capsys):
    monkeypatch.setattr(training, "HEARTBEAT_S", 0.0)
    training.train(make_cfg("epochs=1"))
    captured = capsys.readouterr()
    assert "step 1/10" not in captured.out + captured.err


def test_the_swept_keys_name_a_points_line():
    assert progress.swept_keys(sweep_config("lr=1,2", "subset=0.5", "seed=range(0,3)",
                                            params={"epochs": "1,2"})) == ["epochs", "lr", "seed"]
    assert progress.swept_keys(sweep_config("lr=1")) == []


@pytest.mark.slow
def test_a_quiet_run_writing_to_a_pipe_prints_one_line_per_epoch(tmp_path):
    proc = run_cli(*TINY, "epochs=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("  ")]
    matches = [RUN_LINE.match(ln) for ln in lines]
    assert len(lines) == 3 and all(matches), proc.stdout
    assert [m.group(1, 2, 3) for m in matches] == [(None, str(e), "3") for e in (1, 2, 3)]
    assert "\r" not in proc.stdout and "epoch 1/3  lr" not in proc.stdout + proc.stderr


def test_a_log_line_ends_the_in_place_line_first(monkeypatch):
    stream = io.StringIO()
    line = run_line.RunLine(stream, in_place=True)
    logger = logging.getLogger("test_progress_in_place")
    with run_line.listening(line), run_line.ended_by_logs(line):
        monkeypatch.setattr(logging.getLogger(), "handlers",
                            [*logging.getLogger().handlers, logging.StreamHandler(stream)])
        line.emit(logging.makeLogRecord({"steps": (3, 10), "epoch": 1, "epochs": 2,
                                         "epoch_s": 31.0}))
        logger.warning("a warning")
        assert stream.getvalue() == \
            f"\r  epoch 1 of 2, step 3/10, 31 s in{run_line.CLEAR_TO_END}\na warning\n"


def test_the_callback_pickles_while_a_run_shows_its_line():
    """submitit pickles a job with its callbacks when it starts it and again when it requeues
    a preempted one: the run's line (a stream, a generator's context) is left out."""
    import pickle
    from contextlib import ExitStack

    callback = progress.Progress()
    callback.swept = ["lr"]
    callback.stack = ExitStack()
    callback.stack.enter_context(run_line.listening(run_line.RunLine(io.StringIO(), "#0")))
    try:
        copy = pickle.loads(pickle.dumps(callback))
    finally:
        callback.stack.close()
    assert copy.stack is None and copy.swept == ["lr"]
