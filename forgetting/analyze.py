"""`python -m forgetting.analyze DIR [DIR ...]`: what a sweep shows, as text, verdict.json and
verdict.txt (forgetting/analysis/analyze.py says what and how)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from forgetting.analysis.analyze import Thresholds, analyze
from forgetting.analysis.text import render
from forgetting.core.files import atomic_write_json, atomic_write_text
from forgetting.runs.cli import NO_RUNS, ArgumentParser, missing_folder, nothing_finished


def main(argv: list[str] | None = None) -> int:
    defaults = Thresholds()
    parser = ArgumentParser(prog="python -m forgetting.analyze",
                            description="What a sweep shows: optimal LR factors, "
                                        "instability onset, verdict, probe.")
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders (merged)")
    parser.add_argument("--out", type=Path, help="folder for verdict.json/.txt (first DIR)")
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value)
    args = parser.parse_args(argv)
    if missing := missing_folder(args.dirs):
        print(missing, file=sys.stderr)
        return 2
    th = Thresholds(**{k: getattr(args, k) for k in asdict(defaults)})
    for key in ("jump", "jump_abs", "within", "bin", "fit", "edge_ratio", "onset_ratio"):
        if not getattr(th, key) > 0:
            print(f"error: --{key.replace('_', '-')}={getattr(th, key)!r}: must be > 0",
                  file=sys.stderr)
            return 2
    for key in ("edge_gap", "shift", "min_seeds"):
        if not getattr(th, key) >= 1:
            print(f"error: --{key.replace('_', '-')}={getattr(th, key)!r}: must be >= 1",
                  file=sys.stderr)
            return 2
    if why := nothing_finished(args.dirs):  # nothing written
        print(f"error: DIR={str(args.dirs[0])!r}: nothing to judge: {why}", file=sys.stderr)
        return 2
    report = analyze(args.dirs, th)
    if report["runs"] == 0:
        print(f"error: DIR={str(args.dirs[0])!r}: {NO_RUNS}", file=sys.stderr)
        return 2
    text = render(report)
    out = args.out or args.dirs[0]
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "verdict.json", report)
        atomic_write_text(out / "verdict.txt", text)
    except OSError as e:
        print(f"error: --out={str(out)!r}: {e.strerror}", file=sys.stderr)
        return 2
    print(text, end="")
    print(f"written: {out / 'verdict.json'}, {out / 'verdict.txt'}")
    return 0


def cli() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    cli()
