"""Config of the `optuna_study` sweeper (`hydra/sweeper=optuna_study`), in Hydra's ConfigStore.

Hydra imports every module of the `hydra_plugins` namespace when it scans for plugins, in every
Hydra app of the environment: this module (like the others here) imports no optuna at the top.
Each field is checked when the sweep starts; a bad value stops it with one `error:` line.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaStudySweeperConf:
    _target_: str = "hydra_plugins.forgetting_optuna_sweeper.sweeper.OptunaStudySweeper"
    # The study and where it lives. storage: null = in memory when study_name is null, else a
    # journal file `optuna_journal.log` in the sweep folder; or `memory`, `journal:PATH`,
    # `sqlite:///PATH`, or any SQLAlchemy URL (postgresql://user@host/db) for several nodes.
    study_name: Optional[str] = None
    storage: Optional[str] = None
    # The study's total number of trials: a rerun resumes to it and launches only the missing
    # ones. null: the number of grid points with sampler=grid, required otherwise.
    n_trials: Optional[int] = None
    # Trials launched together (one launcher call). null: hydra.launcher.n_jobs if the launcher
    # has it (joblib), else 1. A batch waits for its slowest job: for asynchronous parallelism
    # run several worker processes of the same command (README "Optuna searches").
    n_jobs: Optional[int] = None
    sampler: str = "tpe"  # tpe | random | grid | gp (needs scipy) | cmaes (needs cmaes)
    seed: Optional[int] = 0  # trial k is sampled with seed + k; null = unseeded
    sampler_kwargs: Dict[str, Any] = field(default_factory=dict)  # e.g. {n_startup_trials: 5}
    pruner: str = "none"  # none | median | successive_halving | hyperband
    pruner_kwargs: Dict[str, Any] = field(default_factory=dict)  # e.g. {n_warmup_steps: 2}
    # What is optimised: keys of the run's metrics.json (test_loss, wall_s, ...); null = the
    # task function's return value (a number, or one per direction). One direction per objective.
    objectives: Optional[List[str]] = None
    directions: List[str] = field(default_factory=lambda: ["minimize"])
    # A non-finite objective (a diverged run): `fail` tells Optuna the trial FAILed; `worst` tells
    # it +inf (minimize) or -inf (maximize), so samplers learn to avoid the region.
    on_nan: str = "fail"
    # A RUNNING trial whose worker sent no heartbeat for this long (seconds), or whose worker
    # process on this host is gone, was abandoned: it is marked FAIL and its params re-enqueued.
    # A database storage uses Optuna's own heartbeat for this: grace_period = stale_after_s,
    # heartbeat_interval = stale_after_s / 10, RetryHeartbeatStaleTrialCallback (_workers.py).
    stale_after_s: float = 600.0
    # The search space in Hydra's sweep syntax, merged with (and overridden by) the command line:
    # choice(...), a,b,c, range(...), interval(...), tag(log, interval(...)), tag(int, ...).
    # Plain values are passed to every job as they are.
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="optuna_study",
                             node=OptunaStudySweeperConf, provider="forgetting_optuna_sweeper")
