"""`python -m forgetting.report DIR [DIR ...]`: one self-contained report.html of a sweep
(forgetting/analysis/report.py says what it holds)."""

from __future__ import annotations

import sys
from pathlib import Path

from forgetting.analysis.report import REPORT, build
from forgetting.runs.cli import ArgumentParser, missing_folder, nothing_finished


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m forgetting.report",
                            description="One self-contained HTML page of a sweep: verdict, "
                                        "figures, tables, command, provenance.")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders (merged)")
    parser.add_argument("--out", type=Path, help=f"the HTML file (default DIR/{REPORT}); its "
                                                 "figures go to figures/ beside it")
    args = parser.parse_args(argv)
    if missing := missing_folder(args.dirs):
        print(missing, file=sys.stderr)
        return 2
    if why := nothing_finished(args.dirs):  # nothing written
        print(f"error: DIR={str(args.dirs[0])!r}: nothing to report: {why}", file=sys.stderr)
        return 2
    out = args.out or args.dirs[0] / REPORT
    if out.suffix != ".html":
        print(f"error: --out={str(out)!r}: must end in .html", file=sys.stderr)
        return 2
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        build(args.dirs, out)
    except OSError as e:
        print(f"error: --out={str(out)!r}: {e.strerror}", file=sys.stderr)
        return 2
    print(out)
    return 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
