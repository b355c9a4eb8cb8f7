"""`hydra/launcher=packed`: the points of a sweep trained K at a time as one fused model.

    python -m forgetting.run -m lr=1,2,4,8 subset=0.25,0.5,1.0 budget=steps \
        hydra/launcher=packed hydra.launcher.pack=4

For forgetting's app (forgetting.run) every job of the batch gets its run folder as under the
basic launcher (same folder, `.hydra/` files, config hash, skip and resume), then the jobs that
can share one fused step are trained together, at most `pack` per model
(forgetting/core/packed.py says which keys may differ between members of a pack and why;
configs that differ in the others go to packs of their own, never silently fused). Each member
writes its own metrics.json, history and probe files as a single run does, with `launcher`,
`pack_id` and `pack_size` added. `pack: auto` (the default) takes the pack size
that measured fastest for the model, width, batch size and device (timed once and cached,
forgetting/core/pack_size.py; 1 where fusion does not pay, e.g. a CPU).

For another Hydra app the jobs run one after another, as the basic launcher runs them.

With `hydra/sweeper=optuna_study` it refuses to start: a study's pruner stops a trial between
epochs, which a pack does not do (its members end together or on their own schedule); run the
study with the basic or joblib launcher, or N workers on one storage.
"""

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)
OPTUNA_STUDY_SWEEPER = "hydra_plugins.forgetting_optuna_sweeper.sweeper.OptunaStudySweeper"


@dataclass
class PackedLauncherConf:
    _target_: str = "hydra_plugins.forgetting_packed_launcher.packed_launcher.PackedLauncher"
    pack: Any = "auto"  # runs per fused model: a whole number >= 1, or auto (measured, cached)


ConfigStore.instance().store(group="hydra/launcher", name="packed", node=PackedLauncherConf,
                             provider="forgetting_packed_launcher")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


class PackedLauncher(Launcher):
    def __init__(self, pack: object = "auto") -> None:
        self.pack = pack
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from forgetting.core.errors import UserError
        from forgetting.runs.packs import pack_setting

        try:
            self.pack = pack_setting(self.pack)
        except UserError as e:
            fail(str(e))
        if OmegaConf.select(config, "hydra.sweeper._target_") == OPTUNA_STUDY_SWEEPER:
            fail("hydra/launcher=packed cannot run hydra/sweeper=optuna_study: the study's "
                 "pruner stops a trial between epochs, which a pack does not; use the basic or "
                 "joblib launcher, or N workers on one storage (README, Optuna searches)")
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from forgetting.runs.cluster import forgetting_app

        setup_globals()
        assert self.config is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        ours = forgetting_app(self.config)
        log.info("Launching %d jobs locally%s", len(job_overrides),
                 f", in packs of {self.pack}" if ours else "")
        returns = [self._job(overrides, initial_job_idx + i, ours)
                   for i, overrides in enumerate(job_overrides)]
        if ours:
            from forgetting.runs.packs import run_packs

            jobs = [ret.return_value for ret in returns]
            common = set.intersection(*(set(o) for o in job_overrides))
            for job, overrides in zip(jobs, job_overrides):  # named by what is swept
                job.name = " ".join(o for o in overrides if o not in common) or job.name
            run_packs(jobs, self.pack)
            for ret, job in zip(returns, jobs):
                ret.return_value = job.outcome
        return returns

    def _job(self, overrides: Sequence[str], idx: int, ours: bool) -> JobReturn:
        """Run job `idx` (another app's), or for ours set up its run folder and return the
        job's description (`forgetting.runs.packs.Job`) as its return value."""
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                          list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        ret = run_job(hydra_context=self.hydra_context,
                      task_function=describe if ours else self.task_function,
                      config=sweep_config, job_dir_key="hydra.sweep.dir",
                      job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret


def describe(cfg: DictConfig):
    """The task run for one of forgetting's jobs while its folder is set up: what its training
    needs later (its folder, group choices, name)."""
    from forgetting.runs.packs import Job

    hc = HydraConfig.get()
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    return Job(cfg, Path(hc.runtime.output_dir), choices,
               " ".join(filter_overrides(list(hc.overrides.task))))
