"""The noise scale's statistics: the intervals' closed forms (Student t, Fieller), the
not-enough-measurements and not-resolved notes, the summary's determinism. Coverage on
simulated measurements: tests/test_noise_coverage.py; the estimator against a direct estimate
at fixed weights: tests/test_noise_fixed_weights.py."""

from __future__ import annotations

import math

import pytest
import torch

from forgetting.core.diagnostics.intervals import (
    mean_interval,
    moments,
    ratio_interval,
    t_quantile,
)
from forgetting.core.diagnostics.noise import MIN_MEASUREMENTS, NoiseScale


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


def test_many_measurements_give_a_narrow_interval_around_the_truth():
    noise, true_b = synthetic_measurements(5, count=2000, d=10)
    s = noise.summary()
    assert s["noise_scale_lo"] < true_b < s["noise_scale_hi"]
    assert s["noise_scale_hi"] - s["noise_scale_lo"] < 0.2 * true_b
    old = NoiseScale()
    old.load({"count": 3, "sum_gradient_sq": 1.0, "sum_trace_sigma": 9.0})  # older checkpoint
    assert old.count == 0


def test_the_t_quantile_equals_scipy_s():
    stats = pytest.importorskip("scipy.stats")
    for level in (0.5, 0.9, 0.95, 0.99):
        for dof in [*range(1, 80), 200, 10 ** 4]:
            expected = stats.t.ppf((1 + level) / 2, dof)
            assert t_quantile(level, dof) == pytest.approx(expected, rel=1e-8), (level, dof)


def test_the_intervals_ends_are_where_the_t_statistic_reaches_its_quantile():
    """mean_interval: mean +- q*se. ratio_interval: at each finite end R, the t statistic of
    mean(x - R*y) is exactly q (Fieller's set is where it is <= q)."""
    gen = torch.Generator().manual_seed(6)
    y = (1.0 + torch.randn(12, generator=gen, dtype=torch.float64)).tolist()
    x = (5.0 + 3 * torch.randn(12, generator=gen, dtype=torch.float64)).tolist()
    q = t_quantile(0.95, 11)
    mx, my, vxx, vyy, vxy = moments(x, y)
    assert mean_interval(y, 0.95) == pytest.approx((my - q * vyy ** 0.5, my + q * vyy ** 0.5))
    lo, hi = ratio_interval(x, y, 0.95)
    assert lo < mx / my < hi
    for r in (lo, hi):
        assert abs(mx - r * my) / math.sqrt(vxx - 2 * r * vxy + r * r * vyy) == \
            pytest.approx(q, rel=1e-9)


@pytest.mark.parametrize("mean_y, expected", [
    (0.2, "unbounded"),  # the interval of E[y] reaches 0: (lo, +inf)
    (-5.0, "nan"),  # it lies below 0: no ratio >= 0 fits
])
def test_a_denominator_near_or_below_zero(mean_y, expected):
    gen = torch.Generator().manual_seed(7)
    y = (mean_y + torch.randn(10, generator=gen, dtype=torch.float64)).tolist()
    x = (5.0 + torch.randn(10, generator=gen, dtype=torch.float64)).tolist()
    lo, hi = ratio_interval(x, y, 0.95)
    if expected == "unbounded":
        assert 0 < lo < math.inf == hi
    else:
        assert math.isnan(lo) and math.isnan(hi)
