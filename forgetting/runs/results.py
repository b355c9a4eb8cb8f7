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
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.experimental.callback import Callback

from forgetting.core.errors import UserError
from forgetting.core.files import atomic_write_csv, atomic_write_parquet
from forgetting.core.metrics import (
    ABANDONED,
    FAILED,
    FINISHED,
    OK,
)
from forgetting.runs import folders, tracking
from forgetting.runs.resume import latest_runs
from forgetting.runs.rows import KEY_COLUMNS, find_runs, read_run

if TYPE_CHECKING:  # pandas is imported where tables are built: it costs start-up time
    import pandas as pd

log = logging.getLogger("forgetting")

# per-run tables gathered into one per sweep, with the run's key columns in front
PER_RUN_TABLES = ("history", "recency")


def build_tables(roots: list[Path]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], list[str]]:
    """(results, {name: gathered per-run table} for PER_RUN_TABLES, swept keys) for every run
    folder under `roots`."""
    import pandas as pd

    rows, swept = [], []
    gathered: dict[str, list] = {name: [] for name in PER_RUN_TABLES}
    for root in roots:
        for run_dir in latest_runs(find_runs(root)):  # one per config (forgetting/runs/resume.py)
            row, keys = read_run(run_dir)
            rows.append(row)
            swept += [k for k in keys if k not in swept]
            extra = ["trial"] if row.get("trial") is not None else []  # Optuna's
            columns = KEY_COLUMNS + [k for k in keys if k not in KEY_COLUMNS] + extra
            for name, frames in gathered.items():
                path = run_dir / f"{name}.parquet"
                if not path.is_file():
                    continue
                try:
                    table = pd.read_parquet(path)
                except Exception:
                    continue
                for column in columns:
                    if column not in table:
                        table.insert(0, column, [row.get(column)] * len(table))
                table["run_dir"] = row["run_dir"]
                frames.append(table)
    results = merge_trials(pd.DataFrame(rows), roots)
    for column in ["error", "test_loss", "train_loss", "clean_train_loss", "test_acc"]:
        if column not in results:
            results[column] = None if column == "error" else math.nan
    tables = {name: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
              for name, frames in gathered.items()}
    return results, tables, swept


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


def write_tables(folder: Path, results: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> None:
    """results.parquet/csv, history.parquet, and recency.parquet when any run has a probe."""
    atomic_write_parquet(folder / folders.RESULTS, results)
    atomic_write_csv(folder / folders.RESULTS_CSV, results)
    for name, table in tables.items():
        if name == "history" or not table.empty:
            atomic_write_parquet(folder / f"{name}.parquet", table)


def pivot(results: pd.DataFrame, swept: list[str], value: str = "test_loss") -> str:
    """Text pivot of `value` (subset x lr; other swept keys join the rows); non-ok runs by
    their status. Several runs in one cell (seeds) show the mean of the ok ones."""
    if results.empty or "lr" not in results or "subset" not in results:
        return "(no runs)"
    rows = ["subset"] + [k for k in swept if k not in ("lr", "subset", "seed")
                         and k in results and results[k].nunique(dropna=False) > 1]

    def cell(group: pd.DataFrame) -> str:
        ok = group[group["status"] == OK][value].dropna()
        if len(ok):
            return f"{ok.mean():.4f}" + ("*" if len(ok) < len(group) else "")
        return "/".join(sorted(set(group["status"])))

    frame = results.copy()
    for key in rows + ["lr"]:
        frame[key] = frame[key].astype(str) if frame[key].dtype == object else frame[key]
    table = frame.groupby(rows + ["lr"], dropna=False).apply(cell, include_groups=False)
    table = table.unstack("lr")
    note = "  (* some runs in the cell were not ok)" if table.map(
        lambda s: isinstance(s, str) and s.endswith("*")).any().any() else ""
    return f"{value} by {' x '.join(rows)} (rows) and lr (columns){note}\n{table.to_string()}"


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


def collect(folder: Path, replace: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Rebuild and write the tables of one sweep folder, holding the folder's `.results.lock`
    from reading to writing: of concurrent collectors (array tasks, forgetting.collect) the
    last one writes last and has seen every run finished before it started. A folder without
    run folders gets nothing (an empty frame is returned); a table is never replaced by one
    with fewer rows unless `replace` (TableShrinks)."""
    import pandas as pd
    from filelock import FileLock

    if not find_runs(folder):
        return pd.DataFrame(columns=["status", "error"]), []
    with FileLock(folder / folders.TABLE_LOCK):
        results, tables, swept = build_tables([folder])
        check_replace(folder, len(results), replace)
        write_tables(folder, results, tables)
    return results, swept


def report_failures(results: pd.DataFrame) -> int:
    """Print one line per distinct failure reason; return the number of failed runs."""
    failed = results[results["status"] == FAILED]
    for reason, group in failed.groupby(failed["error"].fillna("unknown")):
        print(f"error: {len(group)} run(s) failed: {reason}", file=sys.stderr)
    return len(failed)


class ResultsTable(Callback):
    """Hydra callback: at the end of a multirun, build the sweep's table and print the pivot.

    Exits with code 1 (after writing the table) when any run failed.
    """

    def on_multirun_end(self, config, **kwargs) -> None:
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
        if report_failures(results):
            raise SystemExit(1)
