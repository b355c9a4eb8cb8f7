"""Rebuild sweep tables from run folders on disk.

    python -m forgetting.collect DIR [DIR ...] [--out DIR]

Each DIR gets its own results.parquet, results.csv and history.parquet; with --out the runs of
all DIRs are also merged into one table there. Prints the test-loss pivot.
"""

from __future__ import annotations

import sys
from pathlib import Path

from forgetting.runs.cli import NO_RUNS, ArgumentParser, missing_folder
from forgetting.runs.results import build_tables, collect, pivot, report_failures, write_tables


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m forgetting.collect",
                            description="Rebuild sweep tables from run folders.")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders")
    parser.add_argument("--out", type=Path, help="also write a merged table here")
    args = parser.parse_args(argv)
    if missing := missing_folder(args.dirs):
        print(missing, file=sys.stderr)
        return 2
    failed = 0
    for folder in args.dirs:
        results, swept = collect(folder)
        if results.empty:
            print(f"error: DIR={str(folder)!r}: {NO_RUNS}", file=sys.stderr)
            return 2
        print(f"{folder}: {len(results)} runs -> {folder / 'results.parquet'}")
        print(pivot(results, swept))
        failed += report_failures(results)
    if args.out:
        results, tables, _ = build_tables(args.dirs)
        try:
            write_tables(args.out, results, tables)
        except OSError as e:
            print(f"error: --out={str(args.out)!r}: {e.strerror}", file=sys.stderr)
            return 2
        print(f"merged {len(results)} runs -> {args.out / 'results.parquet'}")
    return 1 if failed else 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
