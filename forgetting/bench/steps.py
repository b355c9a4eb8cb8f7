"""The step benchmark: our training step against a plain-PyTorch baseline; prints figures, asserts
nothing.

    python -m forgetting.bench --quick                    # about 1.5 minutes on a 2-core CPU
    python -m forgetting.bench --data cifar10 --root PATH --json bench.json

Measured in one process and one sitting, per ResNet-9 width x precision:
- ours: train.py's step (`get_batch` from the device-resident uint8 set with sampled
  augmentation, `sgd_step` on the summed loss);
- ceiling: the same `sgd_step` on one fixed, ready batch (no data pipeline at all);
- baseline: a torchvision DataLoader with per-image transforms and a mean-reduced loss
  (forgetting/bench/baseline.py), with `num_workers` 0 and 2;
- pipeline: `get_batch` alone, as a share of our step.
Warm-up steps, then rounds: each round times several steps of every contender, in an order
rotated from round to round, the device synchronised before every clock read (CUDA events on a
GPU); medians and min-max over rounds, and ratios as medians of per-round ratios, so that the
machine's drift does not land on one contender only. A case whose figures cannot be trusted
(ours above the ceiling, or rounds spread by more than 20%: forgetting/bench/trust.py) is marked
with a line that says to rerun with more rounds. Then, from subprocesses
(forgetting/bench/runs.py): a run's start-up overhead and sweep throughput (basic vs joblib).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from forgetting.bench import baseline
from forgetting.bench.runs import data_overrides, measure_startup, measure_sweeps
from forgetting.bench.trust import advice, untrusted
from forgetting.core.augment import BatchMaker, get_batch
from forgetting.core.config import Config, DataConfig, ModelConfig
from forgetting.core.data import load_dataset, synthetic
from forgetting.core.device import device_name, resolve_device, resolve_precision, sync
from forgetting.core.model import build_model
from forgetting.core.setup import make_optimizer, step_lr
from forgetting.core.step import compile_and_warm, make_autocast, make_step
from forgetting.runs.cli import ArgumentParser

# (warm-up steps, steps per round, rounds) by device type and --quick
DEFAULTS = {("cpu", True): (1, 1, 2), ("cpu", False): (2, 2, 7),
            ("cuda", True): (10, 20, 3), ("cuda", False): (20, 50, 7)}
BATCH = {"cpu": 128, "cuda": 512}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m forgetting.bench", description=__doc__.split(
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
    p.add_argument("--warmup", type=int, help="warm-up steps per contender")
    p.add_argument("--steps", type=int, help="steps per contender in each timed round")
    p.add_argument("--repeats", type=int, help="timed rounds per case")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile our model (its compile time is printed as setup)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="replay our step as a CUDA graph (on a GPU; capture is setup)")
    p.add_argument("--no-baseline", action="store_true", help="skip the DataLoader baseline")
    p.add_argument("--no-startup", action="store_true", help="skip the start-up measurement")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep throughput")
    p.add_argument("--sweep-images", type=int, default=2560,
                   help="synthetic training images of the sweep throughput grid (default 2560)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.data == "cifar10" and not args.root:
        p.error("--data cifar10 needs --root")
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.sweep_images < 20:
        p.error("--sweep-images must be >= 20 (a quarter subset holds at least 5 images)")
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


def seconds_per_call(fn, steps: int, device: torch.device) -> float:
    """Seconds per call of fn over `steps` calls (CUDA events on a GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / steps
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / steps


def rounds(contenders: dict, args, device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each contender, one figure per round. Every round times every
    contender, in an order rotated from round to round, so that a machine whose speed drifts
    (this benchmark's CPU drifts by 30% within seconds) slows all of them alike and the
    per-round ratios compare like with like."""
    for fn in contenders.values():
        for _ in range(args.warmup):
            fn()
    names = list(contenders)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(seconds_per_call(contenders[name], args.steps, device))
    return out


def paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of b's time / a's time (> 1: a ran faster than b)."""
    return statistics.median(y / x for x, y in zip(a, b))


def rate(batch_size: int, seconds: list[float]) -> dict:
    img_s = sorted(batch_size / s for s in seconds)
    return {"img_s": statistics.median(img_s), "spread": [img_s[0], img_s[-1]],
            "step_ms": 1e3 * statistics.median(seconds)}


def fresh_model(width: float, device: torch.device):
    torch.manual_seed(0)
    return build_model("resnet9", width, 10).to(device, memory_format=torch.channels_last)


def bench_case(maker: BatchMaker, images, labels, width: float, precision: str, args,
               device: torch.device) -> dict:
    """Ours, the ceiling, the pipeline alone and the baselines for one width x precision,
    timed in interleaved rounds (`rounds`); ratios are medians of per-round ratios."""
    bs = args.batch_size
    cfg = Config(model=ModelConfig("resnet9", width), data=DataConfig(), batch_size=bs)
    autocast = make_autocast(device, precision)
    train_y = labels.to(device)
    steps_per_epoch = len(maker) // bs
    order, params = maker.draw_epoch(torch.Generator().manual_seed(0))
    lr = step_lr(cfg, 5.0, cfg.epochs)  # the schedule's peak
    counter = {"i": 0}

    def make_batch():
        counter["i"] += 1
        return get_batch(maker, train_y, order, params, counter["i"] % steps_per_epoch, bs)

    model = fresh_model(width, device)
    start = time.perf_counter()
    net = compile_and_warm(model, maker, bs, [], bs, autocast) if args.compile else model
    optimizer = make_optimizer(model, cfg)
    step = make_step(net, model, optimizer, precision, maker, train_y, bs, args.cuda_graphs)
    sync(device)
    setup_s = time.perf_counter() - start
    x, y = make_batch()
    contenders = {"ours": lambda: step(*make_batch(), lr), "ceiling": lambda: step(x, y, lr),
                  "pipeline": make_batch}
    workers = [] if args.no_baseline else [int(w) for w in args.workers.split(",")]
    loaders = []
    for w in workers:
        loaders.append(baseline.endless(baseline.loader(images, labels, cfg.data.mean,
                                                        cfg.data.std, bs, w, device)))
        contenders[f"baseline_w{w}"] = baseline.make_step(fresh_model(width, device),
                                                          loaders[-1], lr * bs, device, autocast)
    t = rounds(contenders, args, device)
    del loaders  # stops the loaders' worker processes
    ours = rate(bs, t["ours"])
    case = {"width": width, "precision": precision, "ours_img_s": ours["img_s"],
            "ours_spread": ours["spread"], "ceiling_img_s": rate(bs, t["ceiling"])["img_s"],
            "ceiling_spread": rate(bs, t["ceiling"])["spread"],
            "of_ceiling": paired(t["ours"], t["ceiling"]), "step_ms": ours["step_ms"],
            "batch_ms": 1e3 * statistics.median(t["pipeline"]),
            "pipeline_share": paired(t["ours"], t["pipeline"]),
            "compile": args.compile, "cuda_graphs": args.cuda_graphs, "setup_s": setup_s,
            "seconds": t}
    if workers:
        best = [min(times) for times in zip(*(t[f"baseline_w{w}"] for w in workers))]
        case.update(baseline_img_s=bs / statistics.median(best),
                    baseline_by_workers={w: rate(bs, t[f"baseline_w{w}"])["img_s"]
                                         for w in workers},
                    ratio=paired(t["ours"], best))
    return case


def print_case(c: dict) -> None:
    base = "  ".join(f"w{k}={v:>7.0f}" for k, v in c.get("baseline_by_workers", {}).items())
    ratio = f"{c['ratio']:>6.2f}x" if "ratio" in c else "   n/a"
    print(f"{c['width']:>6g} {c['precision']:>5} {c['ours_img_s']:>9.0f} "
          f"({c['ours_spread'][0]:.0f}-{c['ours_spread'][1]:.0f})  ceiling "
          f"{c['ceiling_img_s']:>7.0f} ({100 * c['of_ceiling']:.0f}%)  pipeline "
          f"{100 * c['pipeline_share']:>4.1f}%  baseline {base}  ratio {ratio}"
          + (f"  setup {c['setup_s']:.1f}s" if c["compile"] or c["cuda_graphs"] else ""),
          flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    args.cuda_graphs = args.cuda_graphs and device.type == "cuda"
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
          f"batch {args.batch_size}; {args.warmup} warm-up steps, {args.repeats} rounds x "
          f"{args.steps} steps; ours: {'compiled' if args.compile else 'eager'}"
          f"{', CUDA graph' if args.cuda_graphs else ''}")
    if load_s is not None:
        print(f"real data warm load: {load_s:.2f} s")
    print("width prec  ours img/s (min-max)  ceiling (ours/ceiling)  pipeline  "
          "baseline img/s by num_workers  ours/best baseline")
    cases = []
    for width in widths:
        for precision in precisions:
            cases.append(bench_case(maker, images, labels, width, precision, args, device))
            print_case(cases[-1])
            cases[-1]["untrusted"] = untrusted(cases[-1])
            if cases[-1]["untrusted"]:
                print(advice(cases[-1]["untrusted"], args.repeats), flush=True)

    result = {"device": device_name(device), "device_type": device.type,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps,
              "repeats": args.repeats, "compile": args.compile,
              "cuda_graphs": args.cuda_graphs, "cases": cases, "load_s": load_s,
              "pipeline_share": max(c["pipeline_share"] for c in cases)}
    overrides = data_overrides(args.data, args.root)
    if not args.no_startup:
        startup = measure_startup(overrides, device.type)
        result.update(startup_s=startup["startup_s"], startup=startup)
        print(f"start-up: {startup['startup_s']:.2f} s from process start to the first "
              f"training step (whole process {startup['process_s']:.2f} s)")
    if not args.no_sweep:
        size = ["model=tiny", "epochs=1"] if args.quick else ["model.width=0.25", "epochs=2"]
        batch = 512 if args.quick else 128  # the smallest subset (0.25) holds a batch
        if args.data == "synthetic":
            batch = min(batch, args.sweep_images // 5)  # per class, a quarter rounds down
            size += [f"data.train_size={args.sweep_images}",
                     f"data.test_size={args.sweep_images // 5}"]
        size += [f"batch_size={batch}"]
        sweeps = measure_sweeps(overrides + size, device.type)
        result["sweeps"] = sweeps
        print(f"sweep throughput ({sweeps['command']}): basic "
              f"{sweeps['basic']['runs_per_hour']:.0f} runs/h, joblib 2 workers "
              f"{sweeps['joblib_2']['runs_per_hour']:.0f} runs/h")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


