"""Benchmark: our training step against a plain-PyTorch baseline; prints figures, asserts nothing.

    python -m forgetting.bench --quick                    # about a minute on a 2-core CPU
    python -m forgetting.bench --data cifar10 --root PATH --json bench.json

Measured in one process and one sitting, per ResNet-9 width x precision:
- ours: train.py's step (`get_batch` from the device-resident uint8 set with sampled
  augmentation, `sgd_step` on the summed loss);
- ceiling: the same `sgd_step` on one fixed, ready batch (no data pipeline at all);
- baseline: a torchvision DataLoader with per-image transforms and a mean-reduced loss
  (forgetting/baseline.py), with `num_workers` 0 and 2;
- pipeline: `get_batch` alone, as a share of our step.
Warm-up steps, then timed repeats of several steps, the device synchronised before every clock
read (CUDA events on a GPU); medians and min-max over repeats. Then, from subprocesses
(forgetting/bench_runs.py): a run's start-up overhead and sweep throughput (basic vs joblib).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from forgetting import baseline
from forgetting.augment import BatchMaker
from forgetting.bench_runs import data_overrides, measure_startup, measure_sweeps
from forgetting.config import Config, DataConfig, ModelConfig
from forgetting.data import load_dataset, synthetic
from forgetting.model import build_model
from forgetting.augment import get_batch
from forgetting.device import device_name, resolve_device, resolve_precision, sync
from forgetting.train import make_autocast, make_optimizer, sgd_step, step_lr

# (warm-up steps, steps per repeat, repeats) by device type and --quick
DEFAULTS = {("cpu", True): (1, 1, 2), ("cpu", False): (2, 2, 4),
            ("cuda", True): (10, 20, 3), ("cuda", False): (20, 50, 7)}
BATCH = {"cpu": 128, "cuda": 512}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m forgetting.bench", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--widths", default="1,0.5,0.25", help="ResNet-9 widths, comma-separated")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16, auto; comma-separated")
    p.add_argument("--batch-size", type=int, help="default: 128 on CPU, 512 on CUDA")
    p.add_argument("--workers", default="0,2", help="baseline DataLoader num_workers values")
    p.add_argument("--data", default="synthetic", choices=("synthetic", "cifar10"))
    p.add_argument("--root", help="CIFAR-10 folder (with --data cifar10)")
    p.add_argument("--train-size", type=int, default=50000,
                   help="synthetic training images held on the device (default: CIFAR-10's)")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats, small sweep")
    p.add_argument("--warmup", type=int, help="warm-up steps per case")
    p.add_argument("--steps", type=int, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, help="timed repeats per case")
    p.add_argument("--no-baseline", action="store_true", help="skip the DataLoader baseline")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep throughput")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.data == "cifar10" and not args.root:
        p.error("--data cifar10 needs --root")
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def load_images(args) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """Training images and labels; for cifar10 also the warm load time in seconds."""
    if args.data == "synthetic":
        ds = synthetic(10, args.train_size, 1, 32, 48.0, 0)
        return ds.train_x, ds.train_y, None
    cfg = DataConfig(name="cifar10", root=args.root, download=False)
    load_dataset(cfg)  # the first load decodes and writes the cache
    t0 = time.perf_counter()
    ds = load_dataset(cfg)
    train_x, train_y = ds.train_x.clone(), ds.train_y.clone()  # read the mmap'd tensors
    return train_x, train_y, time.perf_counter() - t0


def timed(fn, args, device: torch.device) -> list[float]:
    """Seconds per call of fn after warm-up, one figure per repeat of `args.steps` calls."""
    for _ in range(args.warmup):
        fn()
    out = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.steps):
                fn()
            end.record()
            end.synchronize()
            out.append(start.elapsed_time(end) / 1e3 / args.steps)
        else:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            sync(device)
            out.append((time.perf_counter() - t0) / args.steps)
    return out


def rate(batch_size: int, seconds: list[float]) -> dict:
    img_s = sorted(batch_size / s for s in seconds)
    return {"img_s": statistics.median(img_s), "spread": [img_s[0], img_s[-1]],
            "step_ms": 1e3 * statistics.median(seconds)}


def fresh_model(width: float, device: torch.device):
    torch.manual_seed(0)
    return build_model("resnet9", width, 10).to(device, memory_format=torch.channels_last)


def bench_case(maker: BatchMaker, images, labels, width: float, precision: str, args,
               device: torch.device) -> dict:
    """Ours, the ceiling, the pipeline alone and the baseline for one width x precision."""
    bs = args.batch_size
    cfg = Config(model=ModelConfig("resnet9", width), data=DataConfig(), batch_size=bs)
    autocast = make_autocast(device, precision)
    train_y = labels.to(device)
    steps_per_epoch = len(maker) // bs
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(maker), generator=gen)
    params = maker.sample(len(maker), gen)
    lr = step_lr(cfg, 5.0, cfg.epochs)  # the schedule's peak
    counter = {"i": 0}

    def make_batch():
        counter["i"] += 1
        return get_batch(maker, train_y, order, params, counter["i"] % steps_per_epoch, bs)

    model = fresh_model(width, device)
    optimizer = make_optimizer(model, cfg)
    ours = rate(bs, timed(lambda: sgd_step(model, optimizer, *make_batch(), lr, autocast),
                          args, device))
    x, y = make_batch()
    ceiling = rate(bs, timed(lambda: sgd_step(model, optimizer, x, y, lr, autocast), args,
                             device))
    batch_s = statistics.median(timed(make_batch, args, device))
    case = {"width": width, "precision": precision, "ours_img_s": ours["img_s"],
            "ours_spread": ours["spread"], "ceiling_img_s": ceiling["img_s"],
            "of_ceiling": ours["img_s"] / ceiling["img_s"], "step_ms": ours["step_ms"],
            "batch_ms": 1e3 * batch_s, "pipeline_share": batch_s / (ours["step_ms"] / 1e3)}
    if not args.no_baseline:
        by_workers = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            model = fresh_model(width, device)
            batches = baseline.endless(baseline.loader(images, labels, cfg.data.mean,
                                                       cfg.data.std, bs, workers, device))
            step = baseline.make_step(model, batches, lr * bs, device, autocast)
            by_workers[workers] = rate(bs, timed(step, args, device))["img_s"]
            del batches  # stops the loader's worker processes
        best = max(by_workers.values())
        case.update(baseline_img_s=best, baseline_by_workers=by_workers,
                    ratio=ours["img_s"] / best)
    return case


def print_case(c: dict) -> None:
    base = "  ".join(f"w{k}={v:>7.0f}" for k, v in c.get("baseline_by_workers", {}).items())
    ratio = f"{c['ratio']:>6.2f}x" if "ratio" in c else "   n/a"
    print(f"{c['width']:>6g} {c['precision']:>5} {c['ours_img_s']:>9.0f} "
          f"({c['ours_spread'][0]:.0f}-{c['ours_spread'][1]:.0f})  ceiling "
          f"{c['ceiling_img_s']:>7.0f} ({100 * c['of_ceiling']:.0f}%)  pipeline "
          f"{100 * c['pipeline_share']:>4.1f}%  baseline {base}  ratio {ratio}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    warmup, steps, repeats = DEFAULTS[(device.type, args.quick)]
    args.warmup = warmup if args.warmup is None else args.warmup
    args.steps = steps if args.steps is None else args.steps
    args.repeats = repeats if args.repeats is None else args.repeats
    args.batch_size = args.batch_size or BATCH[device.type]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    widths = [float(w) for w in args.widths.split(",")]
    precisions = [resolve_precision(p.strip(), device) for p in args.precisions.split(",")]

    images, labels, load_s = load_images(args)
    dc = DataConfig()
    maker = BatchMaker(images, dc.mean, dc.std, device, torch.float32)  # crop + flip
    print(f"device: {device} ({device_name(device)}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; data: {args.data}, {len(maker)} images, "
          f"batch {args.batch_size}; {args.warmup} warm-up steps, {args.repeats} repeats x "
          f"{args.steps} steps")
    if load_s is not None:
        print(f"real data warm load: {load_s:.2f} s")
    print("width prec  ours img/s (min-max)  ceiling (ours/ceiling)  pipeline  "
          "baseline img/s by num_workers  ours/best baseline")
    cases = []
    for width in widths:
        for precision in precisions:
            cases.append(bench_case(maker, images, labels, width, precision, args, device))
            print_case(cases[-1])

    result = {"device": device_name(device), "device_type": device.type,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps,
              "repeats": args.repeats, "cases": cases, "load_s": load_s,
              "pipeline_share": max(c["pipeline_share"] for c in cases)}
    overrides = data_overrides(args.data, args.root)
    if not args.no_startup:
        startup = measure_startup(overrides, device.type)
        result.update(startup_s=startup["startup_s"], startup=startup)
        print(f"start-up: {startup['startup_s']:.2f} s from process start to the first "
              f"training step (whole process {startup['process_s']:.2f} s)")
    if not args.no_sweep:
        size = ["model=tiny", "epochs=1"] if args.quick else \
            ["model.width=0.25", "epochs=2", "batch_size=128"]
        if args.data == "synthetic":
            size += ["data.train_size=2560", "data.test_size=500"]
        sweeps = measure_sweeps(overrides + size, device.type)
        result["sweeps"] = sweeps
        print(f"sweep throughput ({sweeps['command']}): basic "
              f"{sweeps['basic']['runs_per_hour']:.0f} runs/h, joblib 2 workers "
              f"{sweeps['joblib_2']['runs_per_hour']:.0f} runs/h")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
