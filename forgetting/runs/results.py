"""Run folders on disk -> one pandas table per sweep.

A run folder is any folder holding `metrics.json` or Hydra's `.hydra/config.yaml`; each gives
one row (forgetting/runs/rows.py). The table is
rebuilt from disk, never from memory, so it covers failed and diverged runs and folders written
by other processes; a run without readable metrics is a row with `status=failed` and its reason.
Files written into the sweep folder: `results.parquet`, `results.csv` (one row per run),
`history.parquet` (one row per run and epoch) and `recency.parquet` (the forgetting probe's
rows of every run that has them). Runs of the same config (config hash) in one
sweep folder give one row, the newest finished (forgetting/runs/resume.py); writers of a folder's
tables take its `.results.lock` first.

Updates are incremental: beside the tables, `.results.manifest.parquet`
(forgetting/runs/manifest.py) records what each run folder's files were, so an update re-reads
only run folders that changed (a stat of each, a read of the changed) and takes the other rows
from the tables written last time (forgetting/runs/gather.py); `full=True` (collect --full)
re-reads every folder and gives the same tables. An array task re-reads only its own folder,
and writes the tables only once every DEFER_SHARE-th of the table's points has finished
(`update_after_run`, forgetting/runs/pending.py).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.experimental.callback import Callback

from forgetting.core.errors import UserError
from forgetting.core.files import atomic_path, atomic_write_csv, atomic_write_parquet
from forgetting.core.metrics import (
    ABANDONED,
    FAILED,
    FINISHED,
)
from forgetting.runs import folders, manifest, pending, tracking
from forgetting.runs.gather import PER_RUN_TABLES, gather, read_old
from forgetting.runs.pivots import pivot, pivot_table  # noqa: F401  (the table's pivots)

if TYPE_CHECKING:  # pandas is imported where tables are built: it costs start-up time
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger("forgetting")


def read_root(root: Path, full: bool = False, replace: bool = False,
              only: list[str] | None = None):
    """(entries, {"rows": rows, name: gathered table for PER_RUN_TABLES} as arrow tables,
    swept keys, the run folders read) of the run folders under `root`, re-reading only what
    changed since its manifest (everything when `full`; only the folders `only` when the
    manifest is usable)."""
    old, meta = manifest.load(root)
    if not old:
        only = None  # no usable manifest: every folder is read once
    entries, reread = manifest.refresh(root, old, full=full, replace=replace, only=only)
    chosen = manifest.chosen(entries)  # one per config (forgetting/runs/resume.py)
    every = full and reread.issuperset(entries)  # else some rows are kept from the last tables
    tables = {name: gather(root, chosen, reread, name, None if every else
                           read_old(root, name, meta)) for name in ("rows", *PER_RUN_TABLES)}
    swept = list(dict.fromkeys(k for e in chosen for k in e.swept))
    return entries, tables, swept, reread


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
        _, tables, root_swept, _ = read_root(root)
        swept += [k for k in root_swept if k not in swept]
        for name, table in tables.items():
            if table.num_rows:
                gathered[name].append(table)
    tables = {name: pa.concat_tables(frames, promote_options="permissive").to_pandas()
              if frames else pd.DataFrame() for name, frames in gathered.items()
              if name != "rows"}
    return results_frame(gathered["rows"], roots), tables, swept


def merge_trials(results: pd.DataFrame, roots: list[Path]) -> pd.DataFrame:
    """Add each Optuna trial's state, params, values and duration to its run's row."""
    import pandas as pd

    frames = [pd.read_parquet(root / folders.OPTUNA_TRIALS) for root in roots
              if (root / folders.OPTUNA_TRIALS).is_file()]
    if not frames or "trial" not in results:
        return results
    trials = pd.concat(frames, ignore_index=True).drop_duplicates(["study", "trial"], keep="last")
    trials = trials.rename(columns={"discarded": "trial_discarded", "retry_of": "trial_retry_of",
                                    "note": "trial_note"})
    results["trial"] = results["trial"].astype("Int64")
    trials["trial"] = trials["trial"].astype("Int64")
    return mark_abandoned(results.merge(trials, on=["study", "trial"], how="left"), trials)


def mark_abandoned(results: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Unfinished runs of trials abandoned by their worker (killed): status `abandoned`, and
    which trial retried their params; not failures of the sweep."""
    if "trial_discarded" not in results or "trial_retry_of" not in trials:
        return results
    retried = {(s, int(r)): int(n) for s, r, n in
               zip(trials["study"], trials["trial_retry_of"], trials["trial"]) if r == r
               and r is not None}
    results["error"] = results.get("error", None)
    results["error"] = results["error"].astype(object)
    for i in results.index[(results["trial_discarded"] == ABANDONED)
                           & ~results["status"].isin(FINISHED)]:
        retry = retried.get((results.at[i, "study"], int(results.at[i, "trial"])))
        results.loc[i, "status"] = ABANDONED
        results.loc[i, "error"] = (f"abandoned by its worker; retried as trial {retry}"
                                   if retry is not None else "abandoned by its worker")
    return results


def write_tables(folder: Path, results: pd.DataFrame,
                 tables: dict[str, pd.DataFrame | pa.Table]) -> None:
    """results.parquet/csv, history.parquet, and recency.parquet when any run has a probe."""
    atomic_write_parquet(folder / folders.RESULTS, results)
    write_csv(folder / folders.RESULTS_CSV, results)
    for name, table in tables.items():
        if name != "history" and not len(table):
            continue
        if hasattr(table, "to_parquet"):  # pandas (a merged table, collect --out)
            atomic_write_parquet(folder / f"{name}.parquet", table)
        else:
            write_arrow(folder / f"{name}.parquet", table)


def write_csv(path: Path, results: pd.DataFrame) -> None:
    """results.csv through pyarrow's writer (ten times pandas' at 100,000 rows); pandas' for a
    table pyarrow cannot convert (a column of mixed types)."""
    import pyarrow as pa
    import pyarrow.csv

    try:
        table = pa.Table.from_pandas(results, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        atomic_write_csv(path, results)
        return
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
            only: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Update and write the tables of one sweep folder, holding the folder's `.results.lock`
    from reading to writing: of concurrent collectors (array tasks, forgetting.collect) the
    last one writes last and has seen every run finished before it started. Only run folders
    that changed since the manifest are read (every one when `full`; only the folders `only`,
    relative to `folder`, for an array task). A folder without run folders gets nothing (an
    empty frame is returned); a table is never replaced by one with fewer rows unless
    `replace` (TableShrinks)."""
    import pandas as pd
    from filelock import FileLock

    if not manifest.any_run(folder):
        return pd.DataFrame(columns=["status", "error"]), []
    with FileLock(folder / folders.TABLE_LOCK):
        return collect_locked(folder, replace, full, only)


def collect_locked(folder: Path, replace: bool = False, full: bool = False,
                   only: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """collect() for a caller that holds the folder's table lock. A scan of every run folder
    (`only` None) also covers the folders array tasks left pending (forgetting/runs/pending.py):
    they are taken first, so a folder added while this runs stays pending."""
    if only is None:
        pending.take_pending(folder)
    entries, tables, swept, reread = read_root(folder, full=full, replace=replace, only=only)
    rows = tables.pop("rows")
    results = results_frame([rows], [folder])
    results.attrs["folders_read"] = len(reread)  # run folders read for this update
    check_replace(folder, len(results), replace)
    write_tables(folder, results, tables)
    write_arrow(folder / manifest.ROWS, rows)
    manifest.save(folder, entries)
    if only is None:
        pending.taken(folder)
    return results, swept


def report_failures(results: pd.DataFrame) -> int:
    """Print one line per distinct failure reason; return the number of failed runs."""
    failed = results[results["status"] == FAILED]
    for reason, group in failed.groupby(failed["error"].fillna("unknown")):
        print(f"error: {len(group)} run(s) failed: {reason}", file=sys.stderr)
    return len(failed)


_failed_runs = 0  # failed runs in the table of this process's last sweep


def sweep_failures() -> int:
    """How many runs of this process's last sweep failed (forgetting.run then exits 1)."""
    return _failed_runs


class ResultsTable(Callback):
    """Hydra callback: at the end of a multirun, build the sweep's table and print the pivot.

    Failed runs are reported (one line per reason) and counted, not raised: the callbacks
    after this one still run (the sweep's report), and forgetting.run exits with code 1.
    """

    def on_multirun_end(self, config, **kwargs) -> None:
        global _failed_runs

        if str(config.hydra.launcher.get("_target_", "")).endswith(".ArrayLauncher"):
            return  # an array task: its launcher rebuilt the table and reports its own point
        folder = Path(config.hydra.sweep.dir)
        try:
            results, swept = collect(folder)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        counts = results["status"].value_counts().to_dict()
        print(f"\n{len(results)} runs ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
              f"table: {folder / folders.RESULTS}")
        table = pivot(results, swept)
        print(table)
        tracking.log_sweep(config, folder, results, table)  # the trackers' parent run
        _failed_runs = report_failures(results)
