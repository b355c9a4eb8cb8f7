"""The critical batch size from steps to a target (forgetting/analysis/critical.py): the fit
recovers known S_min and B_noise, and the bootstrap over seeds covers them."""

from __future__ import annotations

import random

import pytest

from forgetting.analysis.critical import bootstrap, fit

SIZES = [32, 64, 128, 256, 512, 1024]


def test_exact_steps_give_back_their_parameters():
    s_min, b_noise = 800.0, 300.0
    result = fit(SIZES, [s_min * (1 + b_noise / b) for b in SIZES])
    assert result.s_min == pytest.approx(s_min)
    assert result.b_noise == pytest.approx(b_noise)
    assert result.e_min == pytest.approx(s_min * b_noise)
    assert result.b_crit == pytest.approx(b_noise)  # both lines hold: B_crit = B_noise
    assert result.steps(300.0) == pytest.approx(2 * s_min)


def test_noisy_seeds_give_intervals_that_cover_the_truth():
    """3 seeds, 5% noise on each run's steps, 40 such sweeps: the 95% intervals of B_crit
    and S_min cover the true values in most of them, and are not degenerate."""
    s_min, b_noise = 1000.0, 256.0
    covered = {"b_crit": 0, "s_min": 0}
    for trial in range(40):
        rng = random.Random(trial)
        runs = {b: [s_min * (1 + b_noise / b) * rng.gauss(1, 0.05) for _ in range(3)]
                for b in SIZES}
        out = bootstrap(runs, draws=400, seed=trial)
        for name, truth in (("b_crit", b_noise), ("s_min", s_min)):
            estimate, lo, hi = out[name]
            assert lo <= estimate <= hi and lo < hi
            covered[name] += lo <= truth <= hi
    assert covered["b_crit"] >= 27 and covered["s_min"] >= 26  # of 40 (measured 29, 28); nominal 38


def test_the_fit_weighs_every_batch_size_alike():
    """Steps with the same relative error at every batch size: a fit on log S keeps S_min near
    the truth where a fit on S would follow the smallest batch's large counts."""
    s_min, b_noise = 40.0, 600.0
    steps = [s_min * (1 + b_noise / b) * (1.1 if k % 2 else 0.9) for k, b in enumerate(SIZES)]
    result = fit(SIZES, steps)
    assert result.s_min == pytest.approx(s_min, rel=0.15)
    assert result.b_crit == pytest.approx(b_noise, rel=0.25)


def test_steps_that_do_not_fall_with_the_batch_are_refused():
    with pytest.raises(ValueError, match="do not follow"):
        fit(SIZES, [100.0 * b for b in SIZES])  # steps rising with the batch
    with pytest.raises(ValueError, match="two or more batch sizes"):
        fit([128, 128], [10.0, 11.0])
