"""Benchmark of our training step on the current device; prints figures, asserts nothing.

    python -m forgetting.bench --quick                    # about a minute on a 2-core CPU
    python -m forgetting.bench --data cifar10 --root PATH --json bench.json

What is measured:
1. Train images/s of ResNet-9 at each width x precision: exactly train.py's inner loop (a batch
   cut by BatchMaker from the device-resident, reflect-padded uint8 training set with sampled
   AugParams, summed cross-entropy under autocast, SGD Nesterov with weight decay, zero_grad /
   backward / step, channels_last). Warm-up steps, then timed repeats of several steps each,
   the device synchronised before every clock read. Reported: median and min-max over repeats.
2. Pipeline share: median time to make one batch (param slicing, BatchMaker.batch, index transfer,
   label gather) timed alone, as a percentage of the median full step.
3. Start-up: `python -m forgetting.run model=tiny epochs=1 ...` in a subprocess; the time from
   launching it until its first epoch line appears, minus that epoch's own `wall_s` (from its
   history.parquet), is the time from process start to the start of the first training step:
   interpreter, imports, Hydra, data load (cache warm), model and BatchMakers.
4. With `--data cifar10 --root PATH`: the warm load time of the real images (load_dataset on a
   warm cache plus reading the memory-mapped tensors); the step speed does not depend on image
   content, so the default synthetic 32x32 data gives the same step figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from forgetting.augment import BatchMaker
from forgetting.config import Config, DataConfig, ModelConfig
from forgetting.data import load_dataset, synthetic
from forgetting.model import build_model
from forgetting.train import (device_name, get_batch, make_autocast, make_optimizer,
                              resolve_device, resolve_precision, sgd_step, step_lr, sync)

REPO = Path(__file__).resolve().parent.parent
# (warm-up steps, steps per repeat, repeats) by device type and --quick
DEFAULTS = {("cpu", True): (1, 1, 3), ("cpu", False): (2, 2, 5),
            ("cuda", True): (10, 20, 3), ("cuda", False): (20, 50, 7)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m forgetting.bench",
                                description="Train-step throughput, pipeline share and "
                                            "start-up time of the project's training loop.")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--widths", default="1,0.5,0.25", help="ResNet-9 widths, comma-separated")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16, auto; comma-separated")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--data", default="synthetic", choices=("synthetic", "cifar10"))
    p.add_argument("--root", help="CIFAR-10 folder (with --data cifar10)")
    p.add_argument("--train-size", type=int, default=50000,
                   help="synthetic training images held on the device (default: CIFAR-10's)")
    p.add_argument("--quick", action="store_true", help="fewer warm-up steps and repeats")
    p.add_argument("--warmup", type=int, help="warm-up steps per case")
    p.add_argument("--steps", type=int, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, help="timed repeats per case")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.data == "cifar10" and not args.root:
        p.error("--data cifar10 needs --root")
    if args.batch_size < 1 or (args.steps is not None and args.steps < 1) or \
            (args.repeats is not None and args.repeats < 1) or (args.warmup or 0) < 0:
        p.error("--batch-size, --steps and --repeats must be >= 1, --warmup >= 0")
    return args


def data_config(args: argparse.Namespace) -> DataConfig:
    cfg = DataConfig(name=args.data, download=False)
    if args.root:
        cfg.root = args.root
    return cfg


def load_images(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """Training images and labels; for cifar10 also the warm load time in seconds."""
    if args.data == "synthetic":
        ds = synthetic(10, args.train_size, 1, 32, 48.0, 0)
        return ds.train_x, ds.train_y, None
    cfg = data_config(args)
    load_dataset(cfg)  # the first load decodes and writes the cache
    t0 = time.perf_counter()
    ds = load_dataset(cfg)
    train_x, train_y = ds.train_x.clone(), ds.train_y.clone()  # read the mmap'd tensors
    ds.test_x.clone()
    return train_x, train_y, time.perf_counter() - t0


def timed(fn, steps: int, repeats: int, device: torch.device) -> list[float]:
    """Seconds per call of fn, one figure per repeat of `steps` calls."""
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        out.append((time.perf_counter() - t0) / steps)
    return out


def bench_case(maker: BatchMaker, train_y: torch.Tensor, width: float, precision: str,
               args: argparse.Namespace, device: torch.device) -> dict:
    """Time train.py's inner loop (and its batch making alone) for one width x precision."""
    bs = args.batch_size
    cfg = Config(model=ModelConfig("resnet9", width), data=DataConfig(), batch_size=bs)
    torch.manual_seed(0)
    model = build_model("resnet9", width, 10).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    model.train()
    n = len(maker)
    steps_per_epoch = n // bs
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen)
    params = maker.sample(n, gen)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    state = {"step": 0}

    autocast = make_autocast(device, precision)

    def make_batch():
        return get_batch(maker, train_y, order, params, state["step"] % steps_per_epoch, bs)

    def train_step():
        nonlocal loss_sum, correct
        x, y = make_batch()
        lr = step_lr(cfg, state["step"] / steps_per_epoch, cfg.epochs)
        loss, hits = sgd_step(model, optimizer, x, y, lr, autocast)
        loss_sum += loss
        correct += hits
        state["step"] += 1

    for _ in range(args.warmup):
        train_step()
    step_s = timed(train_step, args.steps, args.repeats, device)
    make_batch()
    batch_s = timed(make_batch, args.steps, args.repeats, device)
    img_s = sorted(bs / s for s in step_s)
    return {"width": width, "precision": precision, "ours_img_s": statistics.median(img_s),
            "spread": [img_s[0], img_s[-1]], "step_ms": 1e3 * statistics.median(step_s),
            "batch_ms": 1e3 * statistics.median(batch_s),
            "pipeline_share": statistics.median(batch_s) / statistics.median(step_s)}


def measure_startup(args: argparse.Namespace, device: torch.device) -> dict:
    """Process start -> first training step of `python -m forgetting.run`, from outside."""
    if args.data == "synthetic":
        data = ["data=synthetic"]
    else:
        root = Path(args.root).expanduser().resolve()  # the subprocess runs in REPO
        data = ["data=cifar10", f"data.root='{root}'", "data.download=false"]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "forgetting.run", *data, "model=tiny", "model.width=0.25",
               "epochs=1", f"device={device.type}", "precision=fp32", f"hydra.run.dir='{tmp}'"]
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}
        lines, seen = [], None
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            if seen is None and " epoch 1/" in line:
                seen = time.perf_counter() - t0
            lines.append(line)
        total = time.perf_counter() - t0
        if proc.wait() != 0 or seen is None:
            raise RuntimeError("start-up run failed: " + " ".join(cmd) + "\n" + "".join(lines))
        import pandas as pd

        epoch_wall = float(pd.read_parquet(Path(tmp) / "history.parquet")["wall_s"].iloc[0])
    return {"startup_s": seen - epoch_wall, "first_epoch_s": epoch_wall, "process_s": total,
            "command": " ".join(cmd[1:])}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    warmup, steps, repeats = DEFAULTS[(device.type, args.quick)]
    args.warmup = warmup if args.warmup is None else args.warmup
    args.steps = steps if args.steps is None else args.steps
    args.repeats = repeats if args.repeats is None else args.repeats
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    widths = [float(w) for w in args.widths.split(",")]
    precisions = [resolve_precision(p.strip(), device) for p in args.precisions.split(",")]

    train_x, train_y, load_s = load_images(args)
    if args.batch_size > len(train_x):
        raise SystemExit(f"error: --batch-size {args.batch_size} exceeds the {len(train_x)} "
                         "training images")
    dc = data_config(args)
    maker = BatchMaker(train_x, dc.mean, dc.std, device, torch.float32)  # augment, no cutout
    train_y = train_y.to(device)
    print(f"device: {device} ({device_name(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"data: {args.data}, {len(maker)} training images on the device, batch {args.batch_size}"
          f"; {args.warmup} warm-up steps, then {args.repeats} repeats x {args.steps} steps")
    if load_s is not None:
        print(f"real data warm load: {load_s:.2f} s (load_dataset from the cache + reading it)")
    print(f"{'width':>6} {'precision':>9} {'img/s':>9} {'min-max':>17} {'step ms':>9} "
          f"{'batch ms':>9} {'pipeline':>9}")
    cases = []
    for width in widths:
        for precision in precisions:
            c = bench_case(maker, train_y, width, precision, args, device)
            cases.append(c)
            print(f"{width:>6g} {precision:>9} {c['ours_img_s']:>9.0f} "
                  f"{c['spread'][0]:>8.0f}-{c['spread'][1]:<8.0f} {c['step_ms']:>9.1f} "
                  f"{c['batch_ms']:>9.2f} {100 * c['pipeline_share']:>8.1f}%", flush=True)
    print("img/s: median over repeats of ResNet-9 train steps (train.py's inner loop); "
          "pipeline: batch making alone / full step")

    startup = None
    if not args.no_startup:
        startup = measure_startup(args, device)
        print(f"start-up: {startup['startup_s']:.2f} s from process start to the first training "
              f"step of `python {startup['command']}` (time to its first epoch line "
              f"{startup['startup_s'] + startup['first_epoch_s']:.2f} s minus that epoch's "
              f"{startup['first_epoch_s']:.2f} s; whole process {startup['process_s']:.2f} s)")

    result = {"device": str(device), "device_name": device_name(device),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "data": args.data, "batch_size": args.batch_size, "warmup": args.warmup,
              "steps": args.steps, "repeats": args.repeats, "cases": cases,
              "startup_s": startup["startup_s"] if startup else None, "startup": startup,
              "load_s": load_s}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
