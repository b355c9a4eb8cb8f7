"""What a sweep's tables cost as the sweep grows to cluster scale.

    python -m forgetting.bench --scale [--quick] [--sizes 1000 10000 100000] [--json FILE]

One real tiny run is trained first (synthetic data, a few seconds); for each size N a temporary
sweep folder is filled with N finished run folders made from it (its metrics.json with a config
hash, LR factor, subset and seed of its own; its history tiled to `--epochs` epochs; Hydra's
three files), as a cluster sweep leaves them. Then, each in a fresh process (the time is the
operation's alone, imports done before the clock), with the page cache warm from writing:

- full collect: the first `collect` of the folder (no manifest: every run folder read);
- one changed: `collect` after one point's metrics.json was rewritten by a run (an update: the
  run's folder is in the change feed);
- one scanned: `collect --scan` after one point's metrics.json was rewritten by hand (not in the
  change feed: a stat of every run folder finds it);
- array task: an array task's update after its point was rewritten (forgetting/tables/deferred.py):
  its folder left pending, nothing read or written;
- array merge: the update of the task that merges the pending folders (as many as a task may
  leave, max(DEFER_MIN, N / DEFER_SHARE), or N when fewer: here the sweep's last task), with the
  run folders it read; an array's amortised cost per task is (merge + (k - 1) tasks) / k;
- analyze, plot: the commands `python -m forgetting.analyze|plot` on the collected folder (wall
  time with their start-up, a few seconds of imports).

Memory: the process's peak resident memory during the operation (its imports included: pandas,
pyarrow, torch through the config schema), and how far it rose above the resident memory before.

The growth exponent of each is the slope of log(seconds) against log(N) (1: linear, 0: flat);
the per-point cost of the full collect grows with slope - 1. A measurement, not a test: nothing
asserts a time. docs/benchmarks.md and docs/scale.md have the figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from forgetting.bench.sweeps import fabricate, leave_pending, rewrite, template_run
from forgetting.runs.cli import ArgumentParser

MEASURES = ["full", "one_changed", "one_scan", "array_task", "array_merge", "analyze", "plot"]


def measure(op: str, sweep: Path, n: int) -> dict:
    """Run one measure in this process; seconds, peak memory and the run folders read (as
    the update reports them)."""
    import filelock  # noqa: F401  (imports before the clock: the operation alone is timed)
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from forgetting import tables

    if op in ("analyze", "plot"):  # the commands, as a user runs them (bench/ does not
        return command(op, sweep)   # import analysis/)
    baseline_mb = rss_mb("VmRSS")
    reset_peak()
    start = time.perf_counter()  # imports done: the operation alone
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if op in ("full", "one_changed", "one_scan"):
            results, _ = tables.update(sweep, scan=op == "one_scan")
            read = results.attrs.get("folders_read", 0)
        elif op == "array_task":
            read = tables.update_after_run(sweep, sweep / str(n // 3)).folders_read
        elif op == "array_merge":  # the sweep's last task: its update merges what is pending
            read = tables.update_after_run(sweep, sweep / str(n // 4), points=n).folders_read
    seconds = time.perf_counter() - start
    peak_mb = rss_mb("VmHWM")
    return {"s": seconds, "peak_mb": peak_mb, "imports_mb": baseline_mb,
            "folders_read": read}


def command(op: str, sweep: Path) -> dict:
    """`python -m forgetting.analyze|plot SWEEP`: wall time (start-up included) and the
    command's peak memory."""
    from forgetting.bench.runs import _env

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", f"forgetting.{op}", str(sweep)], env=_env(),
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out = {"s": seconds, "peak_mb": peak_mb, "imports_mb": math.nan, "folders_read": -1}
    if proc.returncode not in (0, 1):
        out["error"] = (proc.stderr.strip().splitlines() or [""])[-1]
    return out


def rss_mb(field: str) -> float:
    """The process's resident memory (VmRSS) or its peak since reset_peak (VmHWM), in MB;
    getrusage's high-water mark where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start VmHWM again from the current resident memory (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def in_process(op: str, sweep: Path, n: int) -> dict:
    """measure() in a fresh process (its own peak memory)."""
    from forgetting.bench.runs import _env

    cmd = [sys.executable, "-m", "forgetting.bench.scale", "--measure", op, str(sweep), str(n)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        return {"s": math.nan, "peak_mb": math.nan, "folders_read": -1,
                "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(size)."""
    pts = [(math.log(n), math.log(s)) for n, s in zip(sizes, seconds) if s == s and s > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def run_size(template: Path, n: int, epochs: int, base: Path) -> dict:
    sweep = base / f"sweep-{n}"
    start = time.perf_counter()
    fabricate(template, sweep, n, epochs)
    out = {"points": n, "fabricate_s": time.perf_counter() - start}
    for op in MEASURES:
        if op == "one_changed":
            rewrite(sweep / str(n // 2))
        elif op == "one_scan":
            rewrite(sweep / str(n // 2 + 1), announce=False)
        elif op == "array_task":
            rewrite(sweep / str(n // 3))
        elif op == "array_merge":
            out["merged"] = leave_pending(sweep, n)
        out[op] = in_process(op, sweep, n)
    out["table_mb"] = {p.name: size_mb(p) for p in sweep.iterdir()
                       if p.name.endswith((".parquet", ".csv"))}
    shutil.rmtree(sweep, ignore_errors=True)
    return out


def size_mb(path: Path) -> float:
    """A file's size, or a folder's (a table in parts), in MB."""
    files = [path] if path.is_file() else [p for p in path.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2 ** 20


def main(argv: list[str] | None = None) -> dict:
    parser = ArgumentParser(prog="python -m forgetting.bench --scale",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 250, 1000, 2000")
    parser.add_argument("--sizes", type=int, nargs="+", help="numbers of points")
    parser.add_argument("--epochs", type=int, default=24, help="history rows per point")
    parser.add_argument("--dir", type=Path, help="where to fabricate (default: a temporary "
                        "folder; the file system measured)")
    parser.add_argument("--template", type=Path, help="a finished run folder to copy instead "
                        "of training one")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = args.sizes or ([250, 1000, 2000] if args.quick else [1000, 10000, 100000])
    if min(sizes) < 4:
        parser.error(f"--sizes={min(sizes)}: must be >= 4")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        template = args.template or template_run(Path(tmp) / "template")
        print(f"{'points':>7} {'full collect':>17} {'one changed':>12} {'--scan':>8} "
              f"{'array task':>11} "
              f"{'array merge':>18} {'per task':>9} {'analyze':>8} {'plot':>8} "
              f"{'collect peak MB':>16}")
        results = []
        for n in sizes:
            r = run_size(template, n, args.epochs, Path(tmp))
            results.append(r)
            full = r["full"]
            k, task, merge = r["merged"], r["array_task"], r["array_merge"]
            r["array_amortised_s"] = (merge["s"] + (k - 1) * task["s"]) / k
            print(f"{n:>7} {full['s']:>7.2f} s ({1e3 * full['s'] / n:.2f} ms/pt) "
                  f"{r['one_changed']['s']:>10.2f} s {r['one_scan']['s']:>6.2f} s "
                  f"{task['s']:>9.3f} s "
                  f"{merge['s']:>7.2f} s ({merge['folders_read']} read) "
                  f"{r['array_amortised_s']:>7.3f} s {r['analyze']['s']:>6.2f} s "
                  f"{r['plot']['s']:>6.2f} s "
                  f"{full['peak_mb']:>8.0f} ({full['peak_mb'] - full['imports_mb']:.0f} "
                  "above imports)", flush=True)
        print("table files at the largest size (MB): " + ", ".join(
            f"{name} {mb:.1f}" for name, mb in sorted(results[-1]["table_mb"].items())))
    growth = {m: exponent(sizes, [r[m]["s"] for r in results]) for m in MEASURES}
    print("growth exponent (log s / log N): " + ", ".join(f"{m} {g:.2f}"
                                                          for m, g in growth.items()))
    print(f"per-point cost of the full collect grows with exponent {growth['full'] - 1:.2f}")
    report = {"sizes": sizes, "epochs": args.epochs, "results": results, "growth": growth,
              "cpus": os.cpu_count()}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        op, sweep, n = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(measure(op, sweep, n)))
    else:
        main()
