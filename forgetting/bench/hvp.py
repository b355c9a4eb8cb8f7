"""What one sharpness measurement costs, and which Hessian-vector-product route is faster.

    python -m forgetting.bench --diag --hvp                    # quick presets' model, batch 128
    python -m forgetting.bench --diag --hvp --batch-size 512 --examples 512

The quick presets' model (ResNet-9, width `--width`) on synthetic CIFAR-sized images, trained
`--steps` SGD steps from its init (so the Hessian is not the init's) in `--precision` (bf16:
what `precision=auto` picks on a CPU with AMX), channels_last as in training, in this process
(the products themselves always run in fp32, as the monitor's do):

- routes: `--products` Hessian-vector products on `--examples` fixed examples in chunks of the
  batch size (BatchNorm in train mode per chunk), by `recompute` (every product rebuilds every
  chunk's first-order graph: the route before), `double_backward` (each chunk's graph built once
  and kept) and `forward_over_reverse` (`torch.func.jvp` of `grad`). Rounds interleave the
  routes in an order rotated from round to round; each figure is the median over rounds of the
  seconds per product relative to `double_backward` in the same round (the machine may be
  shared: ratios within one process, not absolute times, are the result).
- Lanczos: products to the monitor's tolerance (1e-3) from a random start (cold) and from the
  top Ritz vector of a measurement made `--gap` training steps earlier (warm, as the monitor
  does between epochs), and their lambda_max.
- cost: one measurement's seconds (the warm one) over one training step's, times the steps
  of an epoch of `--train-size` images: epoch-equivalents per measurement.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from forgetting.core.config import DataConfig
from forgetting.core.data import synthetic
from forgetting.core.diagnostics.hvp import Vector, hvp_function
from forgetting.core.diagnostics.sharpness import mean_cross_entropy, top_eigenvalue
from forgetting.core.model import build_model
from forgetting.core.sgd import SGD
from forgetting.core.step import make_autocast, sgd_step
from forgetting.runs.cli import ArgumentParser

ROUTES = ("recompute", "double_backward", "forward_over_reverse")
TOL = 1e-3  # the monitor's


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m forgetting.bench --diag --hvp",
                       description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--examples", type=int, default=256, help="whole batches")
    p.add_argument("--products", type=int, default=4, help="products timed per route and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="training steps before measuring")
    p.add_argument("--gap", type=int, default=10, help="training steps between the cold and "
                   "the warm measurement")
    p.add_argument("--train-size", type=int, default=6250, help="images per epoch")
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"),
                   help="the training steps' precision (the cost's unit)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = p.parse_args(argv)
    for name in ("batch_size", "examples", "products", "rounds", "steps", "gap", "train_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.examples % args.batch_size:
        p.error(f"--examples must be whole batches of --batch-size {args.batch_size}")
    return args


def recompute(model, params, x, y, batch_size):
    """The route before: every product rebuilds each chunk's first-order graph."""
    n = len(x)

    def hvp(v: Vector) -> Vector:
        total = [torch.zeros_like(p) for p in params]
        for start in range(0, n, batch_size):
            loss = mean_cross_entropy(model(x[start:start + batch_size]),
                                      y[start:start + batch_size]) * (batch_size / n)
            g = torch.autograd.grad(loss, params, create_graph=True)
            hv = torch.autograd.grad(g, params, grad_outputs=v)
            total = [t + h for t, h in zip(total, hv)]
        return total

    return hvp


def seconds_per_product(route: str, model, x, y, batch_size: int, products: int) -> float:
    """Seconds per product, setup (building kept graphs) included, BatchNorm buffers kept."""
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [b.clone() for b in model.buffers()]
    v = [torch.randn_like(p) for p in params]
    start = time.perf_counter()
    with torch.enable_grad():
        if route == "recompute":
            hvp = recompute(model, params, x, y, batch_size)
        else:
            hvp = hvp_function(model, params, x, y, mean_cross_entropy, batch_size, route)
        for _ in range(products):
            v = hvp(v)
            norm = torch.sqrt(sum((t * t).sum() for t in v))
            v = [t / norm for t in v]
    seconds = (time.perf_counter() - start) / products
    with torch.no_grad():
        for b, s in zip(model.buffers(), saved):
            b.copy_(s)
    return seconds


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    d = DataConfig()
    data = synthetic(10, max(args.train_size, args.examples), 100, 32, d.noise, 0)
    mean = torch.tensor(d.mean).view(1, 3, 1, 1)
    std = torch.tensor(d.std).view(1, 3, 1, 1)
    # channels_last, as training and the monitor hold images and weights on a CPU (setup.py,
    # augment.BatchMaker): the routes' relative speed depends on the layout
    images = ((data.train_x.float() - mean) / std).contiguous(memory_format=torch.channels_last)
    labels = data.train_y
    model = build_model("resnet9", args.width).to(memory_format=torch.channels_last).train()
    opt = SGD(model.parameters(), lr=0.0, momentum=0.9, nesterov=True,
              weight_decay=5e-4 * args.batch_size)
    autocast = make_autocast(torch.device("cpu"), args.precision)
    gen = torch.Generator().manual_seed(1)

    def train_steps(k: int) -> float:
        start = time.perf_counter()
        for _ in range(k):
            idx = torch.randint(0, len(labels), (args.batch_size,), generator=gen)
            sgd_step(model, opt, images[idx], labels[idx], 0.1 / 128, autocast)
        return (time.perf_counter() - start) / k

    train_steps(args.steps)
    x, y = images[:args.examples], labels[:args.examples]
    ratios: dict[str, list[float]] = {r: [] for r in ROUTES}
    step_s: list[float] = []
    for r in range(args.rounds):
        order = ROUTES[r % len(ROUTES):] + ROUTES[:r % len(ROUTES)]
        seconds = {route: seconds_per_product(route, model, x, y, args.batch_size,
                                              args.products) for route in order}
        step_s.append(train_steps(2) if r else train_steps(1))
        for route in ROUTES:
            ratios[route].append(seconds[route] / seconds["double_backward"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()),
              flush=True)

    cold = top_eigenvalue(model, x, y, iters=100, tol=TOL, batch_size=args.batch_size)
    train_steps(args.gap)
    again = top_eigenvalue(model, x, y, iters=100, tol=TOL, batch_size=args.batch_size)
    start = time.perf_counter()
    warm = top_eigenvalue(model, x, y, iters=100, tol=TOL, batch_size=args.batch_size,
                          start=cold["vector"])
    warm_s = time.perf_counter() - start
    step = train_steps(3)
    epoch_steps = args.train_size // args.batch_size
    out = {"threads": torch.get_num_threads(), "width": args.width,
           "batch_size": args.batch_size, "examples": args.examples,
           "ratio_to_double_backward": {k: statistics.median(v) for k, v in ratios.items()},
           "lanczos_cold_products": again["sharpness_iters"],
           "lanczos_warm_products": warm["sharpness_iters"],
           "lambda_cold": again["sharpness"], "lambda_warm": warm["sharpness"],
           "measurement_epochs": warm_s / (step * epoch_steps)}
    print(f"\nResNet-9 width {args.width:g}, {args.examples} examples in chunks of "
          f"{args.batch_size}, fp32 products, {args.precision} training steps, "
          f"{out['threads']} threads; seconds per product relative "
          f"to double_backward (median of {args.rounds} rounds, range):")
    for route, r in ratios.items():
        print(f"  {route:<22} {statistics.median(r):.2f}  ({min(r):.2f} .. {max(r):.2f})")
    print(f"Lanczos to tol {TOL:g}: cold {again['sharpness_iters']} products "
          f"(lambda_max {again['sharpness']:.5g}), warm from {args.gap} steps earlier "
          f"{warm['sharpness_iters']} products (lambda_max {warm['sharpness']:.5g})")
    print(f"one warm measurement: {warm_s / step:.1f} training steps = "
          f"{out['measurement_epochs']:.3f} epoch-equivalents of {args.train_size} images "
          f"({warm_s / max(warm['sharpness_iters'], 1) / step:.2f} steps per product)")
    return out
