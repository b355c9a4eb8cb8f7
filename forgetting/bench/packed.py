"""Sweep throughput: K sweep points trained one after another, as one pack, or as K processes.

    python -m forgetting.bench --packed                           # CPU-sized defaults
    python -m forgetting.bench --packed --widths 1,0.5,0.25 --train-size 50000 --epochs 1 \
        --batch-size 512 --compile                                 # a GPU

For each width and K, the same K points (ResNet-9, `lr` = 1, 2, 3, ..., `seed` = 0, 1, ...;
`--train-size` synthetic CIFAR-10-sized images for `--epochs`, test set `--test-size`) are run
to the end, evaluation included, in three ways:
- `sequential`: `core.train.train` for each point, one after another (on a GPU with its CUDA
  graph, and compiled with `--compile`): the basic launcher;
- `packed`: `core.packed.train_pack` of the K points (compiled with `--compile`): the packed
  launcher;
- `processes`: K processes each training one point at once (torch threads = cores / K): the
  joblib launcher; on a GPU also under CUDA MPS when `nvidia-cuda-mps-control` can start it.
Throughput is points per hour: K x 3600 / the wall seconds from the first step of the first
point to the end of the last (data generation, process start-up and compilation before the
first step excluded; a pack's compilation happens in its first step and counts). Rounds run
every (width, K, way) in an order rotated from round to round; figures are medians over rounds.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import torch

from forgetting.core.config import Config, DataConfig, ModelConfig, ProbeConfig
from forgetting.core.data import synthetic
from forgetting.core.device import device_name, resolve_device, sync
from forgetting.core.packed import train_pack
from forgetting.core.train import train
from forgetting.runs.cli import ArgumentParser

WAYS = ("sequential", "packed", "processes")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m forgetting.bench --packed",
                       description=__doc__.split("\n")[0])
    p.add_argument("--widths", default="0.25,0.5", help="ResNet-9 widths, comma-separated")
    p.add_argument("--ks", default="1,2,4,8", help="points per pack, comma-separated")
    p.add_argument("--train-size", type=int, default=2560, help="images per epoch")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--compile", action="store_true", help="torch.compile (sequential, packed)")
    p.add_argument("--ways", default=",".join(WAYS), help="which ways, comma-separated")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args(argv)
    try:
        args.widths = [float(w) for w in args.widths.split(",")]
        args.ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        p.error("--widths and --ks are comma-separated numbers")
    args.ways = [w for w in args.ways.split(",") if w]
    if any(w not in WAYS for w in args.ways):
        p.error(f"--ways: choose from {', '.join(WAYS)}")
    for name in ("train_size", "test_size", "epochs", "batch_size", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if any(k < 1 for k in args.ks) or any(w <= 0 for w in args.widths):
        p.error("--ks must be >= 1 and --widths > 0")
    return args


def configs(args: argparse.Namespace, width: float, k: int, threads: int = 0) -> list[Config]:
    """K points of one sweep: lr 1..K, seed 0..K-1, the rest equal."""
    d = DataConfig(name="synthetic", train_size=args.train_size, test_size=args.test_size)
    return [Config(lr=float(i + 1), seed=i, epochs=args.epochs, batch_size=args.batch_size,
                   model=ModelConfig(name="resnet9", width=width), data=d,
                   device=args.device, precision=args.precision, compile=args.compile,
                   probe=ProbeConfig(epochs=0), quiet=True, threads=threads, eval_every=0)
            for i in range(k)]


def dataset(args: argparse.Namespace):
    d = DataConfig()
    return synthetic(10, args.train_size, args.test_size, 32, d.noise, 0)


def sequential(cfgs: list[Config], data) -> float:
    """Wall seconds of training the points one after another (each run's own train_s: its
    set-up before the first step, compilation and capture included there, left out)."""
    return sum(train(cfg, data).final["train_s"] for cfg in cfgs)


def packed(cfgs: list[Config], data) -> float:
    results = train_pack(cfgs, data)
    return max(r.final["train_s"] for r in results)


def _worker(cfg: Config, args: argparse.Namespace, barrier, queue) -> None:
    data = dataset(args)
    barrier.wait()
    start = time.time()
    train(cfg, data)
    queue.put((start, time.time()))


def processes(cfgs: list[Config], args: argparse.Namespace) -> float:
    """Wall seconds from the moment K processes (started and given their data) begin
    training together to the end of the last."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(cfgs)), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(cfg, args, barrier, queue)) for cfg in cfgs]
    for p in procs:
        p.start()
    spans = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def mps(start: bool) -> bool:
    """Start (or stop) the CUDA MPS daemon; whether it is running afterwards."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return False
    try:
        if start:
            subprocess.run([control, "-d"], check=True, timeout=30)
            return True
        subprocess.run([control], input=b"quit\n", check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return False


def measure(args: argparse.Namespace, way: str, width: float, k: int, data) -> float:
    cores = os.cpu_count() or 1
    if way == "processes":
        gpu = resolve_device(args.device).type == "cuda"
        threads = 0 if gpu else max(1, cores // k)
        return processes(configs(args, width, k, threads), args)
    cfgs = configs(args, width, k)
    return sequential(cfgs, data) if way == "sequential" else packed(cfgs, data)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    data = dataset(args)
    train(configs(args, args.widths[0], 1)[0], data)  # warm-up: allocator, kernels
    cases = [(way, w, k) for w in args.widths for k in args.ks for way in args.ways
             if not (way == "processes" and k == 1)]
    if device.type == "cuda" and "processes" in args.ways:
        cases += [("processes+mps", w, k) for w in args.widths for k in args.ks if k > 1]
    seconds: dict[str, list[float]] = {f"{way}|{w}|{k}": [] for way, w, k in cases}
    for r in range(args.rounds):
        order = cases[r % len(cases):] + cases[:r % len(cases)]
        for way, w, k in order:
            with_mps = way == "processes+mps" and mps(True)
            if way == "processes+mps" and not with_mps:
                continue
            try:
                s = measure(args, way.split("+")[0], w, k, data)
            finally:
                if with_mps:
                    mps(False)
            sync(device)
            seconds[f"{way}|{w}|{k}"].append(s)
            print(f"round {r + 1}: {way:<14} width {w:<5g} K={k}: {s:.2f} s "
                  f"({k * 3600 / s:.0f} points/h)", flush=True)
    out = {"device": device_name(device), "threads": torch.get_num_threads(),
           "train_size": args.train_size, "test_size": args.test_size, "epochs": args.epochs,
           "batch_size": args.batch_size, "precision": args.precision,
           "compile": args.compile, "rounds": args.rounds, "seconds": seconds, "table": []}
    print(f"\n{out['device']}, {out['threads']} threads; ResNet-9, batch {args.batch_size}, "
          f"{args.precision}, {args.train_size} images x {args.epochs} epoch(s) per point; "
          f"points per hour (median of {args.rounds} rounds)")
    print(f"{'width':>6} {'K':>3} " + " ".join(f"{w:>14}" for w in [*args.ways, "packed/seq"]))
    for w in args.widths:
        for k in args.ks:
            row = {"width": w, "k": k}
            for way in [*args.ways, "processes+mps"]:
                runs = seconds.get(f"{way}|{w}|{k}")
                row[way] = k * 3600 / statistics.median(runs) if runs else None
            if row.get("packed") and row.get("sequential"):
                row["packed/seq"] = row["packed"] / row["sequential"]
            out["table"].append(row)
            cells = [row.get(way) for way in args.ways]
            print(f"{w:>6g} {k:>3} " + " ".join(f"{c:>14.0f}" if c else f"{'-':>14}"
                                               for c in cells)
                  + (f" {row['packed/seq']:>13.2f}x" if "packed/seq" in row else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out
