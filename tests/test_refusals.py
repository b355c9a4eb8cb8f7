"""Refusals that leave an existing sweep as it was: each bad command aimed at a sweep folder
stops before Hydra starts (whose sweeper writes the folder's multirun.yaml, the record of the
sweep's command, as soon as it runs) with one `error:` line naming the key and what it allows,
exit code 2, and no file of the folder changed, added or removed. The refusals: an array index
outside the sweep, a search space outside a key's values, joblib settings joblib refuses,
Hydra's own keys and groups mistyped (forgetting/runs/preflight.py, hydra_keys.py,
plugin_settings.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forgetting.core.errors import UserError
from forgetting.runs.preflight import preflight
from helpers import TINY, one_line_error, run_cli, tree_hash, write_run

OPTUNA = ["hydra/sweeper=optuna_study", "hydra.sweeper.n_trials=2"]
PRESET = "+sweep=quick_optuna_lr_subset"  # optuna_study with hydra.sweeper.params: {lr: ...}
JOB_KEYS = "chdir, config, config_name, env_copy, env_set, id, name, num, override_dirname"
HYDRA_KEYS = ("callbacks, help, hydra_help, hydra_logging, job, job_logging, launcher, mode, "
              "output_subdir, overrides, run, runtime, searchpath, sweep, sweeper, verbose")
LAUNCHERS = "array, basic, joblib, packed, slurm_cpu, slurm_gpu, submitit_local, submitit_slurm"
GROUPS = ("hydra/env, hydra/help, hydra/hydra_help, hydra/hydra_logging, hydra/job_logging, "
          "hydra/launcher, hydra/output, hydra/sweeper")

REFUSALS = {  # id: (the command's arguments after -m TINY, its one line after "error: ")
    "array_index_outside": (
        ["hydra/launcher=array", "hydra.launcher.index=99", "lr=1,2"],
        "hydra.launcher.index=99: outside the sweep's 2 points (indices 0..1)"),
    "array_index_below_first": (
        ["hydra/launcher=array", "hydra.launcher.first_index=1", "hydra.launcher.index=0",
         "lr=1,2"],
        "hydra.launcher.index=0: outside the sweep's 2 points (indices 1..2)"),
    "array_index_unset": (
        ["hydra/launcher=array", "lr=1,2"],
        "hydra/launcher=array: SLURM_ARRAY_TASK_ID is not set; run inside a job array, or set "
        "hydra.launcher.index=I (or hydra.launcher.index_env=VARIABLE)"),
    "array_index_no_integer": (
        ["hydra/launcher=array", "hydra.launcher.index=abc", "lr=1,2"],
        "hydra.launcher.index='abc': must be an integer"),
    "optuna_interval_below": (
        [*OPTUNA, "lr=interval(-1,1)"],
        "lr=interval(-1,1): the bound -1 is not allowed: lr must be a number > 0"),
    "optuna_fractions_for_integers": (
        [*OPTUNA, "epochs=interval(1,3)"],
        "epochs=interval(1,3): samples fractions, but epochs takes an integer; use "
        "tag(int, interval(...)) (must be an integer >= 1)"),
    "optuna_params_interval": (  # a preset's search space, one key of it replaced
        [PRESET, "hydra.sweeper.params.subset='interval(0.1,1.5)'"],
        "hydra.sweeper.params: subset=interval(0.1,1.5): the bound 1.5 is not allowed: "
        "subset must be in (0, 1]"),
    "optuna_params_choice": (
        [PRESET, "hydra.sweeper.params.lr='choice(1,-2)'"],
        "hydra.sweeper.params: lr=-2: must be a number > 0"),
    "optuna_params_null": (  # optuna_study's params are null: no key of them can be set
        [*OPTUNA, "hydra.sweeper.params.lr='interval(1,2)'"],
        "hydra.sweeper.params.lr: hydra.sweeper.params is null here, so it has no key 'lr' "
        "to set; give lr=... on the command line"),
    "joblib_n_jobs_0": (
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "lr=1,2"],
        "hydra.launcher.n_jobs=0: must be a nonzero integer (jobs at once; -1 = all cores, "
        "-2 = all but one, as joblib)"),
    "joblib_n_jobs_text": (
        ["hydra/launcher=joblib", "hydra.launcher.n_jobs=abc", "lr=1,2"],
        "hydra.launcher.n_jobs='abc': must be an integer"),
    "joblib_prefer": (
        ["hydra/launcher=joblib", "hydra.launcher.prefer=thread", "lr=1,2"],
        "hydra.launcher.prefer='thread': choose one of processes, threads, null"),
    "hydra_sweep_key": (
        ["hydra.sweep.dri=x", "lr=1,2"],
        "unknown key 'hydra.sweep.dri'; did you mean 'hydra.sweep.dir'? keys of hydra.sweep "
        "are dir, subdir"),
    "hydra_job_key": (
        ["hydra.job.chdirr=true", "lr=1,2"],
        "unknown key 'hydra.job.chdirr'; did you mean 'hydra.job.chdir'? keys of hydra.job "
        f"are {JOB_KEYS}"),
    "hydra_run_key": (
        ["hydra.run.dri=x", "lr=1,2"],
        "unknown key 'hydra.run.dri'; did you mean 'hydra.run.dir'? keys of hydra.run are dir"),
    "hydra_node": (
        ["hydra.sweeep.dir=x", "lr=1,2"],
        "unknown key 'hydra.sweeep.dir'; did you mean 'hydra.sweep.dir'? keys of hydra are "
        f"{HYDRA_KEYS}"),
    "hydra_job_value": (
        ["hydra.job.chdir=maybe", "lr=1,2"],
        "hydra.job.chdir='maybe': must be true or false"),
    "sweeper_name": (
        ["hydra/sweeper=optuna_studdy", "lr=1,2"],
        "hydra/sweeper='optuna_studdy': choose one of basic, optuna_study (did you mean "
        "'optuna_study'?)"),
    "hydra_group": (
        ["hydra/sweepr=basic", "lr=1,2"],
        f"unknown config group 'hydra/sweepr'; did you mean 'hydra/sweeper'? Hydra's groups "
        f"are {GROUPS}"),
    "logging_name": (
        ["hydra/job_logging=stdoot", "lr=1,2"],
        "hydra/job_logging='stdoot': choose one of default, disabled, none, stdout (did you "
        "mean 'stdout'?)"),
    "launcher_name": (
        ["hydra/launcher=jobib", "lr=1,2"],
        f"hydra/launcher='jobib': choose one of {LAUNCHERS} (did you mean 'joblib'?)"),
}


def fabricated_sweep(folder: Path) -> Path:
    """A finished two-point sweep's files, as `-m TINY lr=1,2` leaves them (no training)."""
    folder.mkdir()
    (folder / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"mode": "MULTIRUN", "overrides": {"task": [*TINY, "lr=1,2"]}}}))
    for n, lr in enumerate([1, 2]):
        run = write_run(folder / str(n), config={"lr": lr}, lr=lr, test_loss=2.3)
        (run / ".hydra").mkdir()
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*TINY, f"lr={lr}"]))
    (folder / "results.csv").write_text("lr,status,test_loss\n1,ok,2.3\n2,ok,2.3\n")
    (folder / ".results.lock").write_text("")
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return fabricated_sweep(tmp_path_factory.mktemp("refusals") / "sweep")


def refused(sweep: Path, args: list[str]) -> str:
    """Run the command into `sweep`; its one error line (exit code 2, no traceback), after
    asserting that the sweep's files are as they were."""
    before = tree_hash(sweep)
    proc = run_cli("-m", *TINY, *args, f"hydra.sweep.dir={sweep}")
    line = one_line_error(proc, code=2)
    assert tree_hash(sweep) == before
    return line


@pytest.mark.parametrize("args, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refusal_leaves_the_sweep_as_it_was(sweep, args, message):
    assert refused(sweep, args) == f"error: {message}"


@pytest.mark.parametrize("args", [
    ["hydra/launcher=array", "hydra.launcher.index=1"],
    ["hydra/launcher=array", "hydra.launcher.first_index=1", "hydra.launcher.index=2"],
    ["hydra/launcher=array", "hydra.launcher.count=true"],  # prints the count: no index
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1", "hydra.launcher.prefer=threads",
     "hydra.launcher.batch_size=4", "hydra.launcher.pre_dispatch=3*n_jobs",
     "hydra.launcher.max_nbytes=1M", "hydra.launcher.timeout=60"],
    [*OPTUNA, "lr=tag(log, interval(0.1, 4))", "epochs=tag(int, interval(1, 3))"],
    [PRESET, "hydra.sweeper.params.subset='interval(0.5, 1)'",
     "data.train_size=2000"],
    [PRESET, "hydra.sweeper.params.lr='interval(-1, 1)'", "lr=1,2",
     "data.train_size=2000"],  # the command line wins
    ["hydra.job.chdir=false", "hydra.job.env_set.FOO=1", "hydra.verbose=true",
     "hydra/job_logging=stdout", "hydra/hydra_logging=disabled", "hydra.mode=MULTIRUN"],
], ids=["array", "array_first_index", "array_count", "joblib", "optuna", "optuna_params",
        "optuna_command_line_wins", "hydra_keys"])
def test_what_is_allowed_passes(tmp_path, args):
    preflight(["-m", *TINY, "lr=1,2", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"])


def test_a_preset_search_space_is_checked():
    with pytest.raises(UserError) as e:
        preflight(["-m", "+sweep=quick_optuna_lr_subset", "data=synthetic",
                   "hydra.sweeper.params.batch_size='range(0,64,16)'"])
    assert str(e.value) == "hydra.sweeper.params: batch_size=0: must be an integer >= 1"


@pytest.mark.slow
def test_a_real_sweep_is_left_as_it_was(tmp_path):
    """The same refusals aimed at a sweep that trained: its command (multirun.yaml) kept."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *TINY, "lr=1,2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    command = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["overrides"]
    for args, message in REFUSALS.values():
        assert refused(sweep, args) == f"error: {message}"
    assert yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["overrides"] == \
        command
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "ok"
