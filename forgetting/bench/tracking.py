"""What logging a run to a tracker costs (`logger=mlflow`, `logger=tensorboard`).

    python -m forgetting.bench --tracking                        # synthetic data, 3 rounds
    python -m forgetting.bench --tracking --data-root ../shared/data/cifar10-jpg

A quick run (ResNet-9 width 0.25, batch 128, 4 epochs on 2,500 images: `make demo`'s size) is
trained and written through forgetting.runs.job.run_one, in one process, alternately without a
tracker and with each tracker, `--rounds` times. The tracker's own time is measured directly
(the call that logs a finished run, forgetting.runs.tracking.log_run) and set against the
median wall time of the runs without one: whole-run wall times drift more on a small VM than
the few percent in question. The first logged run of a process also pays for importing the
tracker and opening its store; it is reported apart. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from forgetting.runs import job, tracking
from forgetting.runs.cli import ArgumentParser
from forgetting.runs.configs import CONFIG_DIR, register_configs

LOGGERS = ("mlflow", "tensorboard")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m forgetting.bench --tracking",
                       description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-root", help="a CIFAR-10 tree (else synthetic images)")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    register_configs()
    spent: list[float] = []
    log_run = tracking.log_run

    def timed(*a, **k):
        start = time.perf_counter()
        log_run(*a, **k)
        spent.append(time.perf_counter() - start)

    job.tracking.log_run = timed  # the one call write_result makes
    data = ([f"data.root={args.data_root}", "subset=0.05"] if args.data_root else
            ["data=synthetic", "data.train_size=2500", "data.test_size=1000"])
    folder = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    base = ["model.width=0.25", "epochs=4", "batch_size=128", "quiet=true", "force=true",
            f"logger.mlflow_uri={folder / 'mlruns'}", *data]
    walls: dict[str, list[float]] = {"none": [], **{name: [] for name in LOGGERS}}
    tracker: dict[str, list[float]] = {name: [] for name in LOGGERS}

    def run(name: str, n: int) -> None:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*base, f"logger={name}"])
        run_dir = folder / str(n)
        run_dir.mkdir()
        calls, start = len(spent), time.perf_counter()
        job.run_one(cfg, run_dir, {})
        walls[name].append(time.perf_counter() - start)
        if name != "none":
            tracker[name].append(spent[-1] if len(spent) > calls else 0.0)
        print(f"{name:<12} run {walls[name][-1]:.2f} s" + (
            f", tracker {tracker[name][-1]:.3f} s" if name != "none" else ""), flush=True)

    try:
        run("none", 0)  # warm-up: data, precision=auto
        walls["none"].clear()
        for r in range(args.rounds):
            for name in ("none", *LOGGERS):
                run(name, 1 + r * 3 + ("none", *LOGGERS).index(name))
    finally:
        job.tracking.log_run = log_run
    plain = statistics.median(walls["none"])
    out = {"rounds": args.rounds, "data": "cifar10" if args.data_root else "synthetic",
           "run_s": plain, "walls": walls, "tracker_s": tracker, "overhead": {}}
    print(f"\nquick run without a tracker: {plain:.2f} s (median of {args.rounds})")
    for name in LOGGERS:
        first, later = tracker[name][0], tracker[name][1:] or tracker[name]
        out["overhead"][name] = {"first": first / plain, "later": statistics.median(later) / plain}
        print(f"  {name:<12} first run {first:.3f} s ({100 * first / plain:.2f}%), later runs "
              f"{statistics.median(later):.3f} s ({100 * statistics.median(later) / plain:.2f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out
