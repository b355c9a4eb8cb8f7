"""When a step benchmark's figures cannot be trusted: ours faster than the ceiling (the same
step without any data pipeline: impossible unless the machine's load changed between rounds),
or rounds that disagree by more than MAX_SPREAD. Pure functions of a case's figures."""

from __future__ import annotations

MAX_SPREAD = 0.20  # (fastest - slowest) / median images per second over rounds


def spread(low: float, high: float, median: float) -> float:
    return (high - low) / median if median > 0 else float("inf")


def untrusted(case: dict) -> list[str]:
    """Why the figures of one case (bench/steps.py bench_case) cannot be trusted; [] if they
    can."""
    reasons = []
    if case["of_ceiling"] > 1:
        reasons.append(f"ours above the ceiling ({100 * case['of_ceiling']:.0f}%)")
    for name in ("ours", "ceiling"):
        low_high = case.get(f"{name}_spread")
        if low_high is None:
            continue
        s = spread(low_high[0], low_high[1], case[f"{name}_img_s"])
        if s > MAX_SPREAD:
            reasons.append(f"rounds of {name} spread {100 * s:.0f}% (> {100 * MAX_SPREAD:.0f}%)")
    return reasons


def advice(reasons: list[str], repeats: int) -> str:
    """The line printed under an untrusted case."""
    return (f"  not trusted: {'; '.join(reasons)} (the machine's load changed while timing?); "
            f"rerun with more rounds, e.g. --repeats {max(2 * repeats, repeats + 4)}, on an "
            "idle machine")
