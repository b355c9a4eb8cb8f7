"""The critical batch size, measured: steps to a target against batch size (McCandlish et al.
2018, eq. 2.11; Shallue et al. 2019).

With S optimiser steps and E = S B examples to reach a fixed target at batch size B (each B
with its best LR), S = S_min (1 + B_noise / B) and E = E_min (1 + B / B_noise): S is linear in
1/B (intercept S_min, slope S_min B_noise) and E is linear in B (intercept E_min, slope
E_min / B_noise). `fit` fits both by least squares and gives B_crit = E_min / S_min (equal to
B_noise when both lines hold exactly); `bootstrap` resamples the seeds (with replacement, the
same draw for every batch size) and refits, for 95% percentile intervals of each. These are
what a sweep over batch sizes is read with; the sweep itself (LR tuned per batch size, the step
at which the loss first crosses the target) is the preset's.

With 3 seeds the percentile bootstrap is short of its 95%: on simulated sweeps (batch 32 ...
1024, 5% noise on each run's steps, 40 sweeps, tests/test_critical.py) it covered the true
B_crit in 30 and S_min in 34 of 40. Read an interval from 3 seeds as narrower than it should be.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    s_min: float  # steps at an infinite batch
    e_min: float  # examples at a batch of one
    b_noise: float  # from the steps' line: slope / intercept
    b_crit: float  # E_min / S_min

    def steps(self, batch: float) -> float:
        """Steps to the target at `batch`, by the steps' line."""
        return self.s_min * (1 + self.b_noise / batch)


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through (xs, ys)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("needs at least two batch sizes")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def fit(batches: list[float], steps: list[float]) -> Fit:
    """Fit S = S_min (1 + B_noise/B) and E = S B = E_min (1 + B/B_noise) to (batch, steps)
    pairs (one per run, or one mean per batch size). ValueError when the lines do not give
    positive parameters (the steps do not fall with the batch, or the examples do not rise)."""
    if len(batches) != len(steps) or len(set(batches)) < 2:
        raise ValueError("needs steps at two or more batch sizes")
    s_min, slope = _line([1 / b for b in batches], list(steps))
    e_min, e_slope = _line(list(batches), [s * b for s, b in zip(steps, batches)])
    if not (s_min > 0 and slope > 0 and e_min > 0 and e_slope > 0):
        raise ValueError("the steps do not follow S = S_min (1 + B_noise/B) with positive "
                         f"S_min and B_noise (S_min {s_min:.4g}, E_min {e_min:.4g})")
    return Fit(s_min, e_min, slope / s_min, e_min / s_min)


def bootstrap(runs: dict[float, list[float]], draws: int = 2000, seed: int = 0
              ) -> dict[str, tuple[float, float, float]]:
    """{name: (estimate, low, high)} for s_min, e_min, b_noise and b_crit: the fit of the mean
    steps per batch size, and the 2.5% and 97.5% points of the fits of `draws` resamples of
    the seeds. `runs`: batch size -> steps to the target of each seed (in the seeds' order:
    one draw takes the same seeds at every batch size). Resamples whose fit fails are left
    out of the interval."""
    sizes = sorted(runs)
    seeds = min(len(runs[b]) for b in sizes)

    def fitted(picks: list[int]) -> Fit:
        return fit(sizes, [sum(runs[b][i] for i in picks) / len(picks) for b in sizes])

    estimate = fitted(list(range(seeds)))
    rng = random.Random(seed)
    samples = []
    for _ in range(draws):
        try:
            samples.append(fitted([rng.randrange(seeds) for _ in range(seeds)]))
        except ValueError:
            continue
    out = {}
    for name in ("s_min", "e_min", "b_noise", "b_crit"):
        values = sorted(getattr(f, name) for f in samples)
        lo = values[int(0.025 * (len(values) - 1))] if values else float("nan")
        hi = values[int(0.975 * (len(values) - 1))] if values else float("nan")
        out[name] = (getattr(estimate, name), lo, hi)
    return out
