"""The gradient noise scale B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018, appendix A),
with its interval and the count of measurements behind it.

G is the true gradient of the mean loss and Sigma the covariance of a per-example gradient, so
that a batch of b examples drawn at random has E|G_b|^2 = |G|^2 + tr(Sigma)/b. Measuring the
squared norm of the mean-loss gradient at a small batch b and a big batch B gives, per
measurement, the unbiased estimates

    |G|^2     ~ (B*|G_B|^2 - b*|G_b|^2)/(B - b)
    tr(Sigma) ~ (|G_b|^2 - |G_B|^2)/(1/b - 1/B).

Each is noisy (|G|^2 is often negative for one measurement), so `NoiseScale` keeps every
measurement's pair and averages each estimate over the measurements BEFORE dividing:
B_simple = mean tr(Sigma) / mean |G|^2, a ratio of means. Units: squared norms are in (loss
per unit parameter)^2; B_simple is in examples - the batch size beyond which a bigger batch
stops paying off.

Uncertainty. `NoiseScale.summary` gives |G|^2 and tr(Sigma) with 95% Student-t intervals of
their means and B_simple with Fieller's 95% interval of the ratio of the means (intervals.py:
every R that a t-test on the mean of tr_i - R*|G|^2_i does not reject; closed forms, so the
same measurements give the same interval). Both treat the measurements as independent draws
of one pair: so at fixed weights; in training, where the true values drift, they are the
intervals of the averages over the measured steps. On simulated measurements with a known
gradient covariance (tests/test_noise_coverage.py) Fieller's interval covered the true
B_simple 0.948-0.954 of the time at 10 measurements, where the percentile bootstrap used before
covered 0.896-0.911. When the |G|^2 interval reaches 0, B_simple's upper end is +inf and the
value is "not resolved" (the noise swamps the signal; more measurements would resolve it).
With fewer than `MIN_MEASUREMENTS` measurements every value is NaN, with a note saying why.

Gradients here are of the loss only: L2 weight decay adds the same wd*w to every example's
gradient, which changes G but not Sigma, and is left out of both (it is not part of the noise
the batch size averages away).

Feeding it from training. The step already computes the big-batch gradient: with the SUMMED
loss, the mean-loss gradient is p.grad/B, so |G_B|^2 = `grad_sq_norm(model, B)` read after
backward and BEFORE optimizer.step() (our SGD adds wd*p into p.grad in place, forgetting/core/
sgd.py). The small-batch one costs one extra forward and backward over a slice of the batch
(b/B of a step); `gradient_sq_norms` does both passes when a step is not at hand. Both run in
train mode: BatchNorm normalises with the statistics of the batch it is given (the small
batch's own for |G_b|^2, as the optimiser's for |G_B|^2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forgetting.core.diagnostics.intervals import mean_interval, ratio_interval

# fewer give NaN: one to three cannot resolve B_simple, and from 10 on Fieller's interval
# covers 95% (docs/diagnostics-statistics.md)
MIN_MEASUREMENTS = 10
LEVEL = 0.95  # the intervals' coverage


class NoiseScale:
    """Every measurement's |G|^2 and tr(Sigma) estimates; B_simple is the ratio of their
    means."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget every measurement added (e.g. at the start of an epoch, for its figures)."""
        self.gradient_sq_estimates: list[float] = []
        self.trace_sigma_estimates: list[float] = []

    @property
    def count(self) -> int:
        return len(self.gradient_sq_estimates)

    def add(self, g_small_sq: float, b: int, g_big_sq: float, B: int) -> None:
        """Add one measurement: g_small_sq = |G_b|^2 (mean-loss gradient over b examples),
        g_big_sq = |G_B|^2 over B > b examples, the b among the B or not."""
        if not 1 <= b < B:
            raise ValueError(f"need 1 <= b < B, got b={b}, B={B}")
        self.gradient_sq_estimates.append((B * g_big_sq - b * g_small_sq) / (B - b))
        self.trace_sigma_estimates.append((g_small_sq - g_big_sq) / (1.0 / b - 1.0 / B))

    def gradient_sq(self) -> float:
        """Mean estimate of |G|^2 over the measurements (NaN when none)."""
        return math.fsum(self.gradient_sq_estimates) / self.count if self.count else math.nan

    def trace_sigma(self) -> float:
        """Mean estimate of tr(Sigma), per-example gradient variance summed over parameters
        (NaN when none)."""
        return math.fsum(self.trace_sigma_estimates) / self.count if self.count else math.nan

    def b_simple(self) -> float:
        """tr(Sigma)/|G|^2 in examples, ratio of the means; NaN when nothing was added or the
        mean |G|^2 estimate is <= 0 (the noise swamps the signal)."""
        g = self.gradient_sq()
        if not g > 0:
            return math.nan
        return self.trace_sigma() / g

    def summary(self, minimum: int = MIN_MEASUREMENTS, prefix: str = "") -> dict:
        """The figures of a history row or of metrics.json, keys prefixed by `prefix`:
        noise_scale, grad_sq, trace_sigma, each with _lo and _hi (95% intervals: Fieller's for
        noise_scale, Student t for the others), noise_measurements, and noise_note (None, or
        why a value is NaN or not resolved). With fewer than `minimum` (at least 2)
        measurements every value is NaN."""
        n = self.count
        names = ("noise_scale", "grad_sq", "trace_sigma")
        out = {f"{prefix}{k}{end}": math.nan for k in names for end in ("", "_lo", "_hi")}
        out[f"{prefix}noise_measurements"] = n
        if n < max(minimum, 2):
            out[f"{prefix}noise_note"] = (f"not measured: {n} measurement(s), fewer than "
                                          f"{minimum}")
            return out
        g, t = self.gradient_sq_estimates, self.trace_sigma_estimates
        intervals = {"noise_scale": ratio_interval(t, g, LEVEL),
                     "grad_sq": mean_interval(g, LEVEL), "trace_sigma": mean_interval(t, LEVEL)}
        values = {"noise_scale": self.b_simple(), "grad_sq": self.gradient_sq(),
                  "trace_sigma": self.trace_sigma()}
        for name in names:
            out[f"{prefix}{name}"] = values[name]
            out[f"{prefix}{name}_lo"], out[f"{prefix}{name}_hi"] = intervals[name]
        note = None
        g_lo, g_hi = intervals["grad_sq"]
        if not g_hi > 0:
            note = f"not resolved: the |G|^2 interval lies below 0 over {n} measurements"
        elif not g_lo > 0:
            note = (f"not resolved: the |G|^2 interval reaches 0 over {n} measurements, so "
                    "B_simple has no upper bound")
        out[f"{prefix}noise_note"] = note
        return out

    def state(self) -> dict:
        """Plain numbers for a checkpoint."""
        return {"gradient_sq": list(self.gradient_sq_estimates),
                "trace_sigma": list(self.trace_sigma_estimates)}

    def load(self, state: dict) -> None:
        """Put back a `state()`. A checkpoint of the older format (sums only, no measurements)
        cannot give intervals: its measurements are dropped and counting starts again."""
        self.reset()
        if "gradient_sq" in state:
            self.gradient_sq_estimates = [float(v) for v in state["gradient_sq"]]
            self.trace_sigma_estimates = [float(v) for v in state["trace_sigma"]]


def grad_sq_norm(model: nn.Module, divide_by: float = 1.0) -> float:
    """|sum over parameters of (p.grad/divide_by)|^2 from the .grad already there (parameters
    without one count as zero). After backward of a SUMMED loss over B examples, divide_by=B
    gives the mean-loss |G_B|^2. Read it before the optimizer adds weight decay to .grad."""
    total = sum((p.grad.detach().double() ** 2).sum() for p in model.parameters()
                if p.grad is not None)
    return float(total) / float(divide_by) ** 2


def mean_grad_sq(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=None) -> float:
    """|g|^2 of the MEAN loss over (x, y) (cross-entropy, or `loss_fn(out, y)`, a mean) at the
    current weights, without weight decay, in the model's current mode (train mode: BatchNorm
    normalises with the batch's statistics, as a step on it would). Buffers (BatchNorm running
    statistics) are restored and .grad is not touched (torch.autograd.grad). Wrap the call in
    autocast to match a bf16 step; the norm is summed in float64."""
    loss_fn = (lambda out, t: F.cross_entropy(out.float(), t)) if loss_fn is None else loss_fn
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = list(model.buffers())
    saved = [b.detach().clone() for b in buffers]
    try:
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_fn(model(x), y), params, allow_unused=True)
        return float(sum((g.detach().double() ** 2).sum() for g in grads if g is not None))
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)


def gradient_sq_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, small: int,
                      loss_fn=None) -> tuple[float, float]:
    """(|g_small|^2, |g_B|^2) for one batch of B = len(x) examples: g_small is the gradient of
    the MEAN loss over the first `small` examples, g_B over all B (`mean_grad_sq` each).

    Cost: two forward+backward passes (1 + small/B steps); in training the big one is the
    step's own (see the module docstring)."""
    if not 1 <= small < len(x):
        raise ValueError(f"need 1 <= small < len(x), got small={small}, len(x)={len(x)}")
    return (mean_grad_sq(model, x[:small], y[:small], loss_fn),
            mean_grad_sq(model, x, y, loss_fn))
