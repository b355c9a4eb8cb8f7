"""One job of a run or sweep, as files: skip it when it already finished, train it, write its
run folder (metrics.json, history.parquet, recency.parquet, and with diagnostics
examples.parquet, steps.parquet), or record why it failed.

A run folder holding a finished run of another config is never overwritten (`RunFolderTaken`);
a failure never replaces a finished run; a folder another live process is training is skipped.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from forgetting import tables
from forgetting.core.config import Config, validate
from forgetting.core.errors import ConfigError, UserError
from forgetting.core.files import (
    atomic_write_json,
    atomic_write_rows,
    atomic_write_text,
    remove_stale_temporaries,
)
from forgetting.core.metrics import DIVERGED, DIVERGED_LOSS, FAILED
from forgetting.rundir import folders
from forgetting.rundir.claims import claim, holder
from forgetting.rundir.identity import config_hash, read_metrics, run_key
from forgetting.runs import preemption, provenance, tracking
from forgetting.runs.resume import finished_run

if TYPE_CHECKING:
    from forgetting.core.checkpoint import Checkpoint
    from forgetting.core.train import RunResult

log = logging.getLogger("forgetting")


class RunFolderTaken(UserError):
    """The run folder holds a finished run of another config (never overwritten)."""


def run_one(cfg: DictConfig, run_dir: Path, choices: dict,
            pruning: Callable | None = None) -> float:
    """Validate and train one config, write its files into `run_dir`, return the test loss.
    `pruning(conf)`: the on_epoch hook of the run (an Optuna trial's), or None.

    The folder is claimed while it trains (forgetting/rundir/claims.py): a second process that
    reaches it meanwhile skips it (NaN)."""
    start = time.perf_counter()
    key = config_hash(cfg)
    with claimed(cfg, run_dir, key) as skip:
        if skip is not None:
            return skip
        conf, checkpoint = open_run(cfg, run_dir, key)
        return train_and_write(cfg, run_dir, choices, key, start, conf, checkpoint,
                               on_epoch=pruning(conf) if pruning else None)


def train_and_write(cfg: DictConfig, run_dir: Path, choices: dict, key: str, start: float,
                    conf: Config, checkpoint: Checkpoint, on_epoch: Callable | None = None,
                    extra: dict | None = None) -> float:
    """Train a claimed run (stopping for pre-emption when asked), write its files; return
    the test loss."""
    from forgetting.core.train import train  # torch's graph code: only when a run trains

    with preemption.watch():
        result = train(conf, on_epoch=on_epoch, checkpoint=checkpoint)
    return write_result(cfg, run_dir, choices, key, start, result, checkpoint, extra)


@contextmanager
def claimed(cfg: DictConfig, run_dir: Path, key: str):
    """Claim `run_dir` for training `cfg` (config hash `key`) for the block. Yields None when
    it is ours to train, else the value to return instead: the test loss of the finished run
    it holds (skipped), or NaN when another live process holds it."""
    if (skip := _skip(cfg, run_dir, key)) is not None:
        yield skip
        return
    if (run_dir / folders.METRICS).is_file() and read_metrics(run_dir) is None:
        log.warning("%s is unreadable (truncated?): the run is trained again",
                    run_dir / folders.METRICS)
    held = claim(run_dir)
    if held is None:  # another live process trains this folder: it writes the result
        who = holder(run_dir) or {}
        log.info("skipped: another process (pid %s on %s) is training this config in %s",
                 who.get("pid", "?"), who.get("host", "?"), run_dir)
        yield math.nan
        return
    with held:
        remove_stale_temporaries(run_dir)  # a killed writer's; nobody else writes here now
        yield _skip(cfg, run_dir, key)  # finished while we got here: skipped after all


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


def open_run(cfg: DictConfig, run_dir: Path, key: str) -> tuple[Config, Checkpoint]:
    """The validated config object of a run and its checkpoint (resumed from when present)."""
    from forgetting.core.checkpoint import Checkpoint  # torch: only when a run trains
    try:
        conf = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(e.full_key, "???", "required; set it on the command line") from None
    validate(conf)
    return conf, Checkpoint(run_dir / folders.CHECKPOINT, key, stop=preemption.requested,
                            fresh=conf.force)


def write_result(cfg: DictConfig, run_dir: Path, choices: dict, key: str, start: float,
                 result: RunResult, checkpoint: Checkpoint, extra: dict | None = None) -> float:
    """Write a finished run's files (metrics.json last), drop its checkpoint; return the test
    loss. `extra`: more fields for metrics.json (a pack's `launcher`, `pack_id`, ...)."""
    metrics = {"status": result.status, **result.final, **result.info, **(extra or {}),
               "config_hash": key, "wall_s": time.perf_counter() - start, **trial_fields(cfg),
               **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=True)}
    atomic_write_rows(run_dir / folders.HISTORY, result.history)
    if result.recency:
        atomic_write_rows(run_dir / folders.RECENCY, result.recency)
    if result.examples:
        atomic_write_rows(run_dir / folders.EXAMPLES, result.examples)
    if result.steps:
        atomic_write_rows(run_dir / folders.STEPS, result.steps)
    write_metrics(run_dir, metrics)
    checkpoint.remove()
    tracking.log_run(run_dir, metrics, result.history)  # logger=mlflow|tensorboard
    if result.status == DIVERGED:
        log.warning("diverged (training loss %.4g: not finite or above %g) at epoch %d; "
                    "recorded as status=diverged (%s)", result.final["train_loss"],
                    DIVERGED_LOSS, result.final["epochs_run"], run_dir)
    return result.final["test_loss"]


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """Name the run folder in the change feed of the tables above it, then write metrics.json
    (atomically, a run's last file): the feed is written ahead of the data it announces, so a
    process killed anywhere in between leaves the folder where the next update re-reads it
    (re-reading an unchanged folder is harmless; forgetting/tables/feed.py)."""
    tables.announce(run_dir)
    atomic_write_json(run_dir / folders.METRICS, metrics)


def trial_fields(cfg: DictConfig) -> dict:
    """`study`, `storage`, `trial` of the Optuna trial this run is; {} outside a search."""
    study = OmegaConf.select(cfg, "optuna.study", default=None)
    if study is None:
        return {}
    return {"study": study, "storage": OmegaConf.select(cfg, "optuna.storage", default=None),
            "trial": OmegaConf.select(cfg, "optuna.trial", default=None)}


def record_failure(run_dir: Path, cfg: DictConfig, choices: dict, error: Exception) -> str:
    """Record why a run failed (call it in the `except` block): a user error's one line, or a
    crash's first line with its traceback in error.log. Returns the line to report."""
    if isinstance(error, UserError):
        write_failure(run_dir, cfg, choices, str(error))
        return str(error)
    reason = f"{type(error).__name__}: {error}".splitlines()[0]
    write_failure(run_dir, cfg, choices, reason, trace=traceback.format_exc())
    return f"{reason} (traceback in {run_dir / folders.ERROR_LOG})"


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
    write_metrics(run_dir, metrics)
