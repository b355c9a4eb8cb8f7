"""Sharpness: the top Hessian eigenvalue lambda_max of the MEAN training loss at the current
weights, by Hessian-vector products and the Lanczos method.

Loss. L(w) = sum_c (n_c/n) * loss_fn(model(x_c), y_c), where the chunks c of n_c examples
split the n given examples (one chunk unless `batch_size` < n) and `loss_fn` is a mean over its
examples (default: cross-entropy, reduction mean). With one chunk this is the mean loss over
(x, y). Units: lambda_max is in loss per unit squared parameter; eta*lambda_max (eta the
mean-loss LR) is dimensionless and is compared with the stability edge (stability.py). L2
weight decay is not in L: it adds wd to every eigenvalue (stability.sharpness_ratio).

Hessian-vector product. H v = d/dw <grad L(w), v>, by one of two routes (hvp.py):
`double_backward` (reverse over reverse: every chunk's first-order graph is built once and kept,
each product is one more backward through them) or `forward_over_reverse` (`torch.func.jvp` of
`torch.func.grad`: each product recomputes every chunk, nothing kept). Both give the same
products to rounding; `METHOD` is the one that measured faster (`python -m forgetting.bench
--diag --hvp`: on a 2-core CPU, quarter-width ResNet-9 in channels_last as trained, 512 examples
in chunks of 128, forward over reverse took 0.55-0.58x the seconds per product of kept graphs,
and 0.89x at 256 examples; medians of interleaved rounds in one process).

BatchNorm. Every module runs in TRAIN mode, so BatchNorm normalises with the statistics of the
batch (the function the optimiser differentiates), and the Hessian includes the dependence of
those statistics on the weights. With `batch_size` < len(x) the statistics are per chunk: L is
then the average of the chunk losses, each with its own statistics. The training monitor
(monitor.py) passes whole batches and batch_size = the training batch size, so every chunk is
exactly one batch the size the optimiser steps on. The running statistics (running_mean,
running_var, num_batches_tracked: every buffer) that these forward passes may update are copied
back afterwards, bit-identical and in the same tensors, as is every module's `training` flag.
Parameters are never written, and their .grad are left as they were (torch.autograd.grad does
not accumulate into .grad). Precision: `fp32` (default) runs the products in the dtype of the
model and inputs; `bf16` runs the loss's convolutions and linear layers in bf16 as autocast would
(hvp.Bf16Autocast), the weights, products and Lanczos vectors staying fp32.

Lanczos. From a fixed start vector (standard normal from a CPU generator seeded with `seed`,
or the previous measurement's top Ritz vector, `start`), k Hessian-vector products build an
orthonormal Krylov basis (fully re-orthogonalised) and the tridiagonal matrix T_k of H in it;
the largest eigenvalue of T_k is the estimate of lambda_max, the largest ALGEBRAIC eigenvalue
(a negative eigenvalue of larger magnitude does not capture it, as it would power iteration).
It converges much faster than power iteration for the same number of products (a handful for
a well separated top eigenvalue); it stops when the estimate changes by less than `tol`
(relative) between two products, or after `iters` products. Memory: `iters` parameter-sized
vectors. `power_iteration` stays for reference and tests.

Sampling error (`spread`). Each product is taken per chunk c, (n_c/n) H_c v, and dotted
with every Lanczos vector: the chunks' matrices Q^T H_c Q in the Krylov basis Q, at the cost of
dots, no product. Along the top Ritz vector u, r_c = u^T H_c u is chunk c's own curvature and
lambda_max = sum_c (n_c/n) r_c; "sharpness_se" is the standard error of that weighted mean over
the k chunks (k - 1 degrees of freedom; NaN for one chunk): how far lambda_max would move along
u had other batches been drawn. It leaves out the upward bias of fitting u to the same examples
(a sample's lambda_max tends to exceed the whole set's).

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

from forgetting.core.diagnostics.hvp import (
    LossFn,
    NonFinite,
    Vector,
    buffers_and_modes_kept,
    chunks,
    hvp_function,
    summed,
)

METHOD = "forward_over_reverse"  # the faster route on the measured models (module docstring)


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


def lanczos(hvp: Callable[[Vector], Vector], v: Vector, iters: int, tol: float
            ) -> tuple[float, float, int, Vector]:
    """The largest eigenvalue of H by `iters` Lanczos steps at most from the unit vector v.
    Returns (lambda_max estimate, its last relative change, products done, the top Ritz vector,
    unit norm). Raises NonFinite on a non-finite product."""
    basis, alphas, betas = [v], [], []
    estimate, rel, ritz = math.nan, math.inf, None
    for k in range(1, iters + 1):
        w = hvp(basis[-1])
        alpha = _dot(basis[-1], w)
        if not math.isfinite(alpha):
            raise NonFinite(f"Hessian-vector product is not finite at iteration {k}")
        alphas.append(alpha)
        for q in basis:  # full re-orthogonalisation (twice is enough)
            c = _dot(q, w)
            w = [wi - c * qi for wi, qi in zip(w, q)]
        for q in basis:
            c = _dot(q, w)
            w = [wi - c * qi for wi, qi in zip(w, q)]
        t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            t += torch.diag(off, 1) + torch.diag(off, -1)
        values, vectors = torch.linalg.eigh(t)
        top = float(values[-1])
        if k > 1:
            rel = abs(top - estimate) / abs(top) if top != 0 else (0.0 if top == estimate
                                                                  else math.inf)
        estimate, ritz = top, vectors[:, -1]
        beta = math.sqrt(_dot(w, w))
        if not math.isfinite(beta):
            raise NonFinite(f"Hessian-vector product is not finite at iteration {k}")
        if rel < tol or beta <= 1e-12 * max(1.0, abs(top)) or k == iters:
            break
        betas.append(beta)
        basis.append([wi / beta for wi in w])
    vector = [sum(float(c) * q[i] for c, q in zip(ritz, basis)) for i in range(len(v))]
    norm = math.sqrt(_dot(vector, vector))
    return estimate, rel, k, [vi / norm for vi in vector]


class ChunkCurvature:
    """v -> H v from the per-chunk products (hvp.py's `split`), keeping q_j^T H_c v for every
    vector q_j it was given before (the Lanczos basis, in order): each chunk's matrix in that
    basis, for the curvature of each chunk along a vector of their span (module docstring)."""

    def __init__(self, parts: Callable[[Vector], list[Vector]], weights: list[float]):
        self.parts, self.weights = parts, weights
        self.basis: list[Vector] = []
        self.gram: list[dict[tuple[int, int], float]] = [{} for _ in weights]

    def __call__(self, v: Vector) -> Vector:
        parts = self.parts(v)
        self.basis.append(v)
        last = len(self.basis) - 1
        for gram, part in zip(self.gram, parts):
            for j, q in enumerate(self.basis):  # symmetric: q_j^T H_c q_last = q_last^T H_c q_j
                gram[j, last] = gram[last, j] = _dot(q, part)
        return summed(parts, v)

    def spread(self, u: Vector) -> tuple[list[float], float]:
        """(each chunk's curvature u^T H_c u, the standard error of their weighted mean) for a
        unit u in the span of the basis."""
        k = len(self.basis)
        a = torch.tensor([_dot(q, u) for q in self.basis], dtype=torch.float64)
        curvatures = []
        for gram, w in zip(self.gram, self.weights):
            g = torch.tensor([[gram[i, j] for j in range(k)] for i in range(k)],
                             dtype=torch.float64)
            curvatures.append(float(a @ g @ a) / w)
        mean = sum(w * r for w, r in zip(self.weights, curvatures))
        n = len(curvatures)
        if n < 2:
            return curvatures, math.nan
        var = n / (n - 1) * sum((w * (r - mean)) ** 2 for w, r in zip(self.weights, curvatures))
        return curvatures, math.sqrt(var)


def top_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int,
                   seed: int = 0, tol: float = 1e-3, batch_size: int | None = None,
                   loss_fn: LossFn | None = None, start: Vector | None = None,
                   method: str = METHOD, precision: str = "fp32",
                   spread: bool = False) -> dict:
    """The largest Hessian eigenvalue of the mean loss over (x, y) at the current weights.

    Returns {"sharpness": lambda_max (float, NaN on failure), "sharpness_rel_change": last
    relative change of the estimate, "sharpness_iters": Hessian-vector products done,
    "sharpness_error": None or a one-line reason, "vector": the top Ritz vector (None on
    failure), a warm `start` for the next measurement}. `iters` caps the Lanczos steps; `tol`
    is the relative change that stops them; `batch_size` chunks the examples
    (BatchNorm statistics per chunk, see the module docstring); `loss_fn(out, y)` must be a
    mean over its examples (default cross-entropy); `method` is the Hessian-vector product's
    route (hvp.METHODS) and `precision` its precision (`fp32` or `bf16`). With `spread`, also
    "sharpness_se" (module docstring) and "sharpness_chunks", the chunks' curvatures along the
    top Ritz vector. The model's buffers, modes, parameters and .grad are left as they were.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    loss_fn = mean_cross_entropy if loss_fn is None else loss_fn
    params = [p for p in model.parameters() if p.requires_grad]
    with buffers_and_modes_kept(model):
        return _measure(model, params, x, y, iters, seed, tol, batch_size, loss_fn, start,
                        method, precision, spread)


def _measure(model, params, x, y, iters, seed, tol, batch_size, loss_fn, start, method,
             precision, spread) -> dict:
    """top_eigenvalue's work, its model's buffers and modes kept by the caller."""
    done = 0
    try:
        model.train()
        with torch.enable_grad():
            hvp = hvp_function(model, params, x, y, loss_fn, batch_size, method, precision,
                               split=spread)
            if spread:
                hvp = ChunkCurvature(hvp, [(b - a) / len(x) for a, b in chunks(len(x),
                                                                                 batch_size)])
            v = _start_vector(params, seed) if start is None else _unit(start)
            lam, rel, done, vector = lanczos(hvp, v, iters, tol)
        out = {"sharpness": lam, "sharpness_rel_change": rel, "sharpness_iters": done,
               "sharpness_error": None, "vector": [t.detach() for t in vector]}
        if spread:
            out["sharpness_chunks"], out["sharpness_se"] = hvp.spread(vector)
        return out
    except NonFinite as exc:
        return _failed(str(exc), done)
    except torch.cuda.OutOfMemoryError:
        return _failed("out of memory in a Hessian-vector product", done)


def _unit(v: Vector) -> Vector:
    norm = math.sqrt(_dot(v, v))
    return [vi / norm for vi in v]


def _failed(reason: str, done: int) -> dict:
    return {"sharpness": math.nan, "sharpness_rel_change": math.nan, "sharpness_iters": done,
            "sharpness_error": reason, "vector": None}
