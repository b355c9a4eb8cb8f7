"""Against a real SLURM: the single-node cluster `.ci/start-slurm` starts (2 CPUs, partition
`debug`). Both launch paths run a 4-point sweep, pre-empt point 0 in mid-training, let SLURM
requeue it, and check the 4-row table and that point 0 resumed to the uninterrupted losses.

- plain array mode: `sbatch --array=0-3 examples/sweep_array.sbatch ...`; point 0 gets SIGUSR1
  (`scancel --batch`, as `--signal=B:USR1@120` would send it), checkpoints and requeues itself;
- submitit: `hydra/launcher=slurm_cpu`; point 0 gets SIGUSR2 (submitit's `--signal=USR2@120`),
  checkpoints, and submitit's handler requeues it through the launcher's `checkpoint`.
A requeued job waits for SLURM's credential lifetime (120 s) before it may start again; the
tests release it at once with `scontrol update jobid=... starttime=now`.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO, TINY, run_cli

EXAMPLE = REPO / "examples" / "sweep_array.sbatch"
GRID = ["lr=1,2", "subset=0.5,1.0"]
LONG = [*TINY, "epochs=16", "threads=1", "quiet=false"]
COLUMNS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "step_lr"]


def slurm_state() -> str | None:
    """None when the local SLURM is up with its node idle, else why not (waits up to 30 s for
    jobs of earlier tests to drain)."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found; .ci/start-slurm starts one)"
    state = ""
    for _ in range(30):
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        state = (proc.stdout.split() or [proc.stderr.strip() or "no node"])[0]
        if proc.returncode == 0 and state == "idle":
            return None
        time.sleep(1)
    return f"the SLURM node is not idle (sinfo says {state!r}; .ci/start-slurm starts one)"


pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.fixture(scope="module", autouse=True)
def _slurm():
    reason = slurm_state()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pd.DataFrame:
    """Point 0 (lr=1, subset=0.5) run here without interruption."""
    run_dir = tmp_path_factory.mktemp("reference")
    proc = run_cli(*LONG, "lr=1", "subset=0.5", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    return pd.read_parquet(run_dir / "history.parquet")


def wait_until(condition, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; squeue: "
                         + subprocess.run(["squeue"], capture_output=True, text=True).stdout)


def job_field(job: str, field: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith(field + "="):
            return word.split("=", 1)[1]
    return ""


def preempt(job: str, *scancel_options: str) -> None:
    """Send `job` a signal with scancel, wait until the job requeued itself (pending for its
    begin time), then let it start at once.

    scancel returns only once SLURM answers; a job that requeues itself fast is already in
    transition then, and scancel keeps retrying (up to minutes) to deliver the signal again,
    which would reach the requeued job: it is stopped once the requeue is seen."""
    scancel = subprocess.Popen(["scancel", *scancel_options, job])
    try:
        wait_until(lambda: job_field(job, "Restarts") == "1" and job_field(job, "JobState")
                   == "PENDING", f"job {job} to be requeued")
    finally:
        scancel.kill()
        scancel.wait()
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)


def in_queue(job: str) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout
    return bool(out.strip())


def check_table(folder: Path, uninterrupted: pd.DataFrame) -> None:
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == 4 and (table["status"] == "ok").all(), table
    point0 = table[(table["lr"] == 1) & (table["subset"] == 0.5)].iloc[0]
    assert Path(point0["run_dir"]).name == "0" and point0["resumes"] == 1
    assert not (folder / "0" / "checkpoint.pt").exists()
    history = pd.read_parquet(folder / "0" / "history.parquet")
    assert history[COLUMNS].equals(uninterrupted[COLUMNS])  # bit-identical, as on one CPU


def test_sbatch_array_requeues_a_preempted_task(tmp_path, uninterrupted):
    args = [*LONG, *GRID]
    count = run_cli("-m", *args, "hydra/launcher=array", "hydra.launcher.count=true",
                    cwd=tmp_path)
    assert count.stdout.strip() == "4", count.stderr
    submit = subprocess.run(
        ["sbatch", "--parsable", "--array=0-3", "--cpus-per-task=1", "--mem=1G",
         f"--chdir={tmp_path}", f"--output={tmp_path}/slurm-%A_%a.out", str(EXAMPLE), *args],
        capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})
    assert submit.returncode == 0, submit.stderr
    array = submit.stdout.strip()
    log = tmp_path / f"slurm-{array}_0.out"
    wait_until(lambda: log.is_file() and "epoch 2/16" in log.read_text(), "point 0 to train")
    preempt(f"{array}_0", "--batch", "--signal=USR1")
    wait_until(lambda: not in_queue(array), "the array to finish")
    text = log.read_text()
    assert "requeueing SLURM job" in text and "resumed from" in text, text
    folder = tmp_path / "outputs" / "multirun" / f"array-{array}"
    check_table(folder, uninterrupted)
    for out in tmp_path.glob("slurm-*.out"):
        assert "Traceback" not in out.read_text() and "error: " not in out.read_text().replace(
            "error: *** JOB", ""), out.read_text()  # SLURM's own "cancelled due to requeue"


def test_submitit_requeues_a_preempted_job(tmp_path, uninterrupted):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "forgetting.run", "-m", *LONG, *GRID,
               "hydra/launcher=slurm_cpu", "hydra.launcher.cpus_per_task=1",
               "hydra.launcher.mem_gb=1", f"hydra.sweep.dir={folder}"]
    with open(tmp_path / "sweep.log", "w") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            def point0_log():
                logs = list((folder / ".submitit").glob("*_0/*_0_0_log.out"))
                return logs[0] if logs and "epoch 2/16" in logs[0].read_text() else None

            log = wait_until(point0_log, "point 0 to train")
            job = log.parent.name  # ARRAYID_0
            preempt(job, "--signal=USR2")
            assert proc.wait(timeout=180) == 0, (tmp_path / "sweep.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "resumed from" in text and "Requeued job" in text, text
    check_table(folder, uninterrupted)
