"""Claims: a run folder is trained by one process at a time.

Before training, a job claims its run folder: it creates `.claim` there and takes an exclusive
`flock` on it, then writes its host and pid into it (for messages). The lock is the claim: the
kernel drops it when the process ends, however it ends (SIGKILL included), so a claim is never
stale; on a clean exit the file is removed too. A second process (an identical sweep started
into the same folder, an array submitted twice) finds the lock held and skips the point; the
table shows a point whose claim is held as `running` rather than `failed`.

File systems without `flock` (some cluster mounts) give no claims: the run goes ahead as before.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from forgetting.rundir.folders import CLAIM

log = logging.getLogger("forgetting")



class Claim:
    """The held claim of one run folder; `release()` (or the process's end) gives it back."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # before unlocking: a waiter then finds its inode stale
        except OSError:
            pass
        os.close(self.fd)  # drops the lock
        self.fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(run_dir: Path, attempts: int = 5) -> Claim | None:
    """Claim `run_dir`: a held Claim, or None when another live process holds it.

    A few attempts ride over a collector's momentary test of the lock (`holder`)."""
    path = run_dir / CLAIM
    run_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(attempts):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                time.sleep(0.05 * (attempt + 1))
                continue
            log.debug("no claim on %s (%s): flock unsupported", run_dir, e)
            return Claim(path, None)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # released and removed by its holder between our open and lock: again
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
        return Claim(path, fd)
    return None


def holder(run_dir: Path) -> dict | None:
    """Who holds `run_dir`'s claim ({"host", "pid"}), or None when no live process does."""
    path = run_dir / CLAIM
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            try:
                who = json.loads(Path(path).read_text() or "{}")
            except (OSError, ValueError):
                who = {}
            return who if isinstance(who, dict) else {}
        return None
    finally:
        os.close(fd)  # also drops a shared lock we took
