"""Where a run is, within it (forgetting/runs/run_line.py, fed by core/train.py's progress
records): a tqdm bar for a single run on a terminal; under quiet=true one short line per epoch
(rewritten in place on a terminal); a heartbeat within an epoch longer than the interval."""

from __future__ import annotations

import io
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

from forgetting.core import train as training
from forgetting.runs import run_line
from helpers import REPO, TINY, run_cli

RUN_LINE = re.compile(r"^  (#\d+ [^:]*: )?epoch (\d+)/(\d+), \d+\.\d+ s/epoch, "
                      r"train_loss (\S+)(, test_loss \d\.\d{3}, test_acc \d\.\d{3})?$")
HEARTBEAT = re.compile(r"^  (#\d+ [^:]*: )?epoch (\d+) of (\d+), step (\d+)/(\d+), \d+ s in$")


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
