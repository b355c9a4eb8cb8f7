"""`hydra/sweeper=optuna_study`: a Hydra sweeper that runs an Optuna study (Optuna 5).

One sweep = one worker of a study. It claims trials (_workers.py) in batches of `n_jobs`,
launches them with any Hydra launcher (job number = trial number, so folders of reruns and of
other workers never collide), reads each job's outcome and tells Optuna, until the study holds
`n_trials` counted trials. Then it writes `optimization_results.yaml` and
`optuna_trials.parquet` into the sweep folder (_report.py).

What Optuna is told of each job: _outcome.py.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.forgetting_optuna_sweeper import _report as report
from hydra_plugins.forgetting_optuna_sweeper import _workers as workers
from hydra_plugins.forgetting_optuna_sweeper._errors import SweeperError, bad_value
from hydra_plugins.forgetting_optuna_sweeper._outcome import judge
from hydra_plugins.forgetting_optuna_sweeper._space import SearchSpace, parse_space
from hydra_plugins.forgetting_optuna_sweeper._study import (
    Settings,
    check_settings,
    display_url,
    lock_file,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    resolve_storage,
)

log = logging.getLogger(__name__)


def _plain(value):
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class OptunaStudySweeper(Sweeper):
    def __init__(self, **fields) -> None:
        super().__init__()
        fields = {k: _plain(v) for k, v in fields.items()}
        fields["sampler_kwargs"] = fields.get("sampler_kwargs") or {}
        fields["pruner_kwargs"] = fields.get("pruner_kwargs") or {}
        self.settings = Settings(**fields)
        self.config = None
        self.hydra_context = None
        self.launcher = None
        self._waiting_for = None  # trials of other workers this worker last said it waits for

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def sweep(self, arguments: list[str]) -> list:
        """Run this worker's share of the study; a list of batches of JobReturns."""
        try:
            return self._sweep(arguments)
        except SweeperError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    def _sweep(self, arguments: list[str]) -> list:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        s = self.settings
        check_settings(s)
        self._check_objectives()
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        space = parse_space(s.params, arguments, parser)
        grid = space.grid() if s.sampler == "grid" else None
        n_trials = s.n_trials if s.n_trials is not None else len(grid)
        if grid is not None and n_trials > len(grid):
            raise bad_value("hydra.sweeper.n_trials", n_trials,
                            f"the grid has only {len(grid)} points")
        sampler = make_sampler(s.sampler, s.seed, s.sampler_kwargs)
        pruner = make_pruner(s.pruner, s.pruner_kwargs)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        url = resolve_storage(s.storage, s.study_name, sweep_dir)
        self._check_reachable(url)
        self._check_jobs_compose(space)
        if s.storage is None and url != "memory":  # the default journal: in the sweep folder
            sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(url, s.stale_after_s)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        study = open_study(s, storage, sampler, pruner)
        study.set_user_attr("objectives", s.objectives)
        study.set_user_attr("report", (s.objectives or ["test_loss"])[0])
        study.set_user_attr("pruner", {"name": s.pruner, "kwargs": s.pruner_kwargs})
        lock = workers.claim_lock(lock_file(url, study.study_name, sweep_dir))
        with lock:
            workers.recover_abandoned(study, s.stale_after_s)
            if grid is not None:
                enqueue_grid(study, grid)
        n_jobs = s.n_jobs or launcher_n_jobs(self.config)
        log.info("Optuna study %r (%s): %d trials in all, %d counted so far; batches of %d",
                 study.study_name, display_url(url), n_trials,
                 len(workers.counted(study.get_trials(deepcopy=False))), n_jobs)

        def reseed(k: int) -> None:
            study.sampler = make_sampler(s.sampler, None if s.seed is None else s.seed + k,
                                         s.sampler_kwargs)

        returns = []
        while True:
            trials = workers.claim(study, space.distributions(), n_trials, n_jobs, lock, reseed)
            if not trials:
                if not self._wait_for_others(study, lock):
                    break
                continue
            try:
                with workers.Heartbeat(study, trials, s.stale_after_s / 10):
                    results = self._launch(trials, space, study.study_name, url)
            except BaseException:  # Ctrl-C or a launcher crash: give the trials back
                workers.release(study, trials)
                raise
            for trial, ret in zip(trials, results):
                self._tell(study, trial, ret)
            report.write_trials(study, sweep_dir, s.objectives)
            returns.append(results)

        report.write_trials(study, sweep_dir, s.objectives)
        summary = report.summarize(study, display_url(url), s.objectives)
        path = report.write_results(sweep_dir, summary)
        log.info("%s\nOptuna results: %s", report.describe_best(summary), path)
        if not (summary.get("best") or summary.get("pareto_front")):
            self._no_result(summary, sweep_dir)
        return returns

    def _wait_for_others(self, study, lock) -> bool:
        """The study is full but other workers still run trials: wait a little (True), so that
        every worker ends with the study finished and its tables complete; a trial whose worker
        died is recovered meanwhile and claimed on the next round. False when none run."""
        from optuna.trial import TrialState

        running = [t.number for t in
                   study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running:
            return False
        if running != self._waiting_for:
            log.info("study full; waiting for trials %s of other workers", running)
            self._waiting_for = running
        time.sleep(min(5.0, self.settings.stale_after_s / 10))
        with lock:
            workers.recover_abandoned(study, self.settings.stale_after_s)
        return True

    def _check_reachable(self, url: str) -> None:
        """Pruning needs jobs to reach the trial: a persistent storage and the app's keys."""
        s = self.settings
        if url != "memory" and s.study_name is None:
            raise SweeperError("hydra.sweeper.study_name: required with a persistent storage "
                               f"({display_url(url)}); it names the study to create or resume")
        if s.pruner == "none":
            return
        if url == "memory":
            raise bad_value("hydra.sweeper.pruner", s.pruner,
                            "pruning needs a persistent storage that the jobs reach: set "
                            "hydra.sweeper.study_name (a journal file in the sweep folder) or "
                            "hydra.sweeper.storage")
        if not self._has_trial_keys():
            raise bad_value("hydra.sweeper.pruner", s.pruner, "pruning needs the app's config "
                            "to declare optuna.study, optuna.storage and optuna.trial")

    def _check_objectives(self) -> None:
        """For forgetting's app, objectives must be metrics its runs record (OBJECTIVES in
        forgetting/core/metrics.py), and without objectives there is one direction (a run
        returns its test loss): a typo fails here, before any trial trains. Other apps'
        metrics.json keys are theirs to name, so they are checked per trial (a trial whose
        metrics.json lacks one FAILs, with a note)."""
        from forgetting.core.metrics import OBJECTIVES
        from forgetting.runs.cluster import forgetting_app

        if not forgetting_app(self.config):
            return
        s = self.settings
        unknown = [o for o in s.objectives or [] if o not in OBJECTIVES]
        if unknown:
            raise bad_value("hydra.sweeper.objectives", s.objectives,
                            f"{', '.join(map(repr, unknown))} is not a metric of a run; "
                            f"choose from {', '.join(OBJECTIVES)}")
        if s.objectives is None and len(s.directions) != 1:  # the one value a run returns
            raise bad_value("hydra.sweeper.directions", s.directions,
                            "a run returns one value (its test_loss): give one direction, or "
                            "name one metric per direction in hydra.sweeper.objectives "
                            f"(from {', '.join(OBJECTIVES)})")

    def _has_trial_keys(self) -> bool:
        node = self.config.get("optuna") if "optuna" in self.config else None
        return isinstance(node, DictConfig) and {"study", "storage", "trial"} <= set(node)

    def _check_jobs_compose(self, space: SearchSpace) -> None:
        """Compose one job's config before any trial is claimed (a mistyped key fails here)."""
        from hydra_plugins.forgetting_optuna_sweeper._space import discrete_values

        point = {}
        for p in space.params:
            values = discrete_values(p.distribution)
            point[p.name] = values[0] if values else p.distribution.low
        overrides = space.overrides(point) + self._trial_overrides("probe", "memory", 0)
        try:
            self.validate_batch_is_legal([overrides])
        except Exception as e:
            raise SweeperError((str(e).splitlines() or [type(e).__name__])[0]) from None

    def _trial_overrides(self, study_name: str, url: str, number: int) -> list[str]:
        if not self._has_trial_keys():
            return []
        esc = Override._get_value_element_as_str
        return [f"optuna.study={esc(study_name)}", f"optuna.storage={esc(url)}",
                f"optuna.trial={number}"]

    def _launch(self, trials: list, space: SearchSpace, study_name: str, url: str) -> list:
        """Launch `trials` with job number = trial number (one launcher call per run of
        consecutive numbers); their JobReturns in the same order."""
        overrides = [space.overrides(t.params) + self._trial_overrides(study_name, url, t.number)
                     for t in trials]
        results, start = [], 0
        for i in range(1, len(trials) + 1):
            if i == len(trials) or trials[i].number != trials[i - 1].number + 1:
                results += list(self.launcher.launch(overrides[start:i],
                                                     initial_job_idx=trials[start].number))
                start = i
        return results

    def _tell(self, study, trial, ret) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        s = self.settings
        state, values, note = judge(ret, s.objectives, s.directions, s.on_nan)
        try:
            if note:
                trial.set_user_attr("note", note)
            study.tell(trial, values, state=state)
        except (ValueError, UpdateFinishedTrialError) as e:  # discarded by another worker
            log.warning("trial %d: not told (%s)", trial.number, e)
            return
        shown = " ".join(f"{v:.4g}" for v in values) if values else ""
        log.info("trial %d %s %s%s", trial.number, state.name, shown,
                 f" ({note})" if note else "")

    def _no_result(self, summary: dict, sweep_dir: Path) -> None:
        """No trial completed with a finite objective: end with one clear message, exit 1.
        Other workers may still be running trials: then say so and return."""
        running = summary["states"].get("RUNNING", 0)
        if running:
            log.info("%d trials still run in other workers; no result yet", running)
            return
        counts = ", ".join(f"{v} {k}" for k, v in summary["states"].items())
        # Hydra skips on_multirun_end when the sweeper exits; the results table is built there
        try:
            self.hydra_context.callbacks.on_multirun_end(config=self.config)
        except SystemExit:
            pass
        print(f"error: study {summary['study']!r}: none of its {summary['n_trials']} trials "
              f"completed with a finite objective ({counts}); see the runs in {sweep_dir}",
              file=sys.stderr)
        raise SystemExit(1)


def enqueue_grid(study, grid: list[dict]) -> None:
    """Queue the grid's points in order, except those the study already has (a rerun)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    have = [t.system_attrs.get("fixed_params", t.params) for t in trials
            if t.state == TrialState.WAITING] + [t.params for t in workers.counted(trials)]
    for point in grid:
        if point not in have:
            study.enqueue_trial(point)
            have.append(point)


def launcher_n_jobs(config: DictConfig) -> int:
    n = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if isinstance(n, int) and n > 0:
        return n
    if isinstance(n, int) and n < 0:
        return os.cpu_count() or 1
    return 1
