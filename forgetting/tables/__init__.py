"""The sweep store: a sweep folder's run folders read into tables (results.parquet and .csv,
history.parquet, recency.parquet, steps.parquet), kept up to date incrementally. This is its
face: nothing outside forgetting/tables/ imports its inner modules (tests/test_layout.py).

- `announce(run_dir)`: a run names its folder in the change feed of every sweep folder above it
  that keeps tables; the runner calls it before it replaces its metrics.json, so a crash at any
  point leaves the folder where the next update re-reads it.
- `update(sweep, replace=False, full=False, only=None, scan=False)`: re-read what changed
  since the tables were written (the feed, new, gone and unfinished folders; every folder's
  files with `scan`; every folder with `full`), write the tables, return (results, swept).
- `update_after_run(sweep, run_dir, points=None)`: an array task's update, which most of the
  time leaves its folder pending and writes nothing (`Update`).
- `read(roots)`: (results, {name: per-run table}, swept keys) of the run folders under
  `roots`, from the tables and the folders that changed, writing nothing.
- `write_tables(folder, results, tables)`, `check_replace`: a merged table elsewhere
  (`collect --out`); `TableShrinks`: the refusal to replace a table by a smaller one.
- `pivot(results, swept)`, `pivot_table(results, index, columns)`, `report_failures(results)`:
  the table as text, a pivot that refuses to average over a config that differs.
- `walk(root)`, `find_runs(root)`: the run folders under a folder (listing it; globbing it).
- `pending(sweep)`, `add_pending`, `DEFER_MIN`, `DEFER_SHARE`: the feed and the array policy,
  for benchmarks that build a sweep's state by hand.

Inside: rows.py (a run folder as a row), entry.py, survey.py, manifest.py (what each folder
was), feed.py (the change feed), gather.py, columns.py (the columns and their types),
spans.py, parts.py (the per-run tables in parts), results.py (reading and writing the
tables), deferred.py (array tasks), pivots.py, trials.py (Optuna's trials merged in),
order.py (the run folders' order), temporaries.py (a killed writer's temporaries removed).
"""

from forgetting.tables.deferred import DEFER_MIN, DEFER_SHARE, Update, update_after_run
from forgetting.tables.feed import add_pending, announce, pending
from forgetting.tables.pivots import pivot, pivot_table
from forgetting.tables.results import TableShrinks, check_replace, report_failures, write_tables
from forgetting.tables.results import build_tables as read
from forgetting.tables.results import collect as update
from forgetting.tables.rows import find_runs
from forgetting.tables.survey import walk

__all__ = ["DEFER_MIN", "DEFER_SHARE", "TableShrinks", "Update", "add_pending", "announce",
           "check_replace", "pending", "pivot", "pivot_table", "read", "report_failures", "update",
           "update_after_run", "walk", "find_runs", "write_tables"]
