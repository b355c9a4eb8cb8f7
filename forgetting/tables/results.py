"""Run folders on disk -> one pandas table per sweep.

A run folder is any folder holding `metrics.json` or Hydra's `.hydra/config.yaml`; each gives
one row (forgetting/tables/rows.py). The table is
rebuilt from disk, never from memory, so it covers failed and diverged runs and folders written
by other processes; a run without readable metrics is a row with `status=failed` and its reason.
Files written into the sweep folder: `results.parquet`, `results.csv` (one row per run),
`history.parquet` (one row per run and epoch) and `recency.parquet` (the forgetting probe's
rows of every run that has them), these two as folders of parts (forgetting/tables/parts.py;
`pandas.read_parquet` reads a folder as one table). Runs of the same config (config hash) in one
sweep folder give one row, the newest finished (forgetting/runs/resume.py); writers of a folder's
tables take its `.results.lock` first.

Updates are incremental: beside the tables, `.results.manifest.parquet`
(forgetting/tables/manifest.py) records what each run folder's files were, so an update re-reads
only run folders that changed and takes the other rows from the tables written last time
(forgetting/tables/gather.py), rewriting only the parts whose runs changed. Which changed: new,
gone and unfinished run folders, and those in the change feed every run writes to
(forgetting/tables/survey.py, feed.py); `scan=True` (collect --scan) stats every run folder's
files instead, for folders changed by hand; `full=True` (collect --full) re-reads every folder
and gives the same tables. An array task re-reads only its own folder,
and writes the tables only once every DEFER_SHARE-th of the table's points has finished
(`update_after_run`, forgetting/tables/deferred.py).
"""

from __future__ import annotations

import gc
import logging
import math
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.core.errors import UserError
from forgetting.core.files import atomic_path, atomic_write_csv, atomic_write_parquet
from forgetting.core.metrics import (
    FAILED,
)
from forgetting.rundir import folders
from forgetting.tables import feed as change_feed
from forgetting.tables import manifest, parts
from forgetting.tables.gather import PER_RUN_TABLES, gather, read_old
from forgetting.tables.survey import any_run
from forgetting.tables.temporaries import remove_temporaries
from forgetting.tables.trials import merge_trials

if TYPE_CHECKING:  # pandas is imported where tables are built: it costs start-up time
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger("forgetting")


@dataclass
class Read:
    """What read_root() found in a sweep folder."""
    entries: dict[str, manifest.Entry]  # every run folder
    chosen: list[manifest.Entry]  # one per config, in the runs' order
    rows: pa.Table  # their rows of the results table
    reread: set[str]  # the run folders read
    meta: dict  # the manifest's metadata ({} when the tables are rebuilt from the folders)

    @property
    def swept(self) -> list[str]:
        lists = {id(e.swept): e.swept for e in self.chosen}  # most runs share one list
        return list(dict.fromkeys(k for keys in lists.values() for k in keys))

    def cache(self, name: str) -> tuple[dict | None, str | None]:
        """(layout of the per-run table `name`, the sweep folder as spelled with it)."""
        return self.meta.get("parts", {}).get(name), self.meta.get("root")


def read_root(root: Path, full: bool = False, replace: bool = False,
              only: list[str] | None = None, feed: list[str] | None = None) -> Read:
    """The run folders under `root` and their rows, re-reading only what changed since its
    manifest: every folder when `full`; the folders `only`, or those the change feed `feed`
    names and an update finds (forgetting/tables/manifest.py survey), when the manifest is
    usable; else those a scan finds changed."""
    old, meta = manifest.load(root)
    if not old:
        only = None  # no usable manifest: every folder is read once
    entries, reread = manifest.refresh(root, old, full=full, replace=replace, only=only,
                                       feed=feed)
    chosen = manifest.chosen(entries)  # one per config (forgetting/runs/resume.py)
    if full and reread.issuperset(entries):  # else some rows are kept from the last tables
        meta = {}
    rows = gather(root, chosen, reread, "rows", read_old(root, meta) if meta else None)
    return Read(entries, chosen, rows, reread, meta)


def results_frame(rows: list[pa.Table], roots: list[Path]) -> pd.DataFrame:
    """The results table: the runs' rows, Optuna's trials merged in, the metric columns every
    table has."""
    import pandas as pd
    import pyarrow as pa

    rows = [t for t in rows if t.num_rows]
    results = pa.concat_tables(rows, promote_options="permissive").to_pandas() if rows \
        else pd.DataFrame()
    results = merge_trials(results, roots)
    for column in ["error", "test_loss", "train_loss", "clean_train_loss", "test_acc"]:
        if column not in results:
            results[column] = None if column == "error" else math.nan
    return results


def build_tables(roots: list[Path]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """(results, {name: gathered per-run table} for PER_RUN_TABLES, swept keys) for every run
    folder under `roots`; reads only what changed since each root's manifest, writes nothing."""
    import pandas as pd
    import pyarrow as pa

    swept, gathered = [], {name: [] for name in ("rows", *PER_RUN_TABLES)}
    for root in roots:
        read = read_root(root, feed=change_feed.pending(root))
        swept += [k for k in read.swept if k not in swept]
        for name in gathered:
            table = read.rows if name == "rows" else gather(
                root, read.chosen, read.reread, name, parts.cached(root, name,
                                                                   *read.cache(name)))
            if table.num_rows:
                gathered[name].append(table)
    tables = {name: pa.concat_tables(frames, promote_options="permissive").to_pandas()
              if frames else pd.DataFrame() for name, frames in gathered.items()
              if name != "rows"}
    return results_frame(gathered["rows"], roots), tables, swept


def write_tables(folder: Path, results: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> None:
    """results.parquet/csv, history.parquet, and recency.parquet and steps.parquet when any run
    has them: a
    merged table (collect --out), each per-run table in one part."""
    import pyarrow as pa

    write_results(folder, results)
    for name, table in tables.items():
        if name == "history" or len(table):
            parts.write_whole(folder / f"{name}.parquet",
                              pa.Table.from_pandas(table, preserve_index=False))


def write_results(folder: Path, results: pd.DataFrame, *more: tuple[Path, pa.Table],
                  stamp: str | None = None) -> None:
    """results.parquet and results.csv from one conversion to arrow (pyarrow's CSV writer is
    ten times pandas' at 100,000 rows), and the `more` (path, table), each file in a thread
    of its own (pyarrow's writers release the GIL); pandas' writers for a table pyarrow cannot
    convert (a column of mixed types). `stamp`: this write's mark in the parquet files'
    metadata (manifest.stamped)."""
    import pyarrow as pa

    try:
        table = pa.Table.from_pandas(results, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        atomic_write_parquet(folder / folders.RESULTS, results)
        atomic_write_csv(folder / folders.RESULTS_CSV, results)
        table = None
    writes = [(write_arrow, path, manifest.stamped(t, stamp)) for path, t in more]
    if table is not None:  # as pandas' to_parquet writes it
        writes += [(write_arrow, folder / folders.RESULTS, manifest.stamped(table, stamp)),
                   (write_csv, folder / folders.RESULTS_CSV, table)]
    with ThreadPoolExecutor(len(writes)) as pool:
        for done in [pool.submit(*write) for write in writes]:
            done.result()


def write_csv(path: Path, table: pa.Table) -> None:
    import pyarrow.csv

    with atomic_path(path) as tmp:
        pyarrow.csv.write_csv(table, tmp)


def write_arrow(path: Path, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class TableShrinks(UserError):
    """The folder's table has more rows than the run folders give (never replaced silently)."""


def table_rows(folder: Path) -> int:
    """Rows of the results table in `folder` (0 when there is none or it is unreadable)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(folder / folders.RESULTS).num_rows
    except Exception:
        return 0


def check_replace(folder: Path, rows: int, replace: bool = False) -> None:
    """Raise TableShrinks when writing `rows` rows would replace a table that has more."""
    have = table_rows(folder)
    if rows < have and not replace:
        raise TableShrinks(f"{folder / folders.RESULTS} has {have} rows, the run folders give "
                           f"{rows}; not replaced (--replace replaces it)")


def collect(folder: Path, replace: bool = False, full: bool = False,
            only: list[str] | None = None, scan: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Update and write the tables of one sweep folder, holding the folder's `.results.lock`
    from reading to writing: of concurrent collectors (array tasks, forgetting.collect) the
    last one writes last and has seen every run finished before it started. Only run folders
    that changed since the manifest are read: new, unfinished and gone ones, and those the
    change feed names (forgetting/tables/feed.py); those whose files a stat of every run
    folder finds changed when `scan` or `replace`; every one when `full`; only the folders `only`,
    relative to `folder`, for an array task. A folder without run folders gets nothing (an
    empty frame is returned); a table is never replaced by one with fewer rows unless
    `replace` (TableShrinks)."""
    import pandas as pd
    from filelock import FileLock

    if not any_run(folder):
        return pd.DataFrame(columns=["status", "error"]), []
    with FileLock(folder / folders.TABLE_LOCK), paused_gc():
        return collect_locked(folder, replace, full, only, scan)


@contextmanager
def paused_gc():
    """Python's cyclic garbage collector off: an update makes 100,000 objects (one per run
    folder) and no cycles, and each collection walks all of them (a third of its time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collect_locked(folder: Path, replace: bool = False, full: bool = False,
                   only: list[str] | None = None, scan: bool = False
                   ) -> tuple[pd.DataFrame, list[str]]:
    """collect() for a caller that holds the folder's table lock. An update of every run
    folder (`only` None) removes a killed writer's temporaries (forgetting/tables/
    temporaries.py) and takes the change feed first (the folders array tasks left pending
    among them), so a folder added while this runs stays in it."""
    feed = None
    if only is None:  # a collect lists the sweep folder anyway; an array task lists nothing
        remove_temporaries(folder)
        feed = change_feed.take_pending(folder)
    read = read_root(folder, full=full, replace=replace, only=only,  # replace: a deliberate
                     feed=None if scan or replace else feed)  # act, every folder looked at
    results = results_frame([read.rows], [folder])
    results.attrs["folders_read"] = len(read.reread)  # run folders read for this update
    check_replace(folder, len(results), replace)
    layouts = {}
    for name in PER_RUN_TABLES if "." not in read.entries else ():  # a run folder: its own
        layout, old_root = read.cache(name)  # files are its tables; else the changed parts
        layouts[name], _ = parts.update(folder, name, read.chosen, read.reread, layout,
                                        old_root, keep_empty=name == "history")
    stamp = uuid.uuid4().hex  # the tables of this write, wherever they are copied
    write_results(folder, results, (folder / manifest.ROWS, read.rows), stamp=stamp)
    manifest.save(folder, read.entries, layouts, read.meta, stamp)
    if only is None:
        change_feed.taken(folder)
    return results, read.swept


def report_failures(results: pd.DataFrame) -> int:
    """Print one line per distinct failure reason; return the number of failed runs."""
    failed = results[results["status"] == FAILED]
    for reason, group in failed.groupby(failed["error"].fillna("unknown")):
        print(f"error: {len(group)} run(s) failed: {reason}", file=sys.stderr)
    return len(failed)
