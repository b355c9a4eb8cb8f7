"""Confidence intervals from n paired measurements: of a mean (Student t) and of a ratio of two
means (Fieller 1954). Closed forms, no resampling: the same measurements give the same interval.

Both treat the measurements as independent draws of one pair (x_i, y_i). For the ratio
R = E[x]/E[y], Fieller's interval is every R that a t-test does not reject for the mean of
d_i = x_i - R*y_i: mean(d) = 0 exactly at the true R when each x_i and y_i is an unbiased
estimate, whatever the bias of the ratio mean(x)/mean(y) itself. That is why it keeps its
coverage at ten measurements where a percentile bootstrap of the ratio does not (noise.py and
docs/diagnostics-statistics.md give the numbers). When the interval of mean(y) reaches 0 the
set has no upper end: the ratio is not resolved.
"""

from __future__ import annotations

import math
from statistics import NormalDist

EXACT_DOF = 60  # up to this many degrees of freedom the t quantile is inverted exactly


def t_coverage(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's T with an integer `dof` >= 1 (Abramowitz & Stegun 26.7.3-4:
    a finite sum in theta = atan(t/sqrt(dof)))."""
    theta = math.atan(t / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    if dof % 2:  # odd
        term, total = 1.0, 0.0
        for k in range(1, (dof - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 0.0
    for k in range(1, dof // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


def t_quantile(level: float, dof: int) -> float:
    """The two-sided quantile q with P(|T| <= q) = level for Student's T with `dof` >= 1
    degrees of freedom: bisection on the exact distribution up to EXACT_DOF, beyond it the
    Cornish-Fisher expansion in 1/dof (A&S 26.7.5; relative error < 1e-8 there)."""
    if dof < 1:
        raise ValueError(f"need dof >= 1, got {dof}")
    if dof > EXACT_DOF:
        z = NormalDist().inv_cdf((1 + level) / 2)
        g = ((z ** 3 + z) / 4,
             (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
        return z + sum(gk / dof ** (k + 1) for k, gk in enumerate(g))
    low, high = 0.0, 1.0
    while t_coverage(high, dof) < level:
        low, high = high, 2 * high
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_coverage(mid, dof) < level else (low, mid)
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


def moments(x: list[float], y: list[float]) -> tuple[float, float, float, float, float]:
    """Means of x and y and the variances and covariance OF THOSE MEANS (sample (co)variance
    with n - 1, divided by n); n >= 2."""
    n = len(x)
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    vxx = math.fsum((a - mx) ** 2 for a in x) / (n - 1) / n
    vyy = math.fsum((b - my) ** 2 for b in y) / (n - 1) / n
    vxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y)) / (n - 1) / n
    return mx, my, vxx, vyy, vxy


def mean_interval(x: list[float], level: float) -> tuple[float, float]:
    """Student-t interval of E[x] from n >= 2 measurements: mean +- q * s/sqrt(n)."""
    mean, _, var, _, _ = moments(x, x)
    half = t_quantile(level, len(x) - 1) * math.sqrt(var)
    return mean - half, mean + half


def ratio_interval(x: list[float], y: list[float], level: float) -> tuple[float, float]:
    """Fieller's interval of R = E[x]/E[y] >= 0 from n >= 2 pairs: the R >= 0 with
    (mean x - R mean y)^2 <= q^2 var(mean x - R mean y), q the t quantile with n - 1 degrees of
    freedom. Bounded when the t-interval of E[y] lies above 0; (lo, +inf) when it reaches 0
    (lo = 0 when the data exclude no R >= 0); (NaN, NaN) when it lies below 0 (no R >= 0 fits:
    the data contradict E[y] > 0)."""
    mx, my, vxx, vyy, vxy = moments(x, y)
    q2 = t_quantile(level, len(x) - 1) ** 2
    a = my * my - q2 * vyy  # > 0 exactly when the interval of E[y] excludes 0
    b = -2 * (mx * my - q2 * vxy)
    c = mx * mx - q2 * vxx
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    if a > 0:
        if my < 0:
            return math.nan, math.nan
        return max(0.0, (-b - root) / (2 * a)), max(0.0, (-b + root) / (2 * a))
    if a < 0 and c > 0:  # 0 is excluded: roots either side of it, R >= the positive one
        return (-b - root) / (2 * a), math.inf
    return 0.0, math.inf
