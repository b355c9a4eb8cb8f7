"""`python -m forgetting.plot DIR [DIR ...]`: the figures (PNG) of one or more sweeps
(forgetting/analysis/plot.py draws them)."""

from __future__ import annotations

import sys
from pathlib import Path

from forgetting.analysis.analyze import Thresholds
from forgetting.analysis.plot import plot
from forgetting.runs.cli import ArgumentParser, missing_folder, nothing_finished


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m forgetting.plot",
                            description="Figures (PNG) of one or more sweeps.")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders (merged)")
    parser.add_argument("--out", type=Path, help="folder for the PNGs (default DIR/figures)")
    parser.add_argument("--bin", type=float, default=Thresholds.bin,
                        help="probe curve bin width in epochs")
    parser.add_argument("--target-acc", type=float,
                        help="the accuracy line of recipes.png (default: the runs' target_acc)")
    args = parser.parse_args(argv)
    if missing := missing_folder(args.dirs):
        print(missing, file=sys.stderr)
        return 2
    if not args.bin > 0:
        print(f"error: --bin={args.bin!r}: must be > 0", file=sys.stderr)
        return 2
    if why := nothing_finished(args.dirs):  # nothing written, not even figures/
        print(f"error: DIR={str(args.dirs[0])!r}: nothing to draw: {why}", file=sys.stderr)
        return 2
    out = args.out or args.dirs[0] / "figures"
    try:  # out/ is created only when there is a figure to write into it
        written, skipped = plot(args.dirs, out, args.bin, args.target_acc)
    except OSError as e:
        print(f"error: --out={str(out)!r}: {e.strerror}", file=sys.stderr)
        return 2
    for line in skipped:  # e.g. "lr_subset.png: not drawn (1 LR factor × 2 subsets ...)"
        print(line)
    if not written:
        print(f"error: DIR={str(args.dirs[0])!r}: nothing to plot (no runs, or one run "
              "without a probe)", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
