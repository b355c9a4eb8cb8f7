"""How worker processes share one study: claims, heartbeats and abandoned trials.

Counted trials: every trial except WAITING ones (queued, not yet claimed) and those FAILed with
a `discarded` user attribute (`surplus` or `abandoned`). `n_trials` is the number of counted
trials the study should reach.

A claim takes the next trial if fewer than `n_trials` are counted: under a file lock (beside a
file storage, else in the sweep folder) the worker counts, asks Optuna for a trial (a queued one
first) and stamps it with its owner. Optuna has no atomic "ask if fewer than n", so after the
ask the worker also checks that at most `n_trials` counted trials have a number <= its own;
otherwise the trial is surplus, discarded and not run. Trial numbers are handed out in order by
the storage, so this check alone keeps the total exact for workers that cannot share the lock
(an RDB study reached from several nodes without a shared sweep folder); the lock makes
surplus trials rare to never.

A RUNNING trial was abandoned when its worker process on this host is gone, or when its worker
(any host) stamped no heartbeat for `stale_after_s`. The next worker that opens the study marks
it FAIL (`discarded: abandoned`) and re-enqueues its params (`retry_of: N`), so the study still
reaches its total with the same points. A worker interrupted with Ctrl-C does the same for its
own trials before it exits.

A database storage (sqlite, PostgreSQL, ...) uses Optuna's own mechanism for this instead:
`RDBStorage(heartbeat_interval, grace_period, heartbeat_stale_trial_callback=
RetryHeartbeatStaleTrialCallback())` (_study.py `open_storage`). The worker records Optuna's
heartbeats for its trials, and `optuna.storages.fail_stale_trials` fails a trial whose
heartbeat is older than the grace period; the callback adds a WAITING copy with the same params
(system attributes `failed_trial`, `retry_history`), which the next claim takes. Such a failed
trial is not counted, like a discarded one, and the tables show it as abandoned and retried.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

log = logging.getLogger(__name__)


def counted(trials) -> list:
    from optuna.trial import TrialState

    retried = heartbeat_retried(trials)
    return [t for t in trials if t.state != TrialState.WAITING
            and not (t.state == TrialState.FAIL and ("discarded" in t.user_attrs
                                                     or t.number in retried))]


def heartbeat_retried(trials) -> set[int]:
    """Numbers of the trials Optuna's heartbeat failed and its retry callback queued again."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def optuna_heartbeat(study) -> bool:
    """Whether the study's storage runs Optuna's heartbeat (a database storage here)."""
    interval = getattr(study._storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def claim_lock(path: Path | None):
    """A cross-process lock on `path` (a no-op for in-memory studies)."""
    if path is None:
        return nullcontext()
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def claim(study, distributions: dict, n_trials: int, count: int, lock, reseed) -> list:
    """Up to `count` new trials of `study`, none beyond `n_trials` counted ones.

    `reseed(k)` is called before each ask with the number of trials in the study (the new
    trial's number unless a queued trial is popped), so trial k is sampled with seed + k."""
    claimed = []
    heartbeat = optuna_heartbeat(study)
    with lock:
        for _ in range(count):
            trials = study.get_trials(deepcopy=False)
            if len(counted(trials)) >= n_trials:
                break
            reseed(len(trials))
            with warnings.catch_warnings():  # "heartbeat ... used with Study.optimize": we
                warnings.simplefilter("ignore")  # record the heartbeats ourselves (Heartbeat)
                trial = study.ask(distributions)
            if heartbeat:  # a RUNNING trial without one would never go stale
                study._storage.record_heartbeat(trial._trial_id)
            trial.set_user_attr("worker", owner())
            trial.set_user_attr("heartbeat", time.time())
            if is_surplus(study, trial.number, n_trials):
                discard(study, trial.number, "surplus")
                break
            claimed.append(trial)
    return claimed


def is_surplus(study, number: int, n_trials: int) -> bool:
    """Whether more than `n_trials` counted trials have a number <= `number`."""
    return len([t for t in counted(study.get_trials(deepcopy=False))
                if t.number <= number]) > n_trials


def discard(study, number: int, reason: str) -> bool:
    """Mark a RUNNING trial FAIL with `discarded: reason`; False if it had already finished."""
    from optuna.exceptions import UpdateFinishedTrialError

    frozen = study.get_trials(deepcopy=False)[number]
    try:
        # Optuna has no public way to set an attribute of a trial by number: the storage's.
        study._storage.set_trial_user_attr(frozen._trial_id, "discarded", reason)
        study.tell(number, state=_fail())
    except (UpdateFinishedTrialError, ValueError):
        return False  # finished meanwhile (told by its worker, or discarded by another)
    return True


def _fail():
    from optuna.trial import TrialState

    return TrialState.FAIL


def release(study, trials: list) -> None:
    """Give back trials this worker will not finish (Ctrl-C): discard and re-enqueue them."""
    for trial in trials:
        frozen = study.get_trials(deepcopy=False)[trial.number]
        if not frozen.state.is_finished() and discard(study, trial.number, "abandoned"):
            study.enqueue_trial(frozen.params, user_attrs={"retry_of": trial.number})
            log.warning("trial %d abandoned: its params are queued again", trial.number)


def recover_abandoned(study, stale_after_s: float) -> list[int]:
    """Discard and re-enqueue RUNNING trials whose worker is gone; their numbers. With
    Optuna's heartbeat (a database storage): Optuna fails and retries them."""
    from optuna.trial import TrialState

    if optuna_heartbeat(study):
        return fail_stale(study)
    recovered = []
    now = time.time()
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_abandoned(frozen, now, stale_after_s):
            continue
        if discard(study, frozen.number, "abandoned"):
            study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number})
            recovered.append(frozen.number)
            log.warning("trial %d was abandoned by %s: marked FAIL, its params queued again",
                        frozen.number, frozen.user_attrs.get("worker", "an unknown worker"))
    return recovered


def fail_stale(study) -> list[int]:
    """Optuna's `fail_stale_trials`: trials whose heartbeat is older than the storage's grace
    period become FAIL and are retried by its callback; their numbers."""
    import optuna
    from optuna.trial import TrialState

    running = {t.number: t for t in
               study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if t.number in running]
    for number in failed:
        log.warning("trial %d went stale (no heartbeat from %s): Optuna marked it FAIL and "
                    "queued its params again", number,
                    running[number].user_attrs.get("worker", "an unknown worker"))
    return failed


def is_abandoned(frozen, now: float, stale_after_s: float) -> bool:
    worker = frozen.user_attrs.get("worker")
    if isinstance(worker, dict) and worker.get("host") == socket.gethostname():
        if not process_alive(worker.get("pid"), worker.get("started")):
            return True
    started = frozen.datetime_start.timestamp() if frozen.datetime_start else now
    last = frozen.user_attrs.get("heartbeat", started)
    return now - float(last) > stale_after_s


def owner() -> dict:
    """This worker: host, process id and the process's start time (to tell reused pids)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": process_start(pid)}


def process_start(pid) -> int | None:
    """A process's start time in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid, started) -> bool:
    if not isinstance(pid, int):
        return True  # unknown: leave it to the heartbeat
    if Path("/proc").is_dir() and started is not None:
        return process_start(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Heartbeat:
    """While in its `with` block, stamps `heartbeat` (unix seconds) on `trials` every
    `interval_s`, so other workers know this worker still runs them; with Optuna's heartbeat
    (a database storage), records Optuna's heartbeats instead, at the storage's interval."""

    def __init__(self, study, trials: list, interval_s: float):
        self.trials = trials
        self.interval_s = interval_s
        self.storage = study._storage if optuna_heartbeat(study) else None
        if self.storage is not None:
            self.interval_s = self.storage.get_heartbeat_interval()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.stop.wait(self.interval_s):
            for trial in self.trials:
                try:
                    if self.storage is not None:
                        self.storage.record_heartbeat(trial._trial_id)
                    else:
                        trial.set_user_attr("heartbeat", time.time())
                except Exception:  # finished meanwhile, or the storage hiccuped: next beat
                    pass
