"""The gradient noise scale B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018, appendix A).

G is the true gradient of the mean loss and Sigma the covariance of a per-example gradient, so
that a batch of b examples drawn at random has E|G_b|^2 = |G|^2 + tr(Sigma)/b. Measuring the
squared norm of the mean-loss gradient at a small batch b and a big batch B gives the unbiased
estimates

    |G|^2     ~ (B*|G_B|^2 - b*|G_b|^2)/(B - b)
    tr(Sigma) ~ (|G_b|^2 - |G_B|^2)/(1/b - 1/B).

Each is noisy (|G|^2 can come out negative for one step), so `NoiseScale` averages each over
the steps added (a plain mean since the last reset) BEFORE dividing: B_simple = mean tr(Sigma)
/ mean |G|^2, a ratio of means. Units: squared norms are in (loss per unit parameter)^2;
B_simple is in examples - the batch size beyond which a bigger batch stops paying off.

Gradients here are of the loss only: L2 weight decay adds the same wd*w to every example's
gradient, which changes G but not Sigma, and is left out of both (it is not part of the noise
the batch size averages away).

Feeding it from training. The step already computes the big-batch gradient: with the SUMMED
loss, the mean-loss gradient is p.grad/B, so |G_B|^2 = `grad_sq_norm(model, B)` read after
backward and BEFORE optimizer.step() (our SGD adds wd*p into p.grad in place, forgetting/core/
sgd.py). The small-batch one costs one extra forward and backward over a slice of the batch
(b/B of a step); `gradient_sq_norms` does both passes when a step is not at hand.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NoiseScale:
    """Running means of the |G|^2 and tr(Sigma) estimates; B_simple is their ratio."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget every step added (e.g. at the start of an epoch, for per-epoch figures)."""
        self.count = 0
        self.sum_gradient_sq = 0.0
        self.sum_trace_sigma = 0.0

    def add(self, g_small_sq: float, b: int, g_big_sq: float, B: int) -> None:
        """Add one step: g_small_sq = |G_b|^2 (mean-loss gradient over b examples), g_big_sq =
        |G_B|^2 over B > b examples, the b among the B or not."""
        if not 1 <= b < B:
            raise ValueError(f"need 1 <= b < B, got b={b}, B={B}")
        self.sum_gradient_sq += (B * g_big_sq - b * g_small_sq) / (B - b)
        self.sum_trace_sigma += (g_small_sq - g_big_sq) / (1.0 / b - 1.0 / B)
        self.count += 1

    def gradient_sq(self) -> float:
        """Mean estimate of |G|^2 over the steps added (NaN when none)."""
        return self.sum_gradient_sq / self.count if self.count else math.nan

    def trace_sigma(self) -> float:
        """Mean estimate of tr(Sigma), per-example gradient variance summed over parameters
        (NaN when none)."""
        return self.sum_trace_sigma / self.count if self.count else math.nan

    def b_simple(self) -> float:
        """tr(Sigma)/|G|^2 in examples, ratio of the means; NaN when nothing was added or the
        |G|^2 estimate is <= 0 (the noise swamps the signal)."""
        if not self.count or not self.sum_gradient_sq > 0:
            return math.nan
        return self.sum_trace_sigma / self.sum_gradient_sq

    def state(self) -> dict:
        """Plain numbers for a checkpoint."""
        return {"count": self.count, "sum_gradient_sq": self.sum_gradient_sq,
                "sum_trace_sigma": self.sum_trace_sigma}

    def load(self, state: dict) -> None:
        self.count = int(state["count"])
        self.sum_gradient_sq = float(state["sum_gradient_sq"])
        self.sum_trace_sigma = float(state["sum_trace_sigma"])


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
