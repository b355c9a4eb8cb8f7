"""The noise scale's statistics: the training estimator against a direct estimate at fixed
weights, the bootstrap interval's coverage on a problem with known gradient covariance, the
not-enough-measurements and not-resolved notes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from forgetting.core.diagnostics.noise import (
    MIN_MEASUREMENTS,
    NoiseScale,
    gradient_sq_norms,
)
from forgetting.core.model import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def constructed_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n 16x16 images in random order: one fixed random pattern per class (10 classes) plus
    unit noise. (In class order, consecutive chunks would be class-balanced: less noisy than
    random batches.)"""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(10, 3, 16, 16, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = patterns[y] + torch.randn(n, 3, 16, 16, generator=gen)
    return x, y


def chunk_gradients(model, x, y, size: int) -> torch.Tensor:
    """Flat mean-loss gradient of each disjoint chunk of `size` examples, in train mode
    (BatchNorm over the chunk); buffers restored."""
    saved = [b.clone() for b in model.buffers()]
    params = list(model.parameters())
    rows = []
    for start in range(0, len(x), size):
        loss = F.cross_entropy(model(x[start:start + size]), y[start:start + size])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    with torch.no_grad():
        for b, s in zip(model.buffers(), saved):
            b.copy_(s)
    return torch.stack(rows)


def test_the_estimator_at_fixed_weights_agrees_with_the_chunk_variance():
    """No training between measurements: the two-size estimator over every batch of an epoch
    (batch 64, quarter 16; 4 epochs of fresh batch orders) gives B_simple within 15% of the
    direct estimate from the variance of disjoint train-mode chunk gradients over the whole
    training set."""
    torch.manual_seed(0)
    n, big = 2048, 64
    x, y = constructed_data(n, seed=1)
    model = build_model("tiny", width=0.5).train()

    direct = {}
    for size in (16, 64):  # chunk sizes: the noise scales as 1/batch between them
        g = chunk_gradients(model, x, y, size)
        trace = size * float(((g - g.mean(0)) ** 2).sum(1).sum()) / (len(g) - 1)
        grad_sq = float(g.mean(0).pow(2).sum()) - trace / n
        direct[size] = (trace, grad_sq, trace / grad_sq)
    assert direct[16][2] == pytest.approx(direct[64][2], rel=0.1)

    noise = NoiseScale()
    gen = torch.Generator().manual_seed(2)
    for _ in range(4):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, big):
            idx = order[start:start + big]
            small_sq, big_sq = gradient_sq_norms(model, x[idx], y[idx], big // 4)
            noise.add(small_sq, big // 4, big_sq, big)
    assert noise.count == 4 * n // big
    trace, grad_sq, b_simple = direct[64]
    assert noise.trace_sigma() == pytest.approx(trace, rel=0.15)
    assert noise.gradient_sq() == pytest.approx(grad_sq, rel=0.15)
    assert noise.b_simple() == pytest.approx(b_simple, rel=0.15)
    s = noise.summary()
    assert s["noise_scale_lo"] < s["noise_scale"] < s["noise_scale_hi"]
    assert s["noise_note"] is None and s["noise_measurements"] == 128


def synthetic_measurements(seed: int, count: int, d: int = 50, big: int = 64,
                           small: int = 16) -> tuple[NoiseScale, float]:
    """`count` measurements of per-example gradients G + s*z (z standard normal), the small
    batch the big one's first quarter; returns them and the true B_simple = sum s^2/|G|^2."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.full((d,), 0.1, dtype=torch.float64)  # |G|^2 = 0.5
    s = torch.linspace(0.5, 1.5, d, dtype=torch.float64)
    per_example = g + s * torch.randn(count, big, d, generator=gen, dtype=torch.float64)
    small_sq = per_example[:, :small].mean(1).pow(2).sum(1)
    big_sq = per_example.mean(1).pow(2).sum(1)
    noise = NoiseScale()
    for a, b in zip(small_sq.tolist(), big_sq.tolist()):
        noise.add(a, small, b, big)
    return noise, float((s ** 2).sum() / g.pow(2).sum())


def test_the_interval_covers_the_true_noise_scale_in_nine_of_ten_seeds():
    covered = {"noise_scale": 0, "grad_sq": 0, "trace_sigma": 0}
    for seed in range(50):
        noise, true_b = synthetic_measurements(seed, count=100)
        s = noise.summary()
        truth = {"noise_scale": true_b, "grad_sq": 0.5, "trace_sigma": true_b * 0.5}
        for name, value in truth.items():
            covered[name] += s[f"{name}_lo"] <= value <= s[f"{name}_hi"]
        assert s["noise_measurements"] == 100
    assert all(c >= 45 for c in covered.values()), covered


def test_too_few_measurements_give_nan_and_say_why():
    noise, _ = synthetic_measurements(0, count=MIN_MEASUREMENTS - 1)
    s = noise.summary()
    assert math.isnan(s["noise_scale"]) and math.isnan(s["noise_scale_lo"])
    assert math.isnan(s["grad_sq"]) and math.isnan(s["trace_sigma_hi"])
    assert s["noise_measurements"] == 9
    assert s["noise_note"] == "not measured: 9 measurement(s), fewer than 10"
    assert math.isfinite(noise.b_simple())  # the point estimate exists; it is not reported
    more, _ = synthetic_measurements(0, count=MIN_MEASUREMENTS)
    assert math.isfinite(more.summary()["noise_scale"])


def test_an_unresolved_gradient_gives_an_unbounded_interval_and_a_note():
    """|G|^2 tiny against the noise: its interval reaches 0, B_simple has no upper end."""
    gen = torch.Generator().manual_seed(3)
    noise = NoiseScale()
    for _ in range(20):
        per_example = 0.001 + torch.randn(64, 50, generator=gen, dtype=torch.float64)
        noise.add(float(per_example[:16].mean(0).pow(2).sum()), 16,
                  float(per_example.mean(0).pow(2).sum()), 64)
    s = noise.summary()
    assert s["grad_sq_lo"] <= 0 < s["grad_sq_hi"]
    assert s["noise_scale_hi"] == math.inf
    assert s["noise_note"].startswith("not resolved: the |G|^2 interval reaches 0 over 20")
    assert s["trace_sigma_lo"] <= 50 <= s["trace_sigma_hi"]


def test_the_summary_is_deterministic_and_survives_a_state_round_trip():
    noise, _ = synthetic_measurements(4, count=30)
    copied = NoiseScale()
    copied.load(noise.state())
    assert copied.summary() == noise.summary()
    assert all(isinstance(v, float) for vs in noise.state().values() for v in vs)
    assert noise.summary(prefix="run_")["run_noise_measurements"] == 30


def test_many_measurements_give_the_same_interval_in_blocks():
    """The bootstrap draws its resamples in blocks (bounded memory); the interval is still
    the percentile interval of the ratio of means."""
    noise, true_b = synthetic_measurements(5, count=2000, d=10)
    s = noise.summary()
    assert s["noise_scale_lo"] < true_b < s["noise_scale_hi"]
    assert s["noise_scale_hi"] - s["noise_scale_lo"] < 0.2 * true_b
    old = NoiseScale()
    old.load({"count": 3, "sum_gradient_sq": 1.0, "sum_trace_sigma": 9.0})  # older checkpoint
    assert old.count == 0
