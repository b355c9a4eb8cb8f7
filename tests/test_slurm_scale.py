"""Against a real SLURM (`.ci/start-slurm`; skipped without one): an array of 200 tasks ends
with the complete table, most tasks leave their folder pending, and the few that write read a
bounded number of run folders whatever the sweep's size (counted from each task's line, not
timed).

What is measured is the table update, so each task's training is replaced by a fabricated
result written through the real `write_result` (a `sitecustomize` on the tasks' PYTHONPATH):
a task then costs Hydra and the table merge, not torch. Real training in SLURM array tasks is
tests/test_slurm.py's."""

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from test_slurm import in_queue, slurm_state, wait_until

from forgetting import tables as pending
from helpers import REPO, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

POINTS = 200
GRID = ["lr=range(1,21)", "seed=range(0,10)"]  # 20 x 10
SMALL = ["data=synthetic", "model=tiny", "model.width=0.25", "device=cpu", "precision=fp32",
         "batch_size=64", "epochs=1", "data.train_size=128", "data.test_size=64", "quiet=true",
         "threads=1"]


@pytest.fixture(scope="module", autouse=True)
def _slurm():
    reason = slurm_state()
    if reason:
        pytest.skip(reason)


# Loaded by each task's Python at start-up (PYTHONPATH): training replaced by a result with the
# LR factor as its test loss, no torch imported.
FABRICATED_SITE = """
import os
if os.environ.get("FORGETTING_TEST_FABRICATE"):
    import sys
    from types import ModuleType, SimpleNamespace

    from forgetting.runs import job, provenance

    class Checkpoint:  # the real one imports torch; a fabricated run has nothing to save
        def __init__(self, *args, **kwargs):
            pass

        def remove(self):
            pass

    sys.modules["forgetting.core.checkpoint"] = ModuleType("forgetting.core.checkpoint")
    sys.modules["forgetting.core.checkpoint"].Checkpoint = Checkpoint

    def train_and_write(cfg, run_dir, choices, key, start, conf, checkpoint, on_epoch=None,
                        extra=None):
        loss = float(cfg.lr)
        row = {"epoch": 1, "train_loss": loss, "test_loss": loss, "test_acc": 0.1}
        result = SimpleNamespace(status="ok", history=[row], info={}, recency=[], examples=[],
                                 steps=[], final={**row, "epochs_run": 1, "train_s": 0.0})
        return job.write_result(cfg, run_dir, choices, key, start, result, checkpoint, extra)

    job.train_and_write = train_and_write
    provenance.describe = lambda: {"torch": None, "host": os.uname().nodename}
"""


def test_array_of_200_tasks_reads_per_task_independent_of_the_sweep(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FABRICATED_SITE)
    args = [*SMALL, *GRID]
    count = run_cli("-m", *args, "hydra/launcher=array", "hydra.launcher.count=true",
                    cwd=tmp_path)
    assert count.stdout.strip() == str(POINTS), count.stderr
    submit = subprocess.run(
        ["sbatch", "--parsable", f"--array=0-{POINTS - 1}", "--cpus-per-task=1", "--mem=700M",
         f"--chdir={tmp_path}", f"--output={tmp_path}/slurm-%A_%a.out",
         str(REPO / "examples" / "sweep_array.sbatch"), *args],
        capture_output=True, text=True,
        env={**os.environ, "PYTHON": sys.executable,
             "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),  # this checkout's code
             "FORGETTING_TEST_FABRICATE": "1"})
    assert submit.returncode == 0, submit.stderr
    array = submit.stdout.strip()
    wait_until(lambda: not in_queue(array), "the array to finish", timeout=3600)

    folder = tmp_path / "outputs" / "multirun" / f"array-{array}"
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == POINTS and (table["status"] == "ok").all(), table
    assert (table["test_loss"] == table["lr"]).all()  # each task's own (fabricated) result
    assert sorted(zip(table["lr"], table["seed"])) == [(lr, s) for lr in range(1, 21)
                                                       for s in range(10)]
    reads, left = [], 0
    for out in tmp_path.glob("slurm-*.out"):
        text = out.read_text()
        assert "Traceback" not in text, text
        found = re.findall(r"^point \d+: \w+ .*; (?:(\d+) run folder\(s\) read|(\d+) run "
                           r"folder\(s\) pending: forgetting.collect merges them|(merged by "
                           r"another task))\)$", text, re.M)
        assert len(found) == 1, text
        read, waiting, _ = found[0]
        reads += [int(read)] if read else []
        left += bool(waiting)
    # most tasks leave their folder pending; a few merge what is pending (64 at a time, the
    # first one the folders present then, the last one the rest): the table is written a
    # handful of times, not once per task, and no task reads a number that grows with N
    assert left + len(reads) <= POINTS and left >= POINTS - 20, (left, reads)
    assert 2 <= len(reads) <= 8, sorted(reads)
    assert max(reads) <= pending.DEFER_MIN + 10, sorted(reads)
    assert sum(reads) <= POINTS + 10, sum(reads)
    assert not (folder / ".results.pending").exists()
