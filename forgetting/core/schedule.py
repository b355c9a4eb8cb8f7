"""Learning-rate schedules: tiny pure functions of progress measured in epochs."""

from __future__ import annotations

import bisect


def piecewise_linear(t: float, knots: list[float], values: list[float]) -> float:
    """Linear interpolation between (knot, value) pairs; flat outside the knots."""
    if t <= knots[0]:
        return float(values[0])
    if t >= knots[-1]:
        return float(values[-1])
    i = bisect.bisect_right(knots, t)
    t0, t1, v0, v1 = knots[i - 1], knots[i], values[i - 1], values[i]
    return float(v0 + (v1 - v0) * (t - t0) / (t1 - t0))


def stretch(knots: list[float], epochs: float) -> list[float]:
    """Rescale knots so the schedule's last knot falls on `epochs` (shape preserved)."""
    scale = epochs / knots[-1]
    return [k * scale for k in knots]
