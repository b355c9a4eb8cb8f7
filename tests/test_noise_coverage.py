"""The noise scale's 95% intervals cover the truth 95% of the time at the fewest measurements
that give a value (noise.MIN_MEASUREMENTS), on simulated measurements with a known gradient
mean and covariance.

The simulation. A per-example gradient is G + e, e ~ N(0, Sigma), in a few dimensions (the
squared norms depend only on Sigma's eigenvalues and G's components along them, so Sigma is
diagonal). One measurement is a batch of B such examples and its first b: the mean of b draws
is G + N(0, Sigma/b) exactly, the mean of the other B - b is G + N(0, Sigma/(B - b)), and
G_B = (b*G_b + (B - b)*G_rest)/B, so drawing the two means is drawing the batch. The project's
NoiseScale gets |G_b|^2 and |G_B|^2 as training hands them over, with the estimator's real bias
(B_simple is a ratio of two noisy means) and skew (squared norms of Gaussian vectors).
"""

from __future__ import annotations

import numpy as np
import pytest

from forgetting.core.diagnostics.noise import MIN_MEASUREMENTS, NoiseScale

SEEDS = 1000  # Monte-Carlo s.e. of a coverage of 0.95: sqrt(0.95*0.05/1000) = 0.007


def spectrum(directions: int, power: float, trace: float, grad_sq: float,
             seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sigma's eigenvalues proportional to j^-power (j = 1..directions) summing to `trace`, and
    a gradient G of squared norm `grad_sq` in a random direction."""
    eigen = np.arange(1, directions + 1, dtype=float) ** -power
    g = np.random.default_rng(seed).standard_normal(directions)
    return eigen * trace / eigen.sum(), g * np.sqrt(grad_sq) / np.linalg.norm(g)


# B = 128, b = 32 and tr(Sigma), |G|^2 as measured on the quarter-width ResNet-9 at fixed
# weights (docs/diagnostics-statistics.md: 93 and 0.27, B_simple about 345). 40 directions with
# eigenvalues ~ j^-1/2 give the interval width seen there (one pass of 48 measurements: upper
# end / lower end about 2.5); 5 directions are far noisier (most 10-measurement intervals
# unbounded), 2000 quieter (none); the older test's problem is isotropic-ish at B = 64.
REGIMES = {
    "resnet_like": (spectrum(40, 0.5, 93.0, 0.27, seed=0), 128, 32),
    "noisier": (spectrum(5, 1.0, 93.0, 0.27, seed=0), 128, 32),
    "quieter": (spectrum(2000, 0.5, 93.0, 0.27, seed=0), 128, 32),
    "batch_64": ((np.linspace(0.5, 1.5, 50) ** 2, np.full(50, 0.1)), 64, 16),
}


def simulate(regime: str, seeds: int, count: int, seed: int = 1) -> tuple[np.ndarray, ...]:
    """(|G_b|^2, |G_B|^2) of `count` measurements for each of `seeds` runs, arrays of shape
    (seeds, count), and the true |G|^2, tr(Sigma) and B_simple."""
    (eigen, g), big, small = REGIMES[regime]
    rng = np.random.default_rng(seed)
    shape = (seeds, count, len(eigen))
    g_small = g + rng.standard_normal(shape) * np.sqrt(eigen / small)
    g_rest = g + rng.standard_normal(shape) * np.sqrt(eigen / (big - small))
    g_big = (small * g_small + (big - small) * g_rest) / big
    grad_sq, trace = float(g @ g), float(eigen.sum())
    return ((g_small ** 2).sum(-1), (g_big ** 2).sum(-1), grad_sq, trace, trace / grad_sq)


def coverage(regime: str, count: int, seeds: int = SEEDS) -> dict[str, float]:
    """Share of `seeds` simulated runs whose NoiseScale.summary interval holds the true value,
    for noise_scale, grad_sq and trace_sigma, and the share with an unbounded B_simple."""
    (eigen, _), big, small = REGIMES[regime]
    small_sq, big_sq, grad_sq, trace, b_simple = simulate(regime, seeds, count)
    truth = {"noise_scale": b_simple, "grad_sq": grad_sq, "trace_sigma": trace}
    hits = dict.fromkeys(truth, 0)
    unbounded = 0
    for run in range(seeds):
        noise = NoiseScale()
        for a, b in zip(small_sq[run].tolist(), big_sq[run].tolist()):
            noise.add(a, small, b, big)
        s = noise.summary()
        for name, value in truth.items():
            hits[name] += s[f"{name}_lo"] <= value <= s[f"{name}_hi"]
        unbounded += s["noise_scale_hi"] == float("inf")
    return {**{k: v / seeds for k, v in hits.items()}, "unbounded": unbounded / seeds}


@pytest.mark.parametrize("regime", list(REGIMES))
def test_the_interval_of_b_simple_covers_95_percent_at_the_minimum_count(regime):
    """1000 simulated runs of MIN_MEASUREMENTS (10) measurements each: Fieller's interval
    holds the true B_simple in >= 0.93 of them (nominal 0.95; Monte-Carlo s.e. 0.007, so 0.93
    is 3 s.e. below). With 4000 runs per regime it covered 0.948-0.954, where the percentile
    bootstrap used before covered 0.896-0.911 (0.935-0.942 even at 48 measurements;
    docs/diagnostics-statistics.md). The Student-t intervals cover |G|^2 0.950-0.958 and
    tr(Sigma) 0.920-0.954: the mean of 10 skewed tr(Sigma) estimates, lowest in the noisiest
    regime."""
    c = coverage(regime, MIN_MEASUREMENTS)
    assert c["noise_scale"] >= 0.93, c
    assert c["grad_sq"] >= 0.93, c
    assert c["trace_sigma"] >= 0.90, c
    if regime == "noisier":  # the check is not only of bounded intervals
        assert c["unbounded"] > 0.5, c


def test_the_run_level_interval_covers_95_percent_over_many_measurements():
    """The run's value uses the same code over every measurement: 200 simulated runs of 192
    measurements (four quick-preset epochs at batch 128) cover >= 0.92 (s.e. 0.015). With
    2000 runs: 0.948 at 192 measurements, 0.949 at 1000 (fixed true values: a run whose true
    values drift is covered for the averages over its measured steps)."""
    c = coverage("resnet_like", 192, seeds=200)
    assert c["noise_scale"] >= 0.92, c
    assert c["unbounded"] == 0, c
