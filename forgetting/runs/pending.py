"""An array task's table update: O(1) reads per task, and no queue of tasks each rewriting the
whole table.

A task that finished its run appends its run folder to the sweep folder's `.results.pending`
(under a short lock of its own), then takes the table's lock. Whoever holds the table's lock
takes every pending folder at once, re-reads only those (forgetting/runs/manifest.py), merges
them into the tables and writes them. A task that finds nothing pending once it holds the lock
(a task before it merged its folder) writes nothing. So the last task to finish leaves the
complete table, the tables are written at most once per task and usually far less (tasks
finishing while one writes are merged together), and no task lists or reads the sweep's other
run folders. The first update of a sweep folder without a manifest reads every folder once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.runs import folders

if TYPE_CHECKING:
    import pandas as pd

TAKING = folders.PENDING + ".taking"  # taken by the writer; left by one that crashed


def add_pending(folder: Path, run_dir: Path) -> None:
    from filelock import FileLock

    rel = os.path.relpath(run_dir, folder)
    with FileLock(folder / (folders.PENDING + ".lock")):
        with open(folder / folders.PENDING, "a") as f:
            f.write(rel + "\n")


def take_pending(folder: Path) -> list[str]:
    """The pending run folders (moved to TAKING until the tables are written)."""
    from filelock import FileLock

    with FileLock(folder / (folders.PENDING + ".lock")):
        try:
            text = (folder / folders.PENDING).read_text()
        except FileNotFoundError:
            text = ""
        if text:
            with open(folder / TAKING, "a") as f:
                f.write(text)
            (folder / folders.PENDING).unlink()
    try:
        lines = (folder / TAKING).read_text().splitlines()
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(line for line in lines if line))


def update_after_run(folder: Path, run_dir: Path) -> pd.DataFrame | None:
    """Merge `run_dir` (and every other pending run folder) into `folder`'s tables. Returns
    the results table when this task wrote it, None when an earlier writer had merged it."""
    from filelock import FileLock

    from forgetting.runs.results import collect_locked

    add_pending(folder, run_dir)
    with FileLock(folder / folders.TABLE_LOCK):
        rels = take_pending(folder)
        if not rels:
            return None
        results, _ = collect_locked(folder, only=rels)
        (folder / TAKING).unlink(missing_ok=True)
    return results


def status_counts(folder: Path) -> dict[str, int]:
    """Runs per status in the folder's results table (its status column only)."""
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(folder / folders.RESULTS, columns=["status"])["status"]
    except Exception:
        return {}
    counts = column.value_counts().to_pylist()
    return {c["values"]: c["counts"] for c in counts}
