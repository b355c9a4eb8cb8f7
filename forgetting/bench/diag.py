"""What the diagnostics cost: extra wall time of a training run with each `diag.*` on.

    python -m forgetting.bench --diag                      # a full-size epoch, 3 rounds
    python -m forgetting.bench --diag --train-size 6250    # the quick presets' 1/8 subset
    python -m forgetting.bench --diag --train-size 6250 --sharpness-examples 512  # quick_curvature

The quick presets' model (ResNet-9 at width 0.25, batch 128, the part1 schedule) trains for
`--epochs` passes over `--train-size` synthetic images (CIFAR-10-sized) in this process, once
plainly and once with each diagnostic: `diag.sharpness=true diag.every=1` (one measurement per
epoch, `--sharpness-examples` and the default iterations), `diag.noise=true` (every 4 steps, the
default) and
`diag.forgetting_events=true`. Rounds run every contender in an order rotated from round to
round; each overhead is the median over rounds of (training seconds with / without - 1),
training seconds being the run's own `train_s` (start-up and data loading excluded). For
sharpness also the cost of one measurement: Hessian-vector products (Lanczos steps, from the
runs' history) and epoch-equivalents (extra seconds per measurement / plain seconds per epoch).
The cheaper sharpness options are contenders too (`--only sharpness,sharpness_bf16,
sharpness_tol,sharpness_bf16_tol`): `diag.hvp_precision=bf16`, `diag.tol=--tol` (1e-2) and both.
For each sharpness contender: products, and epoch- and step-equivalents per measurement (its
extra seconds over the plain run's seconds per epoch, per step); for an option, lambda_max's
relative difference from the default's (`sharpness`, added when an option is asked for) at the
same epoch of the same round: the runs train identically, so both measure the same weights
(checked: `same_weights`, every epoch's training loss equal). The reference is itself a
measurement (tol 1e-3, warm-started), not the converged value.
Prints figures, asserts nothing.

    python -m forgetting.bench --diag --hvp   # the HVP routes and warm Lanczos (bench/hvp.py)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

from forgetting.core.config import Config, DataConfig, DiagConfig, ModelConfig, ProbeConfig
from forgetting.core.data import synthetic
from forgetting.core.train import train
from forgetting.runs.cli import ArgumentParser

CONTENDERS = {
    "plain": {},
    "sharpness": {"sharpness": True, "every": 1},
    "noise": {"noise": True},
    "forgetting_events": {"forgetting_events": True},
    "sharpness_bf16": {"sharpness": True, "every": 1, "hvp_precision": "bf16"},
    "sharpness_tol": {"sharpness": True, "every": 1},  # diag.tol=--tol
    "sharpness_bf16_tol": {"sharpness": True, "every": 1, "hvp_precision": "bf16"},
}
DEFAULT = ("sharpness", "noise", "forgetting_events")  # --only's default
OPTIONS = ("sharpness_bf16", "sharpness_tol", "sharpness_bf16_tol")  # against `sharpness`


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m forgetting.bench --diag",
                       description=__doc__.split("\n")[0])
    p.add_argument("--train-size", type=int, default=50000, help="images per epoch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument("--sharpness-examples", type=int, default=0,
                   help="diag.sharpness_examples of the sharpness run (0: its default)")
    p.add_argument("--tol", type=float, default=1e-2,
                   help="diag.tol of sharpness_tol and sharpness_bf16_tol")
    p.add_argument("--test-size", type=int, default=1000, help="test images (evaluated once)")
    p.add_argument("--only", default=",".join(DEFAULT),
                   help="diagnostics to time against the plain run, comma-separated, from "
                   f"{', '.join(list(CONTENDERS)[1:])}")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    for name in ("train_size", "epochs", "rounds", "batch_size", "test_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.sharpness_examples < 0:
        p.error("--sharpness-examples must be >= 0")
    if not 0 < args.tol < 1:
        p.error("--tol must be in (0, 1)")
    args.only = [n for n in args.only.split(",") if n]
    if not args.only or any(n not in CONTENDERS or n == "plain" for n in args.only):
        p.error(f"--only: choose from {', '.join(list(CONTENDERS)[1:])}")
    if any(n in OPTIONS for n in args.only) and "sharpness" not in args.only:
        args.only.insert(0, "sharpness")  # the options' reference
    return args


def config(args, diag: dict) -> Config:
    data = DataConfig(name="synthetic", train_size=args.train_size, test_size=args.test_size,
                      cache_dir="/nonexistent")
    cfg = Config(model=ModelConfig("resnet9", args.width), data=data,
                 batch_size=args.batch_size, epochs=args.epochs, device="cpu",
                 precision=args.precision, eval_every=0, quiet=True, threads=args.threads,
                 probe=ProbeConfig(epochs=0), diag=DiagConfig(**diag))
    cfg.schedule = replace(cfg.schedule, knots=[0.0, 15.0, 30.0, 35.0],
                           values=[0.0, 0.1, 0.005, 0.0], batch_size=128)
    return cfg


def contender(args, name: str) -> dict:
    """The diag keys of contender `name` under the command line's settings."""
    diag = dict(CONTENDERS[name])
    if name.startswith("sharpness"):
        diag["sharpness_examples"] = args.sharpness_examples
    if name.endswith("_tol"):
        diag["tol"] = args.tol
    return diag


def sharpness_figures(args, ratios: dict[str, list[float]], runs: dict[str, list]) -> dict:
    """Per sharpness contender: products, epoch- and step-equivalents per measurement (medians
    over rounds), and for an option lambda_max's |relative difference| from `sharpness`'s at the
    same epoch of the same round (median and largest over every measurement)."""
    figures = {}
    for name in (n for n in ratios if n.startswith("sharpness")):
        histories = [[r for r in h if r.get("sharpness_iters")] for h in runs[name]]
        epochs = statistics.median(ratio * args.epochs / max(len(h), 1)
                                   for ratio, h in zip(ratios[name], histories))
        products = [r["sharpness_iters"] for h in histories for r in h]
        row = {"products": statistics.median(products) if products else None,
               "epochs_per_measurement": epochs,
               "steps_per_measurement": epochs * (args.train_size // args.batch_size)}
        if name != "sharpness":
            diffs, same = [], True
            for mine, ref in zip(runs[name], runs["sharpness"]):
                same &= [r["train_loss"] for r in mine] == [r["train_loss"] for r in ref]
                diffs += [abs(a["sharpness"] / b["sharpness"] - 1) for a, b in zip(mine, ref)
                          if a.get("sharpness_iters") and b.get("sharpness_iters")]
            row.update(rel_diff_median=statistics.median(diffs) if diffs else None,
                       rel_diff_max=max(diffs) if diffs else None, same_weights=same)
        figures[name] = row
    return figures


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if "--hvp" in argv:
        from forgetting.bench.hvp import main as hvp_main

        return hvp_main([a for a in argv if a not in ("--hvp", "--diag")])
    args = parse_args(argv)
    d = DataConfig()
    dataset = synthetic(10, args.train_size, args.test_size, 32, d.noise, 0)
    names = ["plain", *args.only]
    seconds: dict[str, list[float]] = {n: [] for n in names}
    runs: dict[str, list] = {n: [] for n in names}  # each round's history
    train(config(args, {}), dataset)  # warm-up: allocator, kernels
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            result = train(config(args, contender(args, name)), dataset)
            seconds[name].append(result.final["train_s"])
            runs[name].append(result.history)
            print(f"round {r + 1}: {name:<18} {result.final['train_s']:.2f} s", flush=True)
    plain = seconds["plain"]
    out = {"device": "cpu", "threads": torch.get_num_threads(), "train_size": args.train_size,
           "epochs": args.epochs, "width": args.width, "batch_size": args.batch_size,
           "precision": args.precision, "tol": args.tol, "seconds": seconds,
           "plain_s": statistics.median(plain), "overhead": {}}
    ratios = {n: [t / p - 1 for t, p in zip(seconds[n], plain)] for n in names[1:]}
    out["overhead"] = {n: statistics.median(r) for n, r in ratios.items()}
    print(f"\nResNet-9 width {args.width:g}, batch {args.batch_size}, {args.precision}, "
          f"{args.train_size} images x {args.epochs} epoch(s), {out['threads']} threads: "
          f"plain {out['plain_s']:.2f} s (median of {args.rounds})")
    for name, r in ratios.items():
        print(f"  {name:<18} {100 * statistics.median(r):+.1f}% (median of per-round ratios; "
              f"range {100 * min(r):+.1f}% .. {100 * max(r):+.1f}%)")
    out["sharpness"] = sharpness_figures(args, ratios, runs)
    if "sharpness" in out["sharpness"]:  # the names earlier versions wrote
        out["sharpness_products"] = out["sharpness"]["sharpness"]["products"]
        out["sharpness_epochs_per_measurement"] = out["sharpness"]["sharpness"][
            "epochs_per_measurement"]
    for name, f in out["sharpness"].items():
        text = (f"  {name}: {f['products']} products per measurement (median), "
                f"{f['epochs_per_measurement']:.3f} epoch-equivalents = "
                f"{f['steps_per_measurement']:.1f} training steps per measurement")
        if "rel_diff_max" in f and f["rel_diff_max"] is not None:
            text += (f"; lambda_max vs sharpness: median {100 * f['rel_diff_median']:.2f}%, "
                     f"largest {100 * f['rel_diff_max']:.2f}%")
            text += "" if f["same_weights"] else " (NOT the same weights: training differed)"
        print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out
