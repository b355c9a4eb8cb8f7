"""The critical batch size, measured: steps to a target against batch size (McCandlish et al.
2018, eq. 2.11; Shallue et al. 2019).

With S optimiser steps and E = S B examples to reach a fixed target at batch size B (each B
with its best LR), S = S_min (1 + B_noise / B) and E = E_min (1 + B / B_noise), so that
B_crit = E_min / S_min = B_noise. `fit` fits S(B) by least squares on log S: run-to-run noise
in steps is multiplicative (a few percent at every batch size), and a fit on S itself would let
the smallest batch's thousands of steps outweigh the largest batch's tens (on the quick sweep
such a fit put S_min at 17 steps where the largest batch took 78). For a given B_noise the best
log S_min is the mean of log S - log(1 + B_noise/B); B_noise is found by a search on a log
grid refined by golden section. `bootstrap` resamples the seeds (with replacement, the same
draw for every batch size) and refits, for 95% percentile intervals. These are what a sweep
over batch sizes is read with; the sweep itself (LR tuned per batch size, the step at which the
loss first crosses the target) is the preset's.

With 3 seeds the percentile bootstrap is short of its 95%: on simulated sweeps (batch 32 ...
1024, 5% noise on each run's steps, 40 sweeps, tests/test_critical.py) it covered the true
B_crit in 29 and S_min in 28 of 40. Read an interval from 3 seeds as narrower than it
should be.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    s_min: float  # steps at an infinite batch
    e_min: float  # examples at a batch of one
    b_noise: float  # the batch at which S is twice S_min
    b_crit: float  # E_min / S_min (= B_noise under the fitted curve)

    def steps(self, batch: float) -> float:
        """Steps to the target at `batch`, by the fit."""
        return self.s_min * (1 + self.b_noise / batch)


LOW, HIGH = 1e-3, 1e3  # the search for B_noise: these times the smallest and largest batch


def _sse(batches: list[float], logs: list[float], b_noise: float) -> tuple[float, float]:
    """(sum of squared log residuals, log S_min) of the fit with this B_noise."""
    shape = [math.log1p(b_noise / b) for b in batches]
    log_s_min = sum(y - x for y, x in zip(logs, shape)) / len(logs)
    return sum((y - log_s_min - x) ** 2 for y, x in zip(logs, shape)), log_s_min


def fit(batches: list[float], steps: list[float]) -> Fit:
    """Fit S = S_min (1 + B_noise/B) to (batch, steps) pairs (one per run, or one mean per
    batch size) by least squares on log S. ValueError when the best B_noise lies at the end of
    its search (the steps do not fall with the batch, or fall as 1/B throughout: no S_min)."""
    if len(batches) != len(steps) or len(set(batches)) < 2:
        raise ValueError("needs steps at two or more batch sizes")
    if min(steps) <= 0:
        raise ValueError("the steps must be positive")
    logs = [math.log(s) for s in steps]
    lo, hi = math.log(LOW * min(batches)), math.log(HIGH * max(batches))
    grid = [lo + (hi - lo) * k / 400 for k in range(401)]
    errors = [_sse(batches, logs, math.exp(g))[0] for g in grid]
    k = min(range(len(grid)), key=errors.__getitem__)
    if k in (0, len(grid) - 1):
        raise ValueError("the steps do not follow S = S_min (1 + B_noise/B) with positive "
                         f"S_min and B_noise (the best B_noise is at the end of its search, "
                         f"{math.exp(grid[k]):.4g})")
    a, b = grid[k - 1], grid[k + 1]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - golden * (b - a), a + golden * (b - a)
        if _sse(batches, logs, math.exp(c))[0] < _sse(batches, logs, math.exp(d))[0]:
            b = d
        else:
            a = c
    b_noise = math.exp((a + b) / 2)
    s_min = math.exp(_sse(batches, logs, b_noise)[1])
    return Fit(s_min, s_min * b_noise, b_noise, b_noise)


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
