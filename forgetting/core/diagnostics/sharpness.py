"""Sharpness: the top Hessian eigenvalue lambda_max of the MEAN training loss at the current
weights, by Hessian-vector products and power iteration.

Loss. L(w) = sum_c (n_c/n) * loss_fn(model(x_c), y_c), where the chunks c of n_c examples
split the n given examples (one chunk unless `batch_size` < n) and `loss_fn` is a mean over its
examples (default: cross-entropy, reduction mean). With one chunk this is the mean loss over
(x, y). Units: lambda_max is in loss per unit squared parameter; eta*lambda_max (eta the
mean-loss LR) is dimensionless and is compared with the stability edge (stability.py). L2
weight decay is not in L: it adds wd to every eigenvalue (stability.sharpness_ratio).

Hessian-vector product. H v = d/dw <grad L(w), v>: one backward with create_graph=True gives
grad L as a differentiable function of w, a second backward (torch.autograd.grad with
grad_outputs=v) gives H v. With one chunk the first-order graph is built once and kept, so each
iteration costs one double backward (about 2-3 forward passes, and the memory of a graph that
can be differentiated twice). With several chunks each iteration recomputes every chunk's
forward and backward (about 4-5 forward passes per chunk) and holds one chunk's graph at a time.

BatchNorm. Every module runs in TRAIN mode, so BatchNorm normalises with the statistics of the
batch (the function the optimiser differentiates), and the Hessian includes the dependence of
those statistics on the weights. With `batch_size` < len(x) the statistics are per chunk: L is
then the average of the chunk losses, each with its own statistics - choose batch_size = the
training batch size to average the Hessian of the loss the optimiser sees. The running
statistics (running_mean, running_var, num_batches_tracked: every buffer) that these forward
passes update are copied back afterwards, bit-identical and in the same tensors, as is every
module's `training` flag. Parameters are never written, and their .grad are left as they were
(torch.autograd.grad does not accumulate into .grad). No autocast: the HVP runs in the dtype of
the model and inputs.

Power iteration. From a fixed start vector (standard normal from a CPU generator seeded with
`seed`), v <- H v/|H v|, estimate mu = <v, H v> (the Rayleigh quotient, |v| = 1), stopped when
|mu_k - mu_{k-1}|/|mu_k| < tol or after `iters` products. Power iteration converges to the
eigenvalue of largest MAGNITUDE, at a rate set by the gap to the next one in magnitude. For
trained nets that is the top positive one in practice; when the estimate comes out negative
(early in training, or at a saddle) a second power iteration runs on H - mu*I, whose
eigenvalues lie in about [0, lambda_max - mu], and lambda_max = its top eigenvalue + mu. So
"sharpness" is the largest algebraic eigenvalue either way; the second run costs up to `iters`
more products.

Failure. A non-finite loss or Hessian-vector product (or running out of GPU memory) gives
sharpness NaN and a one-line reason in "sharpness_error"; nothing is raised. Not converging
within `iters` is not a failure: "sharpness_rel_change" says how far from converged it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Vector = list[torch.Tensor]  # one tensor per parameter


class NonFinite(Exception):
    """A loss or Hessian-vector product that is inf or NaN."""


def mean_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the examples (nats per example)."""
    return F.cross_entropy(out, y, reduction="mean")


def _dot(a: Vector, b: Vector) -> float:
    """<a, b> summed over all parameters, as a Python float."""
    return float(sum((ai * bi).sum() for ai, bi in zip(a, b)))


def _start_vector(params: list[nn.Parameter], seed: int) -> Vector:
    """A standard normal vector in parameter space, the same for the same seed on any device,
    scaled to unit norm."""
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(device=p.device, dtype=p.dtype) for p in params]
    norm = math.sqrt(_dot(v, v))
    return [vi / norm for vi in v]


def _second_order(grads, params: list[nn.Parameter], v: Vector, retain: bool) -> Vector:
    """H v from first-order gradients built with create_graph=True (zeros where a gradient
    does not depend on the weights)."""
    pairs = [(g, vi) for g, vi in zip(grads, v) if g is not None and g.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad([g for g, _ in pairs], params, grad_outputs=[vi for _, vi in pairs],
                             retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)]


def hvp_function(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                 y: torch.Tensor, loss_fn: LossFn, batch_size: int | None
                 ) -> Callable[[Vector], Vector]:
    """v -> H v for L = sum_c (n_c/n) loss_fn(model(x_c), y_c) over chunks of `batch_size`
    examples (one chunk when None). Raises NonFinite on a non-finite chunk loss. The model is
    run in whatever mode it is in: the caller sets train mode and restores buffers."""
    n = len(x)
    size = n if batch_size is None else max(1, min(int(batch_size), n))
    chunks = [(start, min(start + size, n)) for start in range(0, n, size)]

    def first_order(start: int, stop: int):
        loss = loss_fn(model(x[start:stop]), y[start:stop]) * ((stop - start) / n)
        if not bool(torch.isfinite(loss)):
            value = float(loss.detach())
            raise NonFinite(f"loss is not finite ({value}) on examples {start}:{stop}")
        return torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)

    if len(chunks) == 1:
        grads = first_order(0, n)
        return lambda v: _second_order(grads, params, v, retain=True)

    def hvp(v: Vector) -> Vector:
        total = [torch.zeros_like(p) for p in params]
        for start, stop in chunks:
            hv = _second_order(first_order(start, stop), params, v, retain=False)
            total = [t + h for t, h in zip(total, hv)]
        return total

    return hvp


def power_iteration(hvp: Callable[[Vector], Vector], v: Vector, iters: int, tol: float,
                    shift: float = 0.0) -> tuple[float, float, int]:
    """Power iteration on H - shift*I from the unit vector v. Returns (lambda + shift, the last
    relative change |mu_k - mu_{k-1}|/|mu_k + shift|, products done), lambda the eigenvalue of
    H - shift*I of largest magnitude. Raises NonFinite on a non-finite product."""
    estimate, rel = math.nan, math.inf
    for k in range(1, iters + 1):
        hv = hvp(v)
        if shift:
            hv = [h - shift * vi for h, vi in zip(hv, v)]
        mu = _dot(v, hv)
        norm = math.sqrt(_dot(hv, hv))
        if not (math.isfinite(mu) and math.isfinite(norm)):
            raise NonFinite(f"Hessian-vector product is not finite at iteration {k}")
        if norm == 0.0:  # H v = shift*v exactly: v is an eigenvector
            return mu + shift, 0.0, k
        if k > 1:
            scale = abs(mu + shift)
            rel = abs(mu - estimate) / scale if scale > 0 else (0.0 if mu == estimate else
                                                                math.inf)
        estimate = mu
        v = [h / norm for h in hv]
        if rel < tol:
            return estimate + shift, rel, k
    return estimate + shift, rel, iters


def top_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int,
                   seed: int = 0, tol: float = 1e-3, batch_size: int | None = None,
                   loss_fn: LossFn | None = None) -> dict:
    """The largest Hessian eigenvalue of the mean loss over (x, y) at the current weights.

    Returns {"sharpness": lambda_max (float, NaN on failure), "sharpness_rel_change": last
    relative change of the estimate, "sharpness_iters": Hessian-vector products done (both
    power iterations), "sharpness_error": None or a one-line reason}. `iters` caps each power
    iteration; `tol` is the relative change that stops it; `batch_size` chunks the examples
    (BatchNorm statistics per chunk, see the module docstring); `loss_fn(out, y)` must be a
    mean over its examples (default cross-entropy). The model's buffers, modes, parameters and
    .grad are left as they were.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    loss_fn = mean_cross_entropy if loss_fn is None else loss_fn
    params = [p for p in model.parameters() if p.requires_grad]
    modes = [(m, m.training) for m in model.modules()]
    buffers = list(model.buffers())
    saved = [b.detach().clone() for b in buffers]
    done = 0
    try:
        model.train()
        with torch.enable_grad():
            hvp = hvp_function(model, params, x, y, loss_fn, batch_size)
            lam, rel, done = power_iteration(hvp, _start_vector(params, seed), iters, tol)
            if lam < 0:
                top, rel, more = power_iteration(hvp, _start_vector(params, seed), iters, tol,
                                                 shift=lam)
                lam, done = top, done + more
        return {"sharpness": lam, "sharpness_rel_change": rel, "sharpness_iters": done,
                "sharpness_error": None}
    except NonFinite as exc:
        return _failed(str(exc), done)
    except torch.cuda.OutOfMemoryError:
        return _failed("out of memory in a Hessian-vector product", done)
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)
        for m, training in modes:
            m.training = training


def _failed(reason: str, done: int) -> dict:
    return {"sharpness": math.nan, "sharpness_rel_change": math.nan, "sharpness_iters": done,
            "sharpness_error": reason}
