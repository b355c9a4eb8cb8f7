"""Rebuild sweep tables from run folders on disk.

    python -m forgetting.collect DIR [DIR ...] [--out DIR] [--replace] [--scan] [--full]

Each DIR gets its own results.parquet, results.csv and history.parquet; with --out the runs of
all DIRs are also merged into one table there. Prints the test-loss pivot. A folder without run
folders gets no table, and a table is never replaced by one with fewer rows (run folders were
deleted or moved) unless --replace: one `error:` line, exit code 2, the table kept.

Collecting is incremental: only run folders that changed since the last collect are read again
(`.results.manifest.parquet`, forgetting/tables/manifest.py): new, unfinished and deleted ones,
and those whose runs wrote since (every run adds its folder to the change feed,
`.results.pending`). A finished run folder changed by other means than a run (files edited or
copied over by hand) is seen by --scan, a stat of every run folder's files; --full reads every
run folder and gives the same tables. An ok row is never replaced by the failed row of a damaged
metrics.json (one `warning:` line names the file) unless --replace (which scans).
"""

from __future__ import annotations

import sys
from pathlib import Path

from forgetting.core.errors import UserError
from forgetting.runs.cli import NO_RUNS, ArgumentParser, missing_folder
from forgetting.tables import (
    check_replace,
    pivot,
    report_failures,
    write_tables,
)
from forgetting.tables import read as build_tables
from forgetting.tables import update as collect


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m forgetting.collect",
                            description="Update sweep tables from run folders.")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders")
    parser.add_argument("--out", type=Path, help="also write a merged table here")
    parser.add_argument("--replace", action="store_true",
                        help="replace a table even when the run folders give fewer rows, "
                        "and an ok row by the failed row of a damaged metrics.json")
    parser.add_argument("--scan", action="store_true",
                        help="look at every run folder's files (changed by other means than "
                        "a run)")
    parser.add_argument("--full", action="store_true",
                        help="read every run folder again (the same tables as an update)")
    args = parser.parse_args(argv)
    if missing := missing_folder(args.dirs):
        print(missing, file=sys.stderr)
        return 2
    failed = 0
    for folder in args.dirs:
        try:
            results, swept = collect(folder, replace=args.replace, full=args.full,
                                     scan=args.scan)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if results.empty:
            print(f"error: DIR={str(folder)!r}: {NO_RUNS}", file=sys.stderr)
            return 2
        print(f"{folder}: {len(results)} runs -> {folder / 'results.parquet'}")
        print(pivot(results, swept))
        failed += report_failures(results)
    if args.out:
        results, tables, _ = build_tables(args.dirs)
        try:
            check_replace(args.out, len(results), args.replace)
            write_tables(args.out, results, tables)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"error: --out={str(args.out)!r}: {e.strerror}", file=sys.stderr)
            return 2
        print(f"merged {len(results)} runs -> {args.out / 'results.parquet'}")
    return 1 if failed else 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
