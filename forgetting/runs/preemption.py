"""Stop a run cleanly when the scheduler asks, so that it can be requeued and resume.

Signals: SIGTERM (SLURM's kill at a time limit, pre-emption, `scancel`, `scontrol requeue`),
SIGUSR1 (`sbatch --signal=B:USR1@120`: a warning before the time limit; the array launcher's
`requeue`), SIGUSR2 (what submitit asks SLURM to send, `--signal=USR2@120`), SIGINT (Ctrl-C:
the run stops the same way, resumable, exit code 130, no traceback).

While a run trains (`watch()`), these signals only set a flag; the training loop polls
`requested()` before every step, saves the run's checkpoint and raises `Preempted`
(forgetting/core/checkpoint.py). forgetting.run then calls `hand_over(signum)`: the handler that was
installed before ours gets the signal, as if it had been delivered to it:
- in a submitit job, submitit's own (`checkpoint_and_try_requeue` for SIGUSR2): it calls the
  hydra-submitit launcher's `checkpoint`, which resubmits the same job (same overrides, same
  job number, hence the same run folder), runs `scontrol requeue` and exits;
- under `hydra/launcher=array` with `requeue: true` in a SLURM job, the launcher's SIGUSR1
  handler: `scontrol requeue $SLURM_JOB_ID`, then exit;
- otherwise (the default action, or Python's KeyboardInterrupt for SIGINT) nothing, and the
  process exits with 128 + signum.
A signal that arrives after a run's last step lets that run finish and write its results; the
flag stays set, so the process's next run (a sequential sweep) stops before it starts. Outside
`watch()` the signals keep their usual action.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)

_received: int | None = None  # the first of SIGNALS this process got while watching
_previous: dict[int, object] = {}  # the handlers ours replaced


def _flag(signum: int, frame: object) -> None:
    global _received
    if _received is None:
        _received = signum


def requested() -> bool:
    """True once one of SIGNALS arrived while a run was being watched."""
    return _received is not None


def received() -> int | None:
    return _received


@contextmanager
def watch():
    """Within the block, SIGNALS set the flag instead of their usual action. Only in the main
    thread (Python delivers signals there); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _previous.update(previous)
    for signum in SIGNALS:
        signal.signal(signum, _flag)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def hand_over(signum: int) -> None:
    """Give the signal to the handler ours replaced (submitit's, the array launcher's), then
    exit with 128 + signum. That handler may exit first (submitit: after requeueing)."""
    handler = _previous.get(signum)
    if callable(handler) and handler is not signal.default_int_handler:  # no traceback
        handler(signum, None)
    raise SystemExit(128 + signum)
