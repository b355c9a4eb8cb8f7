"""Plain array mode (hydra/launcher=array) without a scheduler, the table's lock, and the
command-line checks of where a sweep goes (launcher preset, sbatch, writable folder)."""

import threading
import time

import pandas as pd
import pytest
from filelock import FileLock

from forgetting.core.errors import UserError
from forgetting.runs.preflight import preflight
from forgetting.tables.results import collect
from helpers import TINY, one_line_error, run_cli

GRID = ["lr=1,2", "subset=0.5,1.0"]


@pytest.mark.slow
def test_count_prints_the_number_of_points_only(tmp_path):
    proc = run_cli("-m", *TINY, *GRID, "hydra/launcher=array", "hydra.launcher.count=true",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "4\n"
    assert not (tmp_path / "outputs" / "multirun" / "array-local").exists()


@pytest.mark.slow
def test_each_task_runs_its_point_and_the_table_takes_it_in(tmp_path):
    folder = tmp_path / "sweep"
    args = ["-m", *TINY, *GRID, "hydra/launcher=array", f"hydra.sweep.dir={folder}"]
    proc = run_cli(*args, "hydra.launcher.index_env=JOB_COMPLETION_INDEX",
                   env={"JOB_COMPLETION_INDEX": "2"})
    assert proc.returncode == 0, proc.stderr
    assert f"point 2: ok ({folder / '2'})" in proc.stdout
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == 1 and table["lr"].tolist() == [2] and table["subset"].tolist() == [0.5]
    assert [p.name for p in folder.iterdir() if p.name.isdigit()] == ["2"]
    proc = run_cli(*args, "hydra.launcher.first_index=1", env={"SLURM_ARRAY_TASK_ID": "1"})
    assert proc.returncode == 0 and "point 0: ok" in proc.stdout, proc.stderr
    # a table exists and the sweep is not complete: the folder waits to be merged
    assert "(1 ok; 1 run folder(s) pending: forgetting.collect merges them)" in proc.stdout
    assert len(pd.read_parquet(folder / "results.parquet")) == 1
    merged = run_cli(str(folder), module="forgetting.collect")
    assert merged.returncode == 0, merged.stderr
    assert len(pd.read_parquet(folder / "results.parquet")) == 2
    assert not (folder / ".results.pending").exists()

    done = {p: p.read_bytes() for p in folder.rglob("*")  # runs and tables (not Hydra's
            if p.is_file() and p.name != "multirun.yaml"}  # multirun.yaml, rewritten)
    bad = run_cli(*args, env={"SLURM_ARRAY_TASK_ID": "4"})
    assert bad.returncode == 2
    assert one_line_error(bad) == ("error: SLURM_ARRAY_TASK_ID=4: outside the sweep's 4 "
                                   "points (indices 0..3)")
    assert {p: p.read_bytes() for p in done} == done  # no finished result touched


@pytest.mark.slow
@pytest.mark.parametrize("args, env, message", [
    (["hydra.sweep.dir=sweep"], {}, "error: hydra/launcher=array: SLURM_ARRAY_TASK_ID is not "
     "set; run inside a job array, or set hydra.launcher.index=I"),
    (["hydra.launcher.index=0"], {}, "error: hydra/launcher=array outside a SLURM array: set "
     "hydra.sweep.dir=PATH, the same folder for every task"),
    (["hydra/launcher=slurm_tpu"], {}, "error: hydra/launcher='slurm_tpu': choose one of "
     "array, basic, joblib, packed, slurm_cpu, slurm_gpu, submitit_local, submitit_slurm"),
], ids=["no-index", "no-folder", "bad-preset"])
def test_bad_array_input_is_one_line(tmp_path, args, env, message):
    proc = run_cli("-m", *TINY, *GRID, "hydra/launcher=array", *args, cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert one_line_error(proc).startswith(message)
    assert list(tmp_path.rglob("*.yaml")) == []  # nothing ran, no folder left behind


def test_preflight_checks_where_the_sweep_goes(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="hydra/launcher='slurm_tpu': choose one of array, "):
        preflight(["-m", "hydra/launcher=slurm_tpu"])
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch there
    with pytest.raises(UserError, match="hydra/launcher=slurm_cpu: SLURM's sbatch is not on"):
        preflight(["-m", "hydra/launcher=slurm_cpu"])
    preflight(["-m", *TINY, "hydra/launcher=joblib"])  # no SLURM needed
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match=f"hydra.sweep.dir={tmp_path}/file/sweep: cannot "
                                        f"create it, {tmp_path}/file is not a folder"):
        preflight(["-m", f"hydra.sweep.dir={tmp_path}/file/sweep"])
    preflight(["-m", *TINY, f"hydra.sweep.dir={tmp_path}/new/sweep"])
    assert not (tmp_path / "new").exists()


def test_unwritable_folder(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UserError, match="not writable"):
        preflight(["-m", f"hydra.sweep.dir={locked}/sweep"])


def test_collectors_take_turns(tmp_path):
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text('{"status": "ok", "lr": 1}')
    done = threading.Event()
    with FileLock(tmp_path / ".results.lock"):
        worker = threading.Thread(target=lambda: (collect(tmp_path), done.set()))
        worker.start()
        time.sleep(0.3)
        assert not done.is_set() and not (tmp_path / "results.parquet").exists()
    worker.join(timeout=30)
    assert done.is_set() and len(pd.read_parquet(tmp_path / "results.parquet")) == 1


@pytest.mark.slow
def test_index_addresses_the_whole_sweep_of_several_batches(tmp_path):
    folder = tmp_path / "sweep"
    args = ["-m", *TINY, "lr=1,2,3", "subset=0.5,1.0", "hydra/launcher=array",
            "hydra.sweeper.max_batch_size=2", f"hydra.sweep.dir={folder}"]
    count = run_cli(*args, "hydra.launcher.count=true")
    assert count.returncode == 0 and count.stdout == "6\n", count.stderr
    proc = run_cli(*args, "hydra.launcher.index=5")
    assert proc.returncode == 0, proc.stderr
    assert f"point 5: ok ({folder / '5'})" in proc.stdout
    table = pd.read_parquet(folder / "results.parquet")
    assert table[["lr", "subset"]].values.tolist() == [[3, 1.0]]
    assert [p.name for p in folder.iterdir() if p.name.isdigit()] == ["5"]


@pytest.mark.slow
def test_array_with_an_optuna_study_is_refused(tmp_path):
    proc = run_cli("-m", *TINY, "lr=1,2", "hydra/launcher=array", "hydra.launcher.index=0",
                   "hydra/sweeper=optuna_study", "hydra.sweeper.sampler=grid",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    line = one_line_error(proc)
    assert line.startswith("error: hydra/launcher=array cannot run hydra/sweeper=optuna_study")
    assert "start N workers of the same command on one storage" in line
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
@pytest.mark.parametrize("value", ["abc", "--1", "1.5", ""])
def test_a_bad_index_names_its_variable(tmp_path, value):
    proc = run_cli("-m", *TINY, *GRID, "hydra/launcher=array",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"SLURM_ARRAY_TASK_ID": value})
    assert one_line_error(proc) == f"error: SLURM_ARRAY_TASK_ID={value!r}: not an integer"
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_sbatch_refusing_the_jobs_is_one_line_with_its_message(tmp_path):
    """No SLURM here: a fake `sbatch` that fails as a real one does for an unknown partition
    (submitit also wants `srun` on the PATH)."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nonexistent' >&2\n"
        "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified'"
        " >&2\nexit 1\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    proc = run_cli("-m", *TINY, *GRID, "hydra/launcher=slurm_cpu",
                   "hydra.launcher.partition=nonexistent", f"hydra.sweep.dir={tmp_path / 's'}",
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert one_line_error(proc) == (
        "error: hydra/launcher: sbatch refused the jobs: invalid partition specified: "
        "nonexistent; Batch job submission failed: Invalid partition name specified")
