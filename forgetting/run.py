"""The Hydra entry point: check -> compose -> train -> write -> return the test loss.

    python -m forgetting.run                               # one run, the ResNet-9 recipe
    python -m forgetting.run -m lr=1,2,4,8 subset=0.25,0.5,1.0   # a sweep and its table

Every run writes `metrics.json`, `history.parquet` and (unless `probe.epochs=0`)
`recency.parquet` into its Hydra run folder (forgetting/runs/job.py). Bad input stops with one
line naming the key and the allowed values (exit code 2); in a sweep a failing point is recorded
as `failed` and the other points still run.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from forgetting.core.errors import Preempted, UserError
from forgetting.runs import preemption
from forgetting.runs.cluster import guard_sbatch
from forgetting.runs.configs import CONFIG_DIR, ensure_plugin, register_configs
from forgetting.runs.job import RunFolderTaken, record_failure, run_one
from forgetting.runs.preflight import preflight
from forgetting.runs.resume import register_resolver
from forgetting.runs.sweep_end import sweep_failures

log = logging.getLogger("forgetting")


def register() -> None:
    """Tell Hydra of our configs, plugins and resolver: the schema and `+sweep=` presets,
    `hydra/sweeper=optuna_study`, `hydra/launcher=array` and `hydra/launcher=packed` (also
    from an editable install used in another folder, where Hydra's plugin scan does not see
    the checkout), and
    `${forgetting.job_folder:N}` (a sweep job's folder, conf/config.yaml)."""
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    # imported for their configs, stored in Hydra's ConfigStore at import
    import hydra_plugins.forgetting_array_launcher.array_launcher  # noqa: F401
    import hydra_plugins.forgetting_optuna_sweeper.config  # noqa: F401
    import hydra_plugins.forgetting_packed_launcher.packed_launcher  # noqa: F401

    register_configs()
    ensure_plugin(Sweeper, "hydra_plugins.forgetting_optuna_sweeper.sweeper",
                  "OptunaStudySweeper")
    ensure_plugin(Launcher, "hydra_plugins.forgetting_array_launcher.array_launcher",
                  "ArrayLauncher")
    ensure_plugin(Launcher, "hydra_plugins.forgetting_packed_launcher.packed_launcher",
                  "PackedLauncher")
    register_resolver()


# The one import-time side effect, where Hydra needs it: a submitit job unpickles `main` and
# resolves its job folder (our resolver) before calling it, without passing through `cli`.
register()


def pruning_hook(conf):
    """The on_epoch hook of an Optuna trial reached through a persistent storage, else None."""
    if conf.optuna.study is None or conf.optuna.storage in (None, "memory"):
        return None
    from hydra_plugins.forgetting_optuna_sweeper.trial import report_to_trial

    return report_to_trial(conf.optuna.study, conf.optuna.storage, conf.optuna.trial)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    in_sweep = hc.mode == RunMode.MULTIRUN
    try:
        return run_one(cfg, run_dir, choices, pruning=pruning_hook)
    except Preempted as e:  # checkpoint saved: requeue (submitit, array launcher) or exit
        signum = preemption.received()
        log.warning("%s: %s; a rerun of this config in %s resumes from it",
                    signal.Signals(signum).name, e, run_dir)
        preemption.hand_over(signum)
    except RunFolderTaken as e:  # nothing written: the finished run stays as it is
        if not in_sweep:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.error("not run: %s", e)
    except Exception as e:  # bad input, or a bug or a crash: recorded, the sweep goes on
        line = record_failure(run_dir, cfg, choices, e)
        if not in_sweep:
            user = isinstance(e, UserError)
            print(f"error: {line}" if user else f"error: run failed: {line}", file=sys.stderr)
            raise SystemExit(2 if user else 1) from None
        log.error("failed: %s", line)
    return math.nan


def cli() -> None:
    try:
        preflight(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    guard_sbatch()  # sbatch's refusal as one line; only the launching process submits
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside training (which stops at a step: exit 130)
        print("error: interrupted (Ctrl-C); finished runs are kept, a rerun resumes the rest",
              file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    from hydra_plugins.forgetting_array_launcher.array_launcher import exit_code

    if sweep_failures():  # the table and the report are written: the sweep says it failed
        raise SystemExit(1)
    if exit_code():  # an array task (hydra/launcher=array) exits with its point's outcome
        raise SystemExit(exit_code())


if __name__ == "__main__":
    cli()
