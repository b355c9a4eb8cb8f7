"""The jobs of a sweep trained in packs (`hydra/launcher=packed`): each job's run folder is
claimed, skipped or resumed, and written exactly as forgetting/runs/job.py does for one run; the
training in between is one fused model per pack (forgetting/core/packed.py).

Packs are formed from the jobs that can share a fused step (`core.packed.pack_key`), at most
`size` per pack, members of similar length together (under `budget=epochs` a smaller subset
takes fewer steps, and a member that has finished idles in its pack until the pack ends). A
pack of one, and every unfinished job of a pack that fails, runs alone; a job whose config is
bad is recorded `failed` with its one line, as in any sweep.

A member's metrics.json carries `launcher: packed`, `pack_id` (the same for the members of one
pack, from their config hashes) and `pack_size`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.config import Config
from forgetting.core.errors import UserError
from forgetting.rundir.identity import config_hash
from forgetting.runs import preemption
from forgetting.runs.job import (
    RunFolderTaken,
    claimed,
    open_run,
    record_failure,
    train_and_write,
    write_result,
)
from forgetting.runs.progress import add_outcome, outcome, progress_line

log = logging.getLogger("forgetting")
LAUNCHER = "packed"


@dataclass
class Job:
    """One point of the sweep: its composed config, run folder, group choices and name (its
    overrides); `outcome` is what the job returns (its test loss; NaN when it failed)."""
    cfg: DictConfig
    run_dir: Path
    choices: dict
    name: str
    outcome: float = math.nan
    conf: Config | None = None
    checkpoint: Checkpoint | None = None
    key: str = ""


def pack_setting(value: object) -> int | str:
    """`hydra.launcher.pack` checked: a whole number >= 1, or "auto"; UserError (one line)."""
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise UserError(f"hydra.launcher.pack={value}: must be a whole number >= 1, or auto")


def run_packs(jobs: list[Job], size: int | str) -> None:
    """Train `jobs` in packs of at most `size` (`auto`: as measured for each kind of pack,
    core/pack_size.py); set each job's outcome."""
    from forgetting.core.pack_size import best_pack_size
    from forgetting.core.packed import pack_key

    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        try:
            job.key = config_hash(job.cfg)
            job.conf, job.checkpoint = open_run(job.cfg, job.run_dir, job.key)
        except UserError as e:
            log.error("failed: %s", record_failure(job.run_dir, job.cfg, job.choices, e))
            continue
        groups.setdefault(pack_key(job.conf), []).append(job)
    counts = {"start": time.time(), "total": len(jobs), "counts": {}, "trained": 0}
    for job in jobs:  # refused before any pack: failed already
        if job.conf is None:
            _count(counts, [job])
    for members in groups.values():
        members.sort(key=lambda j: j.conf.epochs * (j.conf.subset if j.conf.budget == "epochs"
                                                    else 1))
        k = best_pack_size(members[0].conf) if size == "auto" else size
        for start in range(0, len(members), k):
            try:
                run_pack(members[start:start + k])
                _count(counts, members[start:start + k])
            except Preempted as e:  # checkpoints saved: requeue (a handler) or exit
                signum = preemption.received()
                log.warning("%s: %s; a rerun of this sweep resumes its runs",
                            signal.Signals(signum).name, e)
                preemption.hand_over(signum)


def _count(counts: dict, jobs: list[Job]) -> None:
    """Add the jobs' outcomes to the sweep's counts and print its progress line."""
    for job in jobs:
        add_outcome(counts, outcome(job.run_dir, counts["start"]))
    print(progress_line(counts, time.time()), flush=True)


def run_pack(jobs: list[Job]) -> None:
    """Claim the jobs' folders, skip those finished or held elsewhere, train the rest as one
    pack (alone when one is left, or when the pack fails to start) and write their files."""
    with ExitStack() as stack:
        todo = []
        for job in jobs:
            try:
                skip = stack.enter_context(claimed(job.cfg, job.run_dir, job.key))
            except RunFolderTaken as e:  # nothing written: the finished run stays as it is
                log.error("not run: %s", e)
                continue
            if skip is None:
                todo.append(job)
            else:
                job.outcome = skip
        if len(todo) > 1:
            todo = _train_pack(todo)
        for job in todo:  # alone: one left, or the pack could not train them
            _train_alone(job)


def pack_id(jobs: list[Job]) -> str:
    return hashlib.sha256("".join(sorted(j.key for j in jobs)).encode()).hexdigest()[:10]


def _train_pack(jobs: list[Job]) -> list[Job]:
    """Train `jobs` as one pack; return those it left untrained when it failed (each then runs
    alone, and fails or not on its own)."""
    from forgetting.core.packed import train_pack

    start = time.perf_counter()
    extra = {"launcher": LAUNCHER, "pack_id": pack_id(jobs), "pack_size": len(jobs)}
    checkpoints = [j.checkpoint for j in jobs]
    done: set[int] = set()

    def written(i: int, result) -> None:
        job = jobs[i]
        job.outcome = write_result(job.cfg, job.run_dir, job.choices, job.key, start, result,
                                   checkpoints[i], extra)
        done.add(i)

    log.info("pack %s: %d runs as one model: %s", extra["pack_id"], len(jobs),
             "; ".join(j.name for j in jobs))
    try:
        with preemption.watch():
            train_pack([j.conf for j in jobs], checkpoints=checkpoints, on_result=written,
                       names=[f"[{j.name}] " for j in jobs])
    except Exception as e:  # they run alone, and fail (or not) there
        log.warning("pack %s stopped (%s: %s); its %d unfinished runs run alone",
                    extra["pack_id"], type(e).__name__, str(e).splitlines()[0],
                    len(jobs) - len(done))
        return [j for i, j in enumerate(jobs) if i not in done]
    return []


def _train_alone(job: Job) -> None:
    try:
        job.outcome = train_and_write(job.cfg, job.run_dir, job.choices, job.key,
                                      time.perf_counter(), job.conf, job.checkpoint,
                                      extra={"launcher": LAUNCHER, "pack_size": 1})
    except Exception as e:  # recorded; the sweep goes on
        log.error("failed: %s", record_failure(job.run_dir, job.cfg, job.choices, e))
