"""The forgetting horizon, in examples: how many examples ago a batch must have been seen for its
loss under the final model to be back at a level, two of them:

- **test level**: `(1 - within) x test loss`. A batch of a set the model has partly memorised
  may never get back there within the probe (its older passes still count): then there is no
  horizon, it lies "beyond" the examples probed.
- **half rise**: half-way from the most recent bin's loss to the oldest quarter of the probe's
  (its plateau): how fast a seen batch's advantage fades, whatever level it fades to. Defined
  whenever the loss rises with recency; this is what the batch-size premise compares.

The probe (forgetting/core/probe.py) gives one row per replayed batch: `steps_ago` steps were
taken after it, so it was seen `steps_ago x batch_size` examples ago. The rows are put into bins
of `bin_examples` (the same width at every batch size) and the horizon is where the binned mean
loss first reaches the level: linear between the last bin below and the first at or above it,
each placed at its batches' mean examples ago (the first bin's place when it is already
there). A curve that never reaches the level within the probed examples has no horizon (None).
The interval is a percentile bootstrap over the run's batches (rows drawn with replacement, the
same bins, the half-rise level drawn again with them); a draw with no horizon counts as beyond
every finite one.
"""

from __future__ import annotations

import math

import numpy as np

DRAWS = 1000


HALF = "half"  # the level of the half-rise horizon


def binned(examples_ago: np.ndarray, loss: np.ndarray, bin_examples: float):
    """(each bin's mean examples ago, its mean loss), most recent first."""
    bins = np.floor(examples_ago / bin_examples).astype(np.int64)
    _, inverse = np.unique(bins, return_inverse=True)
    counts = np.bincount(inverse)
    return (np.bincount(inverse, weights=examples_ago) / counts,
            np.bincount(inverse, weights=loss) / counts)


def horizon(examples_ago: np.ndarray, loss: np.ndarray, level: float | str,
            bin_examples: float) -> float | None:
    """Examples ago at which the binned mean loss first reaches `level` (a loss, or HALF:
    half-way from the most recent bin to the oldest quarter of the probe), or None."""
    centres, means = binned(examples_ago, loss, bin_examples)
    if level == HALF:
        old = examples_ago >= 0.75 * (examples_ago.max() + bin_examples)
        if not old.any() or len(means) < 2:
            return None
        level = (means[0] + loss[old].mean()) / 2
    above = np.nonzero(means >= level)[0]
    if not len(above):
        return None
    i = int(above[0])
    if i == 0:
        return float(centres[0])
    m0, m1, c0, c1 = means[i - 1], means[i], centres[i - 1], centres[i]
    return float(c0 + (level - m0) / (m1 - m0) * (c1 - c0))


def draws(examples_ago: np.ndarray, loss: np.ndarray, level: float | str, bin_examples: float,
          n: int = DRAWS, seed: int = 0) -> np.ndarray:
    """`n` bootstrap horizons (inf where a draw has none)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for k in range(n):
        pick = rng.integers(0, len(loss), len(loss))
        h = horizon(examples_ago[pick], loss[pick], level, bin_examples)
        out[k] = math.inf if h is None else h
    return out


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5% and 97.5% points (inf where more than that share of draws are beyond)."""
    lo, hi = np.quantile(values, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


def run_horizon(rows, within: float, bin_examples: float, seed: int = 0) -> dict:
    """One run's final probe rows (a DataFrame with steps_ago, loss, test_loss, batch_size):
    its test-level horizon in examples with a 95% interval (`horizon`, `lo`, `hi`, `draws`),
    its half-rise horizon (`half`, `half_lo`, `half_hi`, `half_draws`), the examples probed
    and the examples per pass."""
    batch = float(rows["batch_size"].iloc[0])
    ago = rows["steps_ago"].to_numpy(dtype=float) * batch
    loss = rows["loss"].to_numpy(dtype=float)
    level = (1 - within) * float(rows["test_loss"].iloc[0])
    later = rows[rows["steps_ago"] > 0]
    per_pass = float((later["steps_ago"] / later["epochs_ago"]).median() * batch) \
        if len(later) else math.nan
    sample = draws(ago, loss, level, bin_examples, seed=seed)
    half = draws(ago, loss, HALF, bin_examples, seed=seed)
    lo, hi = interval(sample)
    half_lo, half_hi = interval(half)
    return {"horizon": horizon(ago, loss, level, bin_examples), "lo": lo, "hi": hi,
            "half": horizon(ago, loss, HALF, bin_examples), "half_lo": half_lo,
            "half_hi": half_hi, "probed": float(ago.max() + batch), "per_pass": per_pass,
            "batches": len(loss), "draws": sample, "half_draws": half}


def ratio(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float] | None:
    """The ratio a/b of two runs' horizons from their bootstrap draws (drawn independently):
    (median, 2.5%, 97.5%); None when either run's horizon is beyond its probe in over 2.5% of
    its draws (the ratio is then not bounded)."""
    if np.mean(np.isinf(a)) > 0.025 or np.mean(np.isinf(b)) > 0.025:
        return None
    finite = np.isfinite(a) & np.isfinite(b)
    r = a[finite] / b[finite]
    lo, mid, hi = np.quantile(r, [0.025, 0.5, 0.975], method="inverted_cdf")
    return float(mid), float(lo), float(hi)
