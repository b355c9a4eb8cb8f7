"""`hydra/launcher=array`: run only point i of a sweep, one array task per point.

    N=$(python -m forgetting.run -m lr=1,2 subset=0.5,1.0 hydra/launcher=array \
        hydra.launcher.count=true)                       # prints 4, runs nothing
    sbatch --array=0-$((N-1)) examples/sweep_array.sbatch lr=1,2 subset=0.5,1.0

Every task runs the same sweep command. Points are numbered in the order the basic launcher
runs them; task i runs point i - `first_index`, taken from `index` or else from the
environment variable `index_env` (SLURM_ARRAY_TASK_ID; PBS_ARRAYID or PBS_ARRAY_INDEX for PBS,
LSB_JOBINDEX for LSF with first_index=1, JOB_COMPLETION_INDEX for a Kubernetes indexed job).

All tasks write into one sweep folder, which must not depend on the task: by default
`outputs/multirun/array-$SLURM_ARRAY_JOB_ID` (`sweep_dir`; conf/config.yaml's `hydra.sweep.dir`
uses it when the array launcher is selected); outside a SLURM array pass
`hydra.sweep.dir=PATH`. Point i's run folder is `i` (see forgetting/runs/resume.py for reruns).

The index addresses the whole sweep, also when the basic sweeper splits it into batches
(`hydra.sweeper.max_batch_size`): the launcher expands the sweep's overrides itself. With
`hydra/sweeper=optuna_study` it refuses to start (a study's trials are chosen while it runs, so
an index names no fixed point): run N workers of the same command on one storage instead.

`launch()` returns its one JobReturn (and an empty list for the sweeper's later batches), as
Hydra's launchers do. For forgetting's app (forgetting.run, recognised by its results-table
callback) the task then merges its run folder into the sweep's tables under the table's file
lock, reading no other run folder (forgetting/tables/deferred.py: O(1) reads per task, so an array
of 100,000 tasks costs 100,000 times one; the last task to finish leaves the complete table;
points not yet finished have no row until their task ends), prints one line, and
`forgetting.run` exits with the point's outcome (`exit_code()`): 0 (ok, diverged, or skipped
because finished), 1 (failed), 128 + signal (stopped for pre-emption, checkpoint
saved). For any other Hydra app the job is judged by its JobReturn alone (Hydra reports a job
that raised, exit code 1) and nothing is written beside its runs. Hydra's end-of-sweep callbacks
run after launch() returns; forgetting's table callback leaves array tasks alone. With
`requeue: true` in a SLURM job, SIGUSR1 (e.g. `sbatch --signal=B:USR1@120`) requeues the task
after the run saved its checkpoint.
"""

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from forgetting.core.errors import UserError
from forgetting.core.metrics import FAILED
from forgetting.runs.plugin_settings import (
    ARRAY_LOCAL_SWEEP_DIR,
    array_point,
    check_array_folder,
)

log = logging.getLogger(__name__)
LOCAL_SWEEP_DIR = ARRAY_LOCAL_SWEEP_DIR  # the default outside a SLURM array
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
OPTUNA_STUDY_SWEEPER = "hydra_plugins.forgetting_optuna_sweeper.sweeper.OptunaStudySweeper"
_EXIT_CODE: list[int] = []  # the outcome of this process's array task (forgetting's app)


def exit_code() -> int | None:
    """The exit code of the array task this process ran for forgetting's app, else None:
    forgetting.run exits with it once Hydra returns."""
    return _EXIT_CODE[-1] if _EXIT_CODE else None


@dataclass
class ArrayLauncherConf:
    _target_: str = "hydra_plugins.forgetting_array_launcher.array_launcher.ArrayLauncher"
    index: int | None = None  # the array index to run; null: from the variable index_env
    index_env: str = "SLURM_ARRAY_TASK_ID"
    first_index: int = 0  # the array index of point 0 (1 for LSF's LSB_JOBINDEX)
    count: bool = False  # print the number of points and exit, running nothing
    requeue: bool = True  # in a SLURM job: SIGUSR1 -> checkpoint, `scontrol requeue`, exit
    sweep_dir: str = "outputs/multirun/array-${oc.env:SLURM_ARRAY_JOB_ID,local}"


ConfigStore.instance().store(group="hydra/launcher", name="array", node=ArrayLauncherConf,
                             provider="forgetting_array_launcher")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def requeue_slurm_job(signum: int, frame: object) -> None:
    """SIGUSR1 handler of an array task in a SLURM job: put the task back in the queue (the
    requeued task resumes its run from the checkpoint, or skips it when finished), then exit."""
    job = os.environ["SLURM_JOB_ID"]
    log.warning("%s: requeueing SLURM job %s", signal.Signals(signum).name, job)
    try:
        subprocess.run(["scontrol", "requeue", job], check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.error("scontrol requeue %s failed: %s", job, e)
    raise SystemExit(128 + signum)


def compose_own_point_only() -> None:
    """Hydra's basic sweeper composes every point of a batch before launching it
    (`validate_batch_is_legal`): in an array task that is the whole sweep, a cost that grows
    with it (200 points: ~40 s of every task). Under this launcher it validates nothing; the
    task composes its own point in `launch`, where a composition error surfaces as before (and
    forgetting.run's preflight has checked the points before any task starts)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    original = BasicSweeper.validate_batch_is_legal
    if getattr(original, "array_aware", False):
        return

    def validate_batch_is_legal(sweeper, batch) -> None:
        if isinstance(getattr(sweeper, "launcher", None), ArrayLauncher):
            return
        original(sweeper, batch)

    validate_batch_is_legal.array_aware = True
    BasicSweeper.validate_batch_is_legal = validate_batch_is_legal


class ArrayLauncher(Launcher):
    def __init__(self, index: int | None = None, index_env: str = "SLURM_ARRAY_TASK_ID",
                 first_index: int = 0, count: bool = False, requeue: bool = True,
                 sweep_dir: str = LOCAL_SWEEP_DIR) -> None:
        self.index = index
        self.index_env = index_env
        self.first_index = first_index
        self.count = count
        self.requeue = requeue
        self.sweep_dir = sweep_dir
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.ran = False  # this process ran its point (later batches of the sweep: nothing)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        if OmegaConf.select(config, "hydra.sweeper._target_") == OPTUNA_STUDY_SWEEPER:
            fail("hydra/launcher=array cannot run hydra/sweeper=optuna_study: a study chooses "
                 "its trials while it runs, so an array index names no point; start N workers "
                 "of the same command on one storage instead (e.g. sbatch --array=1-N --wrap "
                 "'python -m forgetting.run ...'; README, Optuna searches: parallel workers)")
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        compose_own_point_only()

    def whole_sweep(self, job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
        """Every job of the sweep in the basic sweeper's order, also when it launches them in
        batches (`max_batch_size`); for other sweepers the batch at hand."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        jobs = [list(job) for job in job_overrides]
        if OmegaConf.select(self.config, "hydra.sweeper._target_") != BASIC_SWEEPER:
            return jobs
        params = OmegaConf.select(self.config, "hydra.sweeper.params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()]
        arguments += list(OmegaConf.select(self.config, "hydra.overrides.task") or [])
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        everything = BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)[0]
        return everything if everything[:len(jobs)] == jobs else jobs

    def point(self, n: int) -> int:
        """The point this task runs, in 0..n-1; UserError (one line) for a bad index
        (forgetting.run's preflight has checked it, with the same function, before Hydra
        started)."""
        return array_point(self.index, self.index_env, self.first_index, n)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        if self.ran:  # a later batch of a sweep whose point this process already ran
            return []
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        jobs = self.whole_sweep(job_overrides) if initial_job_idx == 0 else job_overrides
        if self.count:
            print(len(jobs))
            _drop_if_only_multirun_yaml(sweep_dir)
            raise SystemExit(0)
        try:
            check_array_folder(sweep_dir)
            point = self.point(len(jobs))
        except UserError as e:  # nothing ran: leave no folder behind
            _drop_if_only_multirun_yaml(sweep_dir)
            fail(str(e))
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        overrides = list(jobs[point])
        log.info("array task: point %d of %d: %s", point, len(jobs),
                 " ".join(filter_overrides(overrides)))
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                          overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = os.environ.get("SLURM_JOB_ID", str(point))
            sweep_config.hydra.job.num = initial_job_idx + point
        if self.requeue and "SLURM_JOB_ID" in os.environ:
            signal.signal(signal.SIGUSR1, requeue_slurm_job)
        self.ran = True
        ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                      config=sweep_config, job_dir_key="hydra.sweep.dir",
                      job_subdir_key="hydra.sweep.subdir")
        from forgetting.runs.cluster import forgetting_app

        if forgetting_app(self.config):
            whole = OmegaConf.select(self.config, "hydra.sweeper._target_") == BASIC_SWEEPER
            _EXIT_CODE.append(self.finish(ret, point, len(jobs) if whole else None, sweep_dir))
        else:
            print(f"point {point}: {ret.status.name.lower()} "
                  f"({ret.hydra_cfg.hydra.runtime.output_dir})")
        return [ret]

    def finish(self, ret: JobReturn, point: int, points: int | None, sweep_dir: Path) -> int:
        """Forgetting's app: add this point's run folder to the sweep's tables (pending until
        enough have finished or the sweep's `points` are done, then merged under their lock,
        re-reading no other run folder: forgetting/tables/deferred.py), print one line, return
        the exit code."""
        from forgetting.rundir.identity import read_metrics
        from forgetting.tables import update_after_run

        run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        metrics = read_metrics(run_dir) or {}
        status = metrics.get("status", FAILED)
        if ret.status == JobStatus.FAILED:  # the task function raised (its log says why)
            status = FAILED
        try:
            update = update_after_run(sweep_dir, run_dir, points)
            done = f"{update.folders_read} run folder(s) read" if update.wrote else (
                f"{update.pending} run folder(s) pending: forgetting.collect merges them"
                if update.pending else "merged by another task")
            counts = ", ".join(f"{v} {k}" for k, v in update.counts.items())
        except UserError as e:  # the table is kept as it is
            log.error("table not updated: %s", e)
            counts, done = "", "not updated"
        print(f"point {point}: {status} ({run_dir}); table: {sweep_dir / 'results.parquet'} "
              f"({counts}; {done})")
        return 1 if status == FAILED else 0


def _drop_if_only_multirun_yaml(sweep_dir: Path) -> None:
    """Remove the sweep folder Hydra's sweeper created for a task that runs nothing."""
    if sweep_dir.is_dir() and [p.name for p in sweep_dir.iterdir()] == ["multirun.yaml"]:
        (sweep_dir / "multirun.yaml").unlink()
        sweep_dir.rmdir()
