"""One job of a run or sweep, as files: skip it when it already finished, train it, write its
run folder (metrics.json, history.parquet, recency.parquet), or record why it failed.

A run folder holding a finished run of another config is never overwritten (`RunFolderTaken`);
a failure never replaces a finished run; a folder another live process is training is skipped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from forgetting.core.checkpoint import Checkpoint
from forgetting.core.config import validate
from forgetting.core.errors import ConfigError, UserError
from forgetting.core.files import atomic_write_json, atomic_write_rows, atomic_write_text
from forgetting.core.metrics import DIVERGED, FAILED
from forgetting.runs import folders, preemption, provenance
from forgetting.runs.claims import claim, holder
from forgetting.runs.resume import config_hash, finished_run, read_metrics, run_key

log = logging.getLogger("forgetting")


class RunFolderTaken(UserError):
    """The run folder holds a finished run of another config (never overwritten)."""


def run_one(cfg: DictConfig, run_dir: Path, choices: dict,
            pruning: Callable | None = None) -> float:
    """Validate and train one config, write its files into `run_dir`, return the test loss.
    `pruning(conf)`: the on_epoch hook of the run (an Optuna trial's), or None.

    The folder is claimed while it trains (forgetting/runs/claims.py): a second process that
    reaches it meanwhile skips it (NaN)."""
    start = time.perf_counter()
    key = config_hash(cfg)
    if (skip := _skip(cfg, run_dir, key)) is not None:
        return skip
    if (run_dir / folders.METRICS).is_file() and read_metrics(run_dir) is None:
        log.warning("%s is unreadable (truncated?): the run is trained again",
                    run_dir / folders.METRICS)
    held = claim(run_dir)
    if held is None:  # another live process trains this folder: it writes the result
        who = holder(run_dir) or {}
        log.info("skipped: another process (pid %s on %s) is training this config in %s",
                 who.get("pid", "?"), who.get("host", "?"), run_dir)
        return math.nan
    with held:
        if (skip := _skip(cfg, run_dir, key)) is not None:  # finished while we got here
            return skip
        return _train(cfg, run_dir, choices, pruning, key, start)


def _skip(cfg: DictConfig, run_dir: Path, key: str) -> float | None:
    """The test loss of the finished run in `run_dir` when this config is skipped, else None;
    RunFolderTaken when it is a finished run of another config."""
    done = finished_run(run_dir)
    if done is None or cfg.force:
        return None
    if run_key(done) != key:
        raise RunFolderTaken(f"{run_dir} holds a finished run of another config; choose "
                             "another folder, or force=true to replace it")
    log.info("skipped: this config already finished in %s (force=true recomputes)", run_dir)
    return done.get("test_loss", math.nan)


def _train(cfg: DictConfig, run_dir: Path, choices: dict, pruning: Callable | None, key: str,
           start: float) -> float:
    from forgetting.core.train import train

    try:
        conf = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(e.full_key, "???", "required; set it on the command line") from None
    validate(conf)
    checkpoint = Checkpoint(run_dir / folders.CHECKPOINT, key, stop=preemption.requested,
                            fresh=conf.force)
    with preemption.watch():
        result = train(conf, on_epoch=pruning(conf) if pruning else None,
                       checkpoint=checkpoint)
    metrics = {"status": result.status, **result.final, **result.info, "config_hash": key,
               "wall_s": time.perf_counter() - start, **trial_fields(cfg),
               **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=True)}
    atomic_write_rows(run_dir / folders.HISTORY, result.history)
    if result.recency:
        atomic_write_rows(run_dir / folders.RECENCY, result.recency)
    if result.examples:
        atomic_write_rows(run_dir / folders.EXAMPLES, result.examples)
    atomic_write_json(run_dir / folders.METRICS, metrics)
    checkpoint.remove()
    if result.status == DIVERGED:
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


def write_failure(run_dir: Path, cfg: DictConfig, choices: dict, error: str,
                  trace: str | None = None) -> None:
    """Record a failed run (metrics.json, and error.log with the traceback of a crash); a
    finished run in `run_dir` is never replaced by a failure."""
    if finished_run(run_dir) is not None:
        log.error("not recorded: %s holds a finished run", run_dir)
        return
    if trace is not None:
        atomic_write_text(run_dir / folders.ERROR_LOG, trace)
    try:
        key = config_hash(cfg)
    except Exception:  # an unresolvable config: the folder is identified by .hydra/
        key = None
    metrics = {"status": FAILED, "error": error, **trial_fields(cfg), "config_hash": key,
               **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=False)}
    atomic_write_json(run_dir / folders.METRICS, metrics)
