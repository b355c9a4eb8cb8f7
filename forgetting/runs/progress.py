"""Where a sweep or a run is, while it runs (the `progress` callback in conf/config.yaml).

- A sweep: after each point, one line
  `[3/12] done: 2 ok, 1 diverged, 0 failed; elapsed 1m05s, ETA 3m15s`
  (also `skipped`: finished before this sweep started, `pruned`, `not run`: another process
  holds it). N comes from the basic sweeper's grid (`[3]` for other sweepers, with no ETA); the
  ETA is the points' own measured rate: the seconds the trained points' jobs took (from
  each job's start to its end, never the sweep's wall clock) per unit of work, times the work
  left, divided among the launcher's parallel workers (joblib's n_jobs); `ETA after the first
  point` until one was trained. A point's work is its passes over the training set times the
  model's width squared (`point_work`: epochs x subset under `budget=epochs`, epochs under
  `budget=steps`), so a grid over subsets, epochs or widths, whose first points are its
  smallest, does not make the ETA grow while they run; where a point's size cannot be read
  (a search sweeper), every point counts alike. The counts live in one small file per sweep
  command, `SWEEP/.progress/ID.json`, created when the first point ends (a sweep refused
  before any point runs leaves nothing) and updated under a file lock by the process that ran
  the point, so joblib's worker processes (and submitit's jobs, on a shared file
  system) count into the same line. Not for `hydra/launcher=array` (each task is one point)
  nor `hydra/launcher=packed` (its jobs end before their packs train).
- Within each run (forgetting/runs/run_line.py, fed by core/train.py's progress records): a
  single run on a terminal, `quiet=false`: a tqdm bar over its epochs with the log lines
  above it. Else, with `quiet=true`, one short line per epoch (rewritten in place on a
  terminal) and a heartbeat within an epoch longer than 30 s; with `quiet=false`, the full
  per-epoch log lines and those heartbeats.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from forgetting.core.files import atomic_write_text
from forgetting.core.metrics import DIVERGED, FAILED, OK
from forgetting.rundir import folders
from forgetting.runs.run_line import EpochBar, RunLine, ended_by_logs, listening

STATE_DIR = ".progress"
SKIPPED, NOT_RUN = "skipped", "not run"
SHOWN = (OK, DIVERGED, FAILED)  # always in the line; other outcomes only when they occur
# an array task runs one point; the packed launcher ends its jobs (Hydra's on_job_end) when
# it has given them folders, before their packs train: no line would be true there
UNCOUNTED_LAUNCHERS = (".ArrayLauncher", ".PackedLauncher")
log = logging.getLogger("forgetting")


class Progress(Callback):
    def __init__(self) -> None:
        self.state: Path | None = None  # this sweep command's counts (pickled to its jobs)
        self.stack: ExitStack | None = None  # a run's bar or line (and redirected log lines)
        self.swept: list[str] = []  # the keys a sweep varies (its points' lines name them)
        self.initial: dict = {}  # the counts file's first contents
        self.job_start: float | None = None  # when this process's current point started

    def __getstate__(self) -> dict:
        """Pickled without the run's line or bar (open streams, a generator's context): a
        job is pickled to a SLURM task, and again when submitit requeues it."""
        return {**self.__dict__, "stack": None}

    # --- a sweep -------------------------------------------------------------------------

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Name this sweep's counts file; it is created when the first point ends, so a sweep
        that is refused before any point runs leaves nothing behind."""
        self.swept = swept_keys(config)
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if launcher.endswith(UNCOUNTED_LAUNCHERS):
            return
        try:
            folder = Path(str(config.hydra.sweep.dir)) / STATE_DIR
            self.state = folder / f"{uuid.uuid4().hex[:12]}.json"
            total, work = sweep_size(config)
            self.initial = {"start": time.time(), "total": total, "counts": {},
                            "trained": 0, "busy": 0.0, "workers": parallel_jobs(config),
                            "work": work, "work_done": 0.0, "work_trained": 0.0}
        except Exception as e:  # progress is a convenience: never stop a sweep for it
            log.debug("no progress line: %s", e)
            self.state = None

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None
        if self.state is None or HydraConfig.get().mode != RunMode.MULTIRUN:
            return
        try:
            from hydra.core.utils import JobStatus

            run_dir = Path(str(config.hydra.runtime.output_dir))
            result = outcome(run_dir, self.initial["start"],
                             job_return.status == JobStatus.FAILED)
            seconds = time.time() - self.job_start if self.job_start is not None else None
            line = count_point(self.state, result, seconds, self.initial,
                               point_work(lambda key: OmegaConf.select(config, key)))
        except Exception as e:
            log.debug("no progress line: %s", e)
            return
        print(line, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.state is not None:
            for path in (self.state, self.state.with_suffix(".lock")):
                path.unlink(missing_ok=True)

    # --- a single run --------------------------------------------------------------------

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        self.job_start = time.time()
        quiet = bool(config.get("quiet", False))
        self.stack = ExitStack()
        try:
            if HydraConfig.get().mode == RunMode.RUN and not quiet and sys.stderr.isatty():
                from tqdm.contrib.logging import logging_redirect_tqdm

                self.stack.enter_context(listening(EpochBar(sys.stderr)))
                self.stack.enter_context(logging_redirect_tqdm())
                return
            line = RunLine(sys.stdout, self.label(config), quiet, quiet and sys.stdout.isatty())
            self.stack.enter_context(listening(line))
            if line.in_place:
                self.stack.enter_context(ended_by_logs(line))
        except Exception as e:  # progress is a convenience: never stop a run for it
            log.debug("no progress line: %s", e)

    def label(self, config: DictConfig) -> str:
        """What starts a sweep's run line: `#3 lr=2 subset=0.05` (its job number and swept
        values); nothing for a single run."""
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            return ""
        task = OmegaConf.select(config, "hydra.overrides.task", default=None) or []
        values = [o for o in task if o.split("=", 1)[0].lstrip("+~") in self.swept]
        return " ".join([f"#{OmegaConf.select(config, 'hydra.job.num', default='?')}",
                         *values])


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a sweep varies: its command line's sweeps (`lr=1,2`, `range(…)`, …) and its
    sweeper's params; none where they do not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    try:
        parsed = OverridesParser.create().parse_overrides(task)
    except Exception:
        return [str(k) for k in params]
    return [str(k) for k in params] + [ov.key_or_group for ov in parsed
                                       if ov.is_sweep_override()]


# --- the sweep's counts ------------------------------------------------------------------

def sweep_size(config: DictConfig) -> tuple[int | None, float | None]:
    """How many points the basic sweeper launches (its params, then the command line, each
    key's last value winning, as it does), and their work added up (`point_work`); None for
    other sweepers or what does not parse (the work: also where a point's size does not)."""
    from forgetting.runs.points import sweep_points

    task = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
    points = sweep_points(config, task)
    if points is None:
        return None, None
    works = []
    for point in points:
        values = dict(o.split("=", 1) for o in point if "=" in o)
        works.append(point_work(lambda key, values=values: values.get(key)
                                if key in values else OmegaConf.select(config, key)))
    return len(points), (None if None in works else float(sum(works)))


def point_work(value) -> float | None:
    """What a point costs, relative to others: passes over the full training set (epochs x
    subset under `budget=epochs`, epochs under `budget=steps`) times `model.width` squared;
    `value(key)` gives a key's value. None where a value is missing or no number."""
    try:
        epochs, width = float(value("epochs")), float(value("model.width") or 1.0)
        share = 1.0 if str(value("budget")) == "steps" else float(value("subset"))
    except (TypeError, ValueError):
        return None
    return epochs * share * width ** 2


def outcome(run_dir: Path, since: float, failed: bool = False) -> str:
    """What became of one point: its status, `skipped` (finished before `since`, when this
    sweep started), `not run` (no result: another process holds it, or its folder holds
    another config). `failed`: its job raised."""
    if failed:
        return FAILED
    path = run_dir / folders.METRICS
    try:
        status = json.loads(path.read_text()).get("status")
        written = path.stat().st_mtime
    except (OSError, ValueError, AttributeError):
        return NOT_RUN
    if written < since and status != FAILED:
        return SKIPPED
    return str(status)


def count_point(state: Path, result: str, seconds: float | None = None,
                initial: dict | None = None, work: float | None = None) -> str:
    """Add one point's outcome (and, for a trained point, the `seconds` its job took; `work`:
    its size, `point_work`) to the sweep's counts under their lock, creating them from
    `initial` for the first point; the progress line."""
    from filelock import FileLock

    state.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(state.with_suffix(".lock")):
        counts = json.loads(state.read_text()) if state.exists() else dict(initial or {})
        add_outcome(counts, result, seconds, work)
        write_state(state, counts)
    return progress_line(counts, time.time())


def add_outcome(counts: dict, result: str, seconds: float | None = None,
                work: float | None = None) -> None:
    """Count one point's outcome (`trained`: the points whose time goes into the ETA, `busy`:
    the seconds their jobs took; `work_done`: the work of every point counted, `work_trained`:
    of the trained ones; without a point's `work` the ETA counts points alike)."""
    counts["counts"][result] = counts["counts"].get(result, 0) + 1
    if work is None:
        counts["work"] = None
    elif counts.get("work") is not None:
        counts["work_done"] += work
    if result not in (SKIPPED, NOT_RUN):
        counts["trained"] += 1
        if seconds is not None and "busy" in counts:
            counts["busy"] += seconds
            if work is not None and counts.get("work") is not None:
                counts["work_trained"] += work


def parallel_jobs(config: DictConfig) -> int:
    """How many points the launcher runs at once: joblib's n_jobs (-1: one per core),
    submitit's array_parallelism, else 1."""
    import os

    n = OmegaConf.select(config, "hydra.launcher.n_jobs", default=None)
    if n is None:
        n = OmegaConf.select(config, "hydra.launcher.array_parallelism", default=None)
    try:
        n = int(n) if n is not None else 1
    except (TypeError, ValueError):
        return 1
    return (os.cpu_count() or 1) + 1 + n if n < 0 else max(n, 1)  # joblib: -1 = all cores


def write_state(path: Path, counts: dict) -> None:
    atomic_write_text(path, json.dumps(counts))


def progress_line(counts: dict, now: float) -> str:
    """`[k/N] done: a ok, b diverged, c failed[, d skipped…]; elapsed E, ETA T`."""
    done = sum(counts["counts"].values())
    total = counts.get("total")
    head = f"[{done}/{total}]" if total else f"[{done}]"
    shown = [f"{counts['counts'].get(s, 0)} {s}" for s in SHOWN]
    shown += [f"{n} {s}" for s, n in sorted(counts["counts"].items())
              if s not in SHOWN and n]
    elapsed = now - counts["start"]
    line = f"{head} done: {', '.join(shown)}; elapsed {duration(elapsed)}"
    if total:
        eta = eta_seconds(counts, max(total - done, 0))
        line += f", ETA {duration(eta)}" if eta is not None else ", ETA after the first point"
    return line


def eta_seconds(counts: dict, left: int) -> float | None:
    """Time left for the `left` points: the trained points' seconds per unit of work times
    the work left (per point, where the points' sizes are not known), divided among the
    launcher's parallel workers; None before a point was trained (skipped points take no
    time: nothing to go by). Never the sweep's elapsed time, which holds its start-up and the
    skipped points."""
    if left == 0:
        return 0.0
    if not counts.get("trained") or not counts.get("busy"):
        return None
    workers = min(counts.get("workers") or 1, left)
    if counts.get("work") is not None and counts.get("work_trained"):
        rate = counts["busy"] / counts["work_trained"]
        return rate * max(counts["work"] - counts["work_done"], 0.0) / workers
    return counts["busy"] / counts["trained"] * left / workers


def duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
