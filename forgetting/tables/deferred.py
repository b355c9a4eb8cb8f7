"""An array task's table update: O(1) reads and, most of the time, no write at all.

A task that finished its run appends its run folder to the sweep folder's `.results.pending`
(under a short lock of its own), then takes the table's lock. While the pending folders are few
(fewer than DEFER_MIN, or than one in DEFER_SHARE of the table's rows) and the sweep is not
complete, the task leaves them pending and writes nothing: rewriting a 100,000-row table for
every finished point is what made arrays cost O(N) per task. Otherwise it takes every pending
folder at once, re-reads only those (forgetting/tables/manifest.py), merges them into the tables
and writes them: the table's rewrite is shared by DEFER_SHARE-th of the table's points, so a
task's amortised share stays about constant as the sweep grows.

The sweep is complete for this purpose when the table's runs with an outcome plus the pending
folders reach the sweep's point count (the array launcher knows it): the task that finishes the
array writes the complete table. Until then results.parquet may lag by the pending folders;
`python -m forgetting.collect DIR` (and analyze, plot, report, which gather from the run folders)
see every run. A task that finds nothing pending (a writer before it merged its folder) writes
nothing. The first update of a sweep folder without a table reads every folder once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forgetting.core.metrics import FAILED, FINISHED
from forgetting.rundir import folders
from forgetting.tables.feed import add_pending, pending, take_pending, taken
from forgetting.tables.results import collect_locked

DEFER_MIN = 64  # pending run folders a task may leave unmerged...
DEFER_SHARE = 100  # ... or one in this many of the table's rows, whichever is more


@dataclass
class Update:
    """What an array task's update did: wrote the tables (and read `folders_read` run
    folders), or left `pending` run folders for a later writer."""
    wrote: bool
    counts: dict[str, int] = field(default_factory=dict)  # runs per status in the table
    folders_read: int = 0
    pending: int = 0


def defer(counts: dict[str, int], waiting: int, points: int | None) -> bool:
    """Whether `waiting` pending folders may stay unmerged into a table of `counts`."""
    rows = sum(counts.values())
    if not rows:
        return False  # no table yet: the first update builds it
    done = sum(n for status, n in counts.items() if status in FINISHED or status == FAILED)
    if points is not None and done + waiting >= points:
        return False  # possibly the last point: the complete table is written
    return waiting < max(DEFER_MIN, rows // DEFER_SHARE)


def update_after_run(folder: Path, run_dir: Path, points: int | None = None) -> Update:
    """Add `run_dir` to the pending run folders of `folder`, and merge them all into its tables
    unless they may wait (`defer`; `points`: the sweep's point count, when known)."""
    from filelock import FileLock

    add_pending(folder, run_dir)
    with FileLock(folder / folders.TABLE_LOCK):
        waiting, counts = pending(folder), status_counts(folder)
        if not waiting:
            return Update(False, counts)
        if defer(counts, len(waiting), points):
            return Update(False, counts, pending=len(waiting))
        rels = take_pending(folder)
        results, _ = collect_locked(folder, only=rels)
        taken(folder)
    return Update(True, results["status"].value_counts().to_dict(),
                  results.attrs.get("folders_read", 0))


def status_counts(folder: Path) -> dict[str, int]:
    """Runs per status in the folder's results table (its status column only)."""
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(folder / folders.RESULTS, columns=["status"])["status"]
    except Exception:
        return {}
    counts = column.value_counts().to_pylist()
    return {c["values"]: c["counts"] for c in counts}
