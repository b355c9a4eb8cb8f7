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


def horizons(weights: np.ndarray, examples_ago: np.ndarray, loss: np.ndarray,
             level: float | str, bin_examples: float) -> np.ndarray:
    """The horizon of each row of `weights` (draws x batches: how often a draw takes each
    batch; ones for the data as they are), inf where a draw's curve never reaches `level`.
    All draws at once: the bins are fixed, a bin a draw leaves empty is skipped."""
    bins = np.floor(examples_ago / bin_examples).astype(np.int64)
    _, inverse = np.unique(bins, return_inverse=True)
    onehot = np.zeros((len(loss), inverse.max() + 1))
    onehot[np.arange(len(loss)), inverse] = 1
    counts = weights @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ (onehot * loss[:, None])) / counts
        places = (weights @ (onehot * examples_ago[:, None])) / counts
    valid = counts > 0
    draws, width = means.shape
    rows = np.arange(draws)
    if level == HALF:
        old = examples_ago >= 0.75 * (examples_ago.max() + bin_examples)
        if not old.any() or width < 2:
            return np.full(draws, np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            plateau = (weights[:, old] @ loss[old]) / weights[:, old].sum(1)
        levels = (means[rows, valid.argmax(1)] + plateau) / 2
    else:
        levels = np.full(draws, float(level))
    above = valid & (means >= levels[:, None])
    i = above.argmax(1)
    # the last non-empty bin before the first one at or above the level (-1: none)
    last = np.maximum.accumulate(np.where(valid, np.arange(width), -1), axis=1)
    j = np.where(i > 0, last[rows, np.maximum(i - 1, 0)], -1)
    m0, m1 = means[rows, j], means[rows, i]
    c0, c1 = places[rows, j], places[rows, i]
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = np.where(j >= 0, c0 + (levels - m0) / (m1 - m0) * (c1 - c0), c1)
    return np.where(above.any(1), crossing, np.inf)


def horizon(examples_ago: np.ndarray, loss: np.ndarray, level: float | str,
            bin_examples: float) -> float | None:
    """Examples ago at which the binned mean loss first reaches `level` (a loss, or HALF:
    half-way from the most recent bin to the oldest quarter of the probe), or None."""
    h = horizons(np.ones((1, len(loss))), np.asarray(examples_ago, dtype=float),
                 np.asarray(loss, dtype=float), level, bin_examples)[0]
    return None if math.isinf(h) else float(h)


def draws(examples_ago: np.ndarray, loss: np.ndarray, level: float | str, bin_examples: float,
          n: int = DRAWS, seed: int = 0) -> np.ndarray:
    """`n` bootstrap horizons (inf where a draw has none): each draw takes the run's batches
    with replacement (as counts per batch)."""
    rng = np.random.default_rng(seed)
    m = len(loss)
    picks = rng.integers(0, m, (n, m)) + m * np.arange(n)[:, None]
    weights = np.bincount(picks.ravel(), minlength=n * m).reshape(n, m)
    return horizons(weights.astype(float), np.asarray(examples_ago, dtype=float),
                    np.asarray(loss, dtype=float), level, bin_examples)


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
