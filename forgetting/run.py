"""The Hydra entry point: compose -> validate -> train -> write -> return the test loss.

    python -m forgetting.run                               # one run, the ResNet-9 recipe
    python -m forgetting.run -m lr=1,2,4,8 subset=0.25,0.5,1.0   # a sweep and its table

Every run writes `metrics.json`, `history.parquet` and (unless `probe.epochs=0`)
`recency.parquet` into its Hydra run folder. Bad input
stops with one line naming the key and the allowed values (exit code 2); in a sweep a failing
point is recorded as `failed` and the other points still run.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from forgetting import preemption, provenance
from forgetting.checkpoint import Checkpoint, Preempted
from forgetting.config import register_configs, validate
from forgetting.errors import ConfigError, UserError
from forgetting.files import atomic_write_json, atomic_write_rows, atomic_write_text
from forgetting.preflight import CONFIG_DIR, SWEEPS_DIR, preflight
from forgetting.resume import config_hash, finished_run, register_resolver, run_key
from hydra_plugins.forgetting_array_launcher.array_launcher import register_launcher
from hydra_plugins.forgetting_optuna_sweeper.config import register_plugin

log = logging.getLogger("forgetting")
register_configs(SWEEPS_DIR)
register_plugin()  # hydra/sweeper=optuna_study, also from an editable install elsewhere
register_launcher()  # hydra/launcher=array, likewise
register_resolver()  # ${forgetting.job_folder:N}: a sweep job's folder (conf/config.yaml)


class RunFolderTaken(UserError):
    """The run folder holds a finished run of another config (never overwritten)."""


def run_one(cfg: DictConfig, run_dir: Path, choices: dict) -> float:
    """Validate and train one config, write its files into `run_dir`, return the test loss."""
    from forgetting.train import train

    start = time.perf_counter()
    key = config_hash(cfg)
    done = finished_run(run_dir)
    if done is not None and not cfg.force:
        if run_key(done) != key:
            raise RunFolderTaken(f"{run_dir} holds a finished run of another config; choose "
                                 "another folder, or force=true to replace it")
        log.info("skipped: this config already finished in %s (force=true recomputes)",
                 run_dir)
        return done.get("test_loss", math.nan)
    try:
        conf = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(e.full_key, "???", "required; set it on the command line") from None
    validate(conf)
    checkpoint = Checkpoint(run_dir / "checkpoint.pt", key, stop=preemption.requested,
                            fresh=conf.force)
    with preemption.watch():
        result = train(conf, on_epoch=pruning_hook(conf), checkpoint=checkpoint)
    metrics = {"status": result.status, **result.final, **result.info, "config_hash": key,
               "wall_s": time.perf_counter() - start, **trial_fields(cfg),
               **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=True)}
    atomic_write_rows(run_dir / "history.parquet", result.history)
    if result.recency:
        atomic_write_rows(run_dir / "recency.parquet", result.recency)
    atomic_write_json(run_dir / "metrics.json", metrics)
    checkpoint.remove()
    if result.status == "diverged":
        log.warning("diverged (non-finite loss) at epoch %d; recorded as status=diverged",
                    result.final["epochs_run"])
    return result.final["test_loss"]


def trial_fields(cfg: DictConfig) -> dict:
    """`study`, `storage`, `trial` of the Optuna trial this run is; {} outside a search."""
    study = OmegaConf.select(cfg, "optuna.study", default=None)
    if study is None:
        return {}
    return {"study": study, "storage": OmegaConf.select(cfg, "optuna.storage", default=None),
            "trial": OmegaConf.select(cfg, "optuna.trial", default=None)}


def pruning_hook(conf):
    """The on_epoch hook of an Optuna trial reached through a persistent storage, else None."""
    if conf.optuna.study is None or conf.optuna.storage in (None, "memory"):
        return None
    from hydra_plugins.forgetting_optuna_sweeper.trial import report_to_trial

    return report_to_trial(conf.optuna.study, conf.optuna.storage, conf.optuna.trial)


def write_failure(run_dir: Path, cfg: DictConfig, choices: dict, error: str,
                  trace: str | None = None) -> None:
    """Record a failed run (metrics.json, and error.log with the traceback of a crash); a
    finished run in `run_dir` is never replaced by a failure."""
    if finished_run(run_dir) is not None:
        log.error("not recorded: %s holds a finished run", run_dir)
        return
    if trace is not None:
        atomic_write_text(run_dir / "error.log", trace)
    try:
        key = config_hash(cfg)
    except Exception:  # an unresolvable config: the folder is identified by .hydra/
        key = None
    metrics = {"status": "failed", "error": error, **trial_fields(cfg), "config_hash": key,
               **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=False)}
    atomic_write_json(run_dir / "metrics.json", metrics)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    in_sweep = hc.mode == RunMode.MULTIRUN
    try:
        return run_one(cfg, run_dir, choices)
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
    except UserError as e:
        write_failure(run_dir, cfg, choices, str(e))
        if not in_sweep:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.error("failed: %s", e)
    except Exception as e:  # a bug or a crash: keep the traceback on disk, the sweep goes on
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        write_failure(run_dir, cfg, choices, reason, trace=traceback.format_exc())
        if not in_sweep:
            print(f"error: run failed: {reason} (traceback in {run_dir / 'error.log'})",
                  file=sys.stderr)
            raise SystemExit(1) from None
        log.error("failed: %s (traceback in %s)", reason, run_dir / "error.log")
    return math.nan


def cli() -> None:
    try:
        preflight(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    main()


if __name__ == "__main__":
    cli()
