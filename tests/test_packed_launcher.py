"""`hydra/launcher=packed` from the command line: the same table as the basic launcher's, packs
only of configs that can share a step, one-line errors for bad input."""

import json
import time

import pandas as pd
import pytest

from forgetting.core.errors import UserError
from forgetting.runs.packs import pack_setting
from helpers import TINY, one_line_error, run_cli

pytestmark = pytest.mark.slow
GRID = ["lr=1,2,4,8", "subset=0.5,1.0", "budget=steps", "threads=1"]  # 2 packs of 4


def sweep(folder, *args):
    return run_cli("-m", *TINY, *GRID, f"hydra.sweep.dir={folder}", *args)


def test_a_packed_sweep_has_the_basic_sweeps_table_and_a_rerun_skips_it(tmp_path):
    basic = sweep(tmp_path / "basic")
    packed = sweep(tmp_path / "packed", "hydra/launcher=packed", "hydra.launcher.pack=4")
    assert basic.returncode == 0 and packed.returncode == 0, packed.stderr
    assert "[4/8] done: 4 ok" in packed.stdout and "[8/8] done: 8 ok" in packed.stdout
    a = pd.read_parquet(tmp_path / "basic" / "results.parquet")
    b = pd.read_parquet(tmp_path / "packed" / "results.parquet")
    added = ["launcher", "pack_id", "pack_size"]
    assert [c for c in b.columns if c not in added] == list(a.columns)
    assert set(b.columns) - set(a.columns) == set(added)
    assert len(b) == len(a) == 8 and (b["status"] == "ok").all()
    assert (b["launcher"] == "packed").all() and (b["pack_size"] == 4).all()
    assert b["pack_id"].nunique() == 2
    for column in ("lr", "subset", "seed", "config_hash", "steps", "run_dir"):
        if column == "run_dir":
            a[column] = a[column].str.replace("basic", "packed")
        assert a[column].tolist() == b[column].tolist(), column
    for column in ("train_loss", "test_loss", "clean_train_loss"):
        # one fused vmap step sums in another order: float32 rounding, up to ~1e-4 here
        assert ((a[column] - b[column]).abs() <= 5e-4 * a[column].abs()).all(), column
    metrics = tmp_path / "packed" / "0" / "metrics.json"
    before = metrics.read_bytes()
    again = sweep(tmp_path / "packed", "hydra/launcher=packed", "hydra.launcher.pack=4")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped: this config already finished") == 8
    assert "[8/8] done: 0 ok, 0 diverged, 0 failed, 8 skipped" in again.stdout
    assert metrics.read_bytes() == before


def test_configs_of_another_batch_size_or_width_go_to_packs_of_their_own(tmp_path):
    proc = run_cli("-m", *TINY, "lr=1,2", "batch_size=32,64", "model.width=0.5,1",
                   f"hydra.sweep.dir={tmp_path}", "hydra/launcher=packed",
                   "hydra.launcher.pack=8")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(tmp_path / "results.parquet")
    assert len(table) == 8 and (table["pack_size"] == 2).all()
    packs = table.groupby("pack_id")
    assert packs.ngroups == 4
    for _, members in packs:
        assert members["batch_size"].nunique() == 1 and members["width"].nunique() == 1
        assert sorted(members["lr"]) == [1, 2]


@pytest.mark.parametrize("value, message", [
    ("0", "error: hydra.launcher.pack=0: must be a whole number >= 1, or auto"),
    ("-1", "error: hydra.launcher.pack=-1: must be a whole number >= 1, or auto"),
    ("many", "error: hydra.launcher.pack=many: must be a whole number >= 1, or auto"),
])
def test_a_bad_pack_size_is_one_line_and_creates_nothing(tmp_path, value, message):
    proc = sweep(tmp_path / "s", "hydra/launcher=packed", f"hydra.launcher.pack={value}")
    assert one_line_error(proc) == message
    assert not (tmp_path / "s").exists()


def test_the_packed_launcher_with_an_optuna_study_is_refused(tmp_path):
    proc = run_cli("-m", *TINY, "hydra/sweeper=optuna_study", "hydra/launcher=packed",
                   f"hydra.sweep.dir={tmp_path / 's'}", "hydra.sweeper.n_trials=2")
    assert one_line_error(proc).startswith("error: hydra/launcher=packed cannot run "
                                           "hydra/sweeper=optuna_study")


def test_pack_auto_measures_once_and_caches_its_choice(tmp_path):
    cache = tmp_path / "cache"
    args = ["hydra/launcher=packed", f"data.cache_dir={cache}"]
    proc = run_cli("-m", *TINY, "lr=1,2", f"hydra.sweep.dir={tmp_path / 'a'}", *args)
    assert proc.returncode == 0 and "pack=auto: timing" in proc.stdout, proc.stderr
    known = json.loads((cache / "pack.json").read_text())
    (entry,) = known.values()
    assert entry["pack"] in (1, 2, 4, 8) and set(entry["step_s_per_run"]) == {"1", "2", "4", "8"}
    table = pd.read_parquet(tmp_path / "a" / "results.parquet")
    assert (table["pack_size"] == min(entry["pack"], 2)).all()
    again = run_cli("-m", *TINY, "lr=1,2", f"hydra.sweep.dir={tmp_path / 'b'}", *args)
    assert "pack=auto: timing" not in again.stdout and again.returncode == 0


def test_pack_setting_accepts_whole_numbers_and_auto_only():
    assert pack_setting("auto") == "auto" and pack_setting(3) == 3
    for bad in (0, -2, 1.5, True, "4"):
        with pytest.raises(UserError, match="hydra.launcher.pack"):
            pack_setting(bad)


def test_the_gpu_script_runs_its_sweep_stage_tiny_on_a_cpu(tmp_path):
    """scripts/gpu_packed.sh --tiny: the full-scale preset's commands on a 2 x 2 tiny grid."""
    import subprocess
    import sys

    from helpers import REPO

    proc = subprocess.run(["bash", "scripts/gpu_packed.sh", str(tmp_path), "--tiny", "bs512"],
                          cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    times = (tmp_path / "times.txt").read_text()
    assert "lr_subset_bs512: ok" in times and "lr_subset_bs512-analyze: ok" in times
    assert "lr_subset_bs512-plot: ok" in times and "points/h" in times
    folder = tmp_path / "multirun" / "lr_subset_bs512"
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == 4 and (table["status"] == "ok").all()
    assert (table["launcher"] == "packed").all() and table["pack_id"].nunique() == 2
    assert (folder / "verdict.txt").is_file() and (folder / "figures" / "lr_subset.png").is_file()
    bad = subprocess.run(["bash", "scripts/gpu_packed.sh", str(tmp_path), "bs1024"], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown stage 'bs1024'")


def test_a_preempted_packed_sweep_saves_every_member_and_a_rerun_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from helpers import REPO

    args = ["-m", *TINY, "lr=1,2", "epochs=6", "quiet=false", "threads=1",
            "hydra/launcher=packed", "hydra.launcher.pack=2"]
    whole = run_cli(*args, f"hydra.sweep.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    folder, log = tmp_path / "cut", tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "forgetting.run", *args,
                                 f"hydra.sweep.dir={folder}"], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while "epoch 2/6" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert "a rerun of this sweep resumes its runs" in log.read_text()
    for run in ("0", "1"):
        assert (folder / run / "checkpoint.pt").is_file()
        assert not (folder / run / "metrics.json").exists()
    again = run_cli(*args, f"hydra.sweep.dir={folder}")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("resumed from") == 2
    for run in ("0", "1"):
        a = pd.read_parquet(tmp_path / "whole" / run / "history.parquet")
        b = pd.read_parquet(folder / run / "history.parquet")
        columns = [c for c in a.columns if not c.endswith("_s")]
        assert a[columns].equals(b[columns]), run
        assert json.loads((folder / run / "metrics.json").read_text())["resumes"] == 1


def test_a_folder_holding_another_finished_config_is_left_alone(tmp_path):
    first = run_cli("-m", *TINY, "lr=3", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=x")
    assert first.returncode == 0, first.stderr
    done = (tmp_path / "x" / "metrics.json").read_bytes()
    proc = run_cli("-m", *TINY, "lr=1,2", f"hydra.sweep.dir={tmp_path}",
                   "hydra.sweep.subdir=x", "hydra/launcher=packed", "hydra.launcher.pack=2")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "not run:" in proc.stdout and "holds a finished run of another config" in proc.stdout
    assert (tmp_path / "x" / "metrics.json").read_bytes() == done
