"""The noise estimator at fixed weights against a direct estimate from the variance of chunk
gradients: the tiny model on constructed data (fast), and the quarter-width ResNet-9 after a
short run (slow).

What is compared. Both look at the same N fixed training examples at the same weights, with
BatchNorm in train mode over the examples each gradient is taken on (the optimiser's
statistics), fp32, no augmentation.
- The estimator: passes over the N examples in fresh random orders; every batch of B gives one
  measurement (|G_b|^2 of its first quarter b, |G_B|^2 of all of it: noise.gradient_sq_norms),
  fed to NoiseScale as training feeds it, without a step between measurements.
- The direct estimate: the N examples in a random order, cut into m = N/c disjoint chunks of c,
  each chunk's mean-loss gradient g_i; tr(Sigma) = c * sum|g_i - mean g|^2/(m - 1) (the
  variance of a chunk mean is tr(Sigma)/c) and |G|^2 = |mean g|^2 - tr(Sigma)/N; averaged over
  several orders.
Sampling B of the N without replacement, the estimator's |G|^2 estimates |G_N|^2 - tr/(N - 1),
the same target as the direct |mean g|^2 - tr/N: both say what the N examples say about the
distribution they were drawn from.

The tolerance is the estimator's own 99% interval (Student t for |G|^2 and tr(Sigma), Fieller
for B_simple): the direct value must lie inside it. The direct estimate's own scatter (the
standard error over its orders) is checked to be a small part of that interval, so the check
is of the estimator, not of the direct estimate's luck.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from forgetting.core.diagnostics import monitor
from forgetting.core.diagnostics.intervals import mean_interval, ratio_interval
from forgetting.core.diagnostics.noise import NoiseScale, gradient_sq_norms
from forgetting.core.model import build_model
from forgetting.core.train import train

CHECK_LEVEL = 0.99


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def chunk_gradients(model, x, y, size: int) -> torch.Tensor:
    """Flat mean-loss gradient of each disjoint chunk of `size` examples, in train mode
    (BatchNorm over the chunk); buffers restored."""
    saved = [b.clone() for b in model.buffers()]
    params = list(model.parameters())
    rows = []
    for start in range(0, len(x), size):
        loss = F.cross_entropy(model(x[start:start + size]).float(), y[start:start + size])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    with torch.no_grad():
        for b, s in zip(model.buffers(), saved):
            b.copy_(s)
    return torch.stack(rows)


def direct(model, x, y, size: int, orders: int, seed: int) -> dict[str, tuple[float, float]]:
    """{name: (mean over `orders` random orders, its standard error)} of the chunk-variance
    tr(Sigma), |G|^2 and their ratio, chunks of `size`."""
    gen = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {"trace_sigma": [], "grad_sq": [], "noise_scale": []}
    for _ in range(orders):
        perm = torch.randperm(len(x), generator=gen)
        g = chunk_gradients(model, x[perm], y[perm], size)
        trace = size * float(((g - g.mean(0)) ** 2).sum()) / (len(g) - 1)
        grad_sq = float(g.mean(0).pow(2).sum()) - trace / len(x)
        for name, v in (("trace_sigma", trace), ("grad_sq", grad_sq),
                        ("noise_scale", trace / grad_sq)):
            values[name].append(v)
    out = {}
    for name, vs in values.items():
        mean = math.fsum(vs) / len(vs)
        spread = math.sqrt(math.fsum((v - mean) ** 2 for v in vs) / (len(vs) - 1))
        out[name] = (mean, spread / math.sqrt(len(vs)))
    return out


def estimator(model, x, y, big: int, passes: int, seed: int) -> NoiseScale:
    """`passes` passes over (x, y) in fresh random orders, one measurement per batch of `big`
    (quarter `big // 4`), no step between them."""
    gen = torch.Generator().manual_seed(seed)
    noise = NoiseScale()
    for _ in range(passes):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - big + 1, big):
            idx = order[start:start + big]
            small_sq, big_sq = gradient_sq_norms(model, x[idx], y[idx], big // 4)
            noise.add(small_sq, big // 4, big_sq, big)
    return noise


def compare(noise: NoiseScale, reference: dict[str, tuple[float, float]]) -> dict:
    """The estimator's values and CHECK_LEVEL intervals beside the direct values."""
    g, t = noise.gradient_sq_estimates, noise.trace_sigma_estimates
    intervals = {"noise_scale": ratio_interval(t, g, CHECK_LEVEL),
                 "grad_sq": mean_interval(g, CHECK_LEVEL),
                 "trace_sigma": mean_interval(t, CHECK_LEVEL)}
    values = {"noise_scale": noise.b_simple(), "grad_sq": noise.gradient_sq(),
              "trace_sigma": noise.trace_sigma()}
    return {name: {"estimator": values[name], "interval": intervals[name],
                   "direct": reference[name][0], "direct_se": reference[name][1]}
            for name in values}


def assert_agree(rows: dict) -> None:
    """Each direct value inside the estimator's interval, its own s.e. under a quarter of
    the interval's half-width (the interval bounded: B_simple resolved)."""
    for name, r in rows.items():
        lo, hi = r["interval"]
        assert math.isfinite(hi), rows
        assert lo <= r["direct"] <= hi, (name, rows)
        assert r["direct_se"] < (hi - lo) / 8, (name, rows)


def constructed_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n 16x16 images in random order: one fixed random pattern per class (10 classes) plus
    unit noise. (In class order, consecutive chunks would be class-balanced: less noisy than
    random batches.)"""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 3, 16, 16, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return patterns[y] + torch.randn(n, 3, 16, 16, generator=gen), y


def test_the_estimator_at_fixed_weights_agrees_with_the_chunk_variance():
    """The tiny model at its initial weights, 2048 constructed examples, batch 64 (quarter 16),
    4 passes (128 measurements); direct chunks of 16 over 4 orders."""
    torch.manual_seed(0)
    x, y = constructed_data(2048, seed=1)
    model = build_model("tiny", width=0.5).train()
    rows = compare(estimator(model, x, y, 64, passes=4, seed=2),
                   direct(model, x, y, 16, orders=4, seed=3))
    assert_agree(rows)
    chunks_64 = direct(model, x, y, 64, orders=2, seed=4)  # the noise scales as 1/batch
    assert chunks_64["trace_sigma"][0] == pytest.approx(rows["trace_sigma"]["direct"], rel=0.1)


def trained_resnet9(make_cfg, monkeypatch) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A quarter-width ResNet-9 after one epoch (16 steps of batch 128) on 2048 synthetic
    images, with the training subset's clean images and labels: the model taken from the
    monitor after the last epoch."""
    kept = {}
    after_epoch = monitor.Diagnostics.after_epoch

    def keep(self, run, row, last):
        if last:
            kept["model"] = copy.deepcopy(run.model).float().train()
            kept["x"] = run.maker.batch(torch.arange(len(run.train_y))).float().contiguous()
            kept["y"] = run.train_y.clone()
        return after_epoch(self, run, row, last)

    monkeypatch.setattr(monitor.Diagnostics, "after_epoch", keep)
    train(make_cfg("model=resnet9", "model.width=0.25", "batch_size=128",
                   "data.train_size=2048", "epochs=1", "threads=1", "diag.noise=true"))
    return kept["model"], kept["x"], kept["y"]


@pytest.mark.slow
def test_the_estimator_agrees_with_the_chunk_variance_on_a_quarter_width_resnet9(
        make_cfg, monkeypatch):
    """Batch 128 (quarter 32), 8 passes over the 2048 examples (128 measurements); direct
    chunks of 32 over 4 orders, and of 128 over 2 (reported: the noise scales as 1/batch)."""
    model, x, y = trained_resnet9(make_cfg, monkeypatch)
    noise = estimator(model, x, y, 128, passes=8, seed=2)
    rows = compare(noise, direct(model, x, y, 32, orders=4, seed=3))
    chunks_128 = direct(model, x, y, 128, orders=2, seed=4)
    print(rows, chunks_128, noise.summary(), sep="\n")
    assert_agree(rows)
