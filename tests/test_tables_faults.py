"""Faults the sweep store survives: a run killed between its metrics.json and the feed, a
sweep folder copied or moved, a killed collect's temporaries, metrics.json of the wrong types,
a point killed without a checkpoint, a table collected while a run was unfinished."""

import json
import signal

import pandas as pd
from omegaconf import OmegaConf
from test_claims import tiny_cfg  # noqa: F401  (a fixture)
from test_tables_incremental import make_sweep

from forgetting import tables
from forgetting.runs.job import run_one
from helpers import run_cli

# a process that names the run folder in the feed and writes its metrics.json
# (forgetting.runs.job.write_metrics), SIGKILLed right after metrics.json's rename
KILLED_AFTER_RENAME = """
import json, os, signal, sys
from pathlib import Path
from forgetting.runs import job

written = job.atomic_write_json

def write_then_die(path, obj):
    written(path, obj)
    os.kill(os.getpid(), signal.SIGKILL)

job.atomic_write_json = write_then_die
job.write_metrics(Path(sys.argv[1]), json.loads(sys.argv[2]))
"""


def test_a_run_killed_right_after_its_metrics_landed_is_in_the_next_update(tmp_path):
    folder = make_sweep(tmp_path / "sweep", 3)
    run = folder / "1"
    metrics = {**json.loads((run / "metrics.json").read_text()), "test_loss": 9.0}
    proc = run_cli("-c", KILLED_AFTER_RENAME, str(run), json.dumps(metrics), module=None)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert json.loads((run / "metrics.json").read_text())["test_loss"] == 9.0
    results, _ = tables.update(folder)  # a plain update: no --scan, no --full
    assert results.set_index("run_dir").loc[str(run), "test_loss"] == 9.0
    assert pd.read_parquet(folder / "results.parquet").set_index("run_dir").loc[
        str(run), "test_loss"] == 9.0


def test_a_point_killed_without_a_checkpoint_is_interrupted_and_trained_on_rerun(tmp_path,
                                                                                 tiny_cfg):  # noqa: F811
    """SIGKILL leaves Hydra's files, no metrics.json, no live claim, no checkpoint: the point
    is `interrupted` (not a failure: a sweep into the folder exits 0), and a rerun trains it."""
    folder = make_sweep(tmp_path / "sweep", 2)
    run = folder / "2"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(tiny_cfg, run / ".hydra" / "config.yaml")
    (run / ".hydra" / "overrides.yaml").write_text("- lr=1.0\n")
    (run / ".claim").write_text("{}")  # left by the killed process: no lock held
    results, _ = tables.update(folder)
    row = results.set_index("run_dir").loc[str(run)]
    assert row["status"] == "interrupted" and pd.isna(row["error"])
    assert tables.report_failures(results) == 0
    run_one(tiny_cfg, run, {})  # the rerun's job in that folder: trained, not skipped
    results, _ = tables.update(folder)
    assert results.set_index("run_dir").loc[str(run), "status"] == "ok"
