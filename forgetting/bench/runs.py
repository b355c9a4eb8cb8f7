"""Benchmark figures that need whole runs in subprocesses: start-up overhead, sweep throughput.

Start-up: `python -m forgetting.run model=tiny epochs=1 ...` is launched; the time from launch
until its first epoch line appears, minus that epoch's own `wall_s` (from its history.parquet),
is the time from process start to the first training step: interpreter, imports, Hydra
composition, data load (warm cache), model and batch makers.

Sweep throughput: the same 12-point grid (4 LR factors x 3 subsets) with Hydra's basic launcher
(one process, runs one after another) and with the joblib launcher (2 worker processes, each
with cores / 2 torch threads), reported as runs per hour of wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from forgetting.core.train import epoch_marker
from forgetting.rundir import folders
from forgetting.runs.configs import PACKAGE_DIR

GRID = ["lr=1,2,4,8", "subset=0.25,0.5,1.0"]


def _env() -> dict:
    path = os.environ.get("PYTHONPATH")
    root = str(PACKAGE_DIR.parent)
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": root + (os.pathsep + path if path else "")}


def data_overrides(data: str, root: str | None) -> list[str]:
    if data == "synthetic":
        return ["data=synthetic"]
    return ["data=cifar10", f"data.root='{Path(root).expanduser().resolve()}'",
            "data.download=false"]


def measure_startup(data: list[str], device: str) -> dict:
    """Process start -> first training step of `python -m forgetting.run`, from outside."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "forgetting.run", *data, "model=tiny", "model.width=0.25",
               "epochs=1", f"device={device}", "precision=fp32", f"hydra.run.dir='{tmp}'"]
        lines, seen = [], None
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if seen is None and epoch_marker(1) in line:
                seen = time.perf_counter() - t0
            lines.append(line)
        total = time.perf_counter() - t0
        if proc.wait() != 0 or seen is None:
            raise RuntimeError("start-up run failed: " + " ".join(cmd) + "\n" + "".join(lines))
        epoch_wall = float(pd.read_parquet(Path(tmp) / folders.HISTORY)["wall_s"].iloc[0])
    return {"startup_s": seen - epoch_wall, "first_epoch_s": epoch_wall, "process_s": total,
            "command": " ".join(cmd[1:])}


def measure_sweeps(run_overrides: list[str], device: str) -> dict:
    """Runs per hour of the 12-point grid: basic launcher vs joblib with 2 workers."""
    cores = os.cpu_count() or 2
    launchers = {"basic": [],
                 "joblib_2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                              f"threads={max(1, cores // 2)}"]}
    out = {}
    for name, extra in launchers.items():
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "forgetting.run", "-m", *GRID, *run_overrides,
                   f"device={device}", "quiet=true", *extra, f"hydra.sweep.dir='{tmp}/sweep'"]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tmp, env=_env(), capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"sweep failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
            runs = len(pd.read_parquet(Path(tmp) / "sweep" / folders.RESULTS))
        out[name] = {"wall_s": wall, "runs": runs, "runs_per_hour": 3600 * runs / wall}
    out["command"] = " ".join(["python -m forgetting.run -m", *GRID, *run_overrides])
    return out
