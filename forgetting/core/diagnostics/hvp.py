"""Hessian-vector products of a chunked mean loss, by two routes (sharpness.py chooses).

Loss. L(w) = sum_c (n_c/n) * loss_fn(model(x_c), y_c) over consecutive chunks c of
`batch_size` examples (one chunk when None), `loss_fn` a mean over its examples. The model runs
in whatever mode it is in (sharpness.py sets train mode: BatchNorm over each chunk's own
statistics) and the caller restores its buffers.

- `double_backward`: reverse over reverse. Each chunk's gradient is built once with
  create_graph=True and KEPT, so every product costs one backward through the chunks' gradient
  graphs (torch.autograd.grad with grad_outputs=v), about 2 forward passes per chunk; memory: the
  twice-differentiable graphs of all n examples at once (what one chunk of n held before).
- `forward_over_reverse`: `torch.func.jvp` of `torch.func.grad`: every product recomputes each
  chunk's forward and backward with dual numbers (about 3-4 forward passes per chunk) and keeps
  nothing between products. BatchNorm modules are run with `track_running_stats` off for the
  duration (the same batch statistics, no in-place update of a running statistic, which a
  function transform refuses).

Both raise NonFinite on a non-finite chunk loss; neither writes a parameter or .grad.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Vector = list[torch.Tensor]  # one tensor per parameter
Hvp = Callable[[Vector], Vector]
METHODS = ("double_backward", "forward_over_reverse")


class NonFinite(Exception):
    """A loss or Hessian-vector product that is inf or NaN."""


def chunks(n: int, batch_size: int | None) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of `batch_size` examples out of n (one when None)."""
    size = n if batch_size is None else max(1, min(int(batch_size), n))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _check(loss: torch.Tensor, start: int, stop: int) -> None:
    if not bool(torch.isfinite(loss)):
        raise NonFinite(f"loss is not finite ({float(loss.detach())}) on examples {start}:{stop}")


def double_backward(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                    y: torch.Tensor, loss_fn: LossFn, batch_size: int | None) -> Hvp:
    """v -> H v by reverse over reverse, every chunk's first-order graph built once here."""
    n = len(x)
    grads = []
    for start, stop in chunks(n, batch_size):
        loss = loss_fn(model(x[start:stop]), y[start:stop]) * ((stop - start) / n)
        _check(loss, start, stop)
        g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        grads += [(gi, k) for k, gi in enumerate(g) if gi is not None and gi.requires_grad]

    def hvp(v: Vector) -> Vector:
        if not grads:
            return [torch.zeros_like(p) for p in params]
        hv = torch.autograd.grad([g for g, _ in grads], params,
                                 grad_outputs=[v[k] for _, k in grads], retain_graph=True,
                                 allow_unused=True)
        return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)]

    return hvp


def forward_over_reverse(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                         y: torch.Tensor, loss_fn: LossFn, batch_size: int | None) -> Hvp:
    """v -> H v by `torch.func.jvp` of `torch.func.grad` (nothing kept between products)."""
    from torch.func import functional_call, grad, jvp

    n = len(x)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    primal = tuple(p.detach() for p in params)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def chunk_gradient(start: int, stop: int):
        def chunk_loss(weights: tuple):
            out = functional_call(model, dict(zip(names, weights)), (x[start:stop],))
            loss = loss_fn(out, y[start:stop]) * ((stop - start) / n)
            return loss, loss.detach()

        return grad(chunk_loss, has_aux=True)

    def hvp(v: Vector) -> Vector:
        total = [torch.zeros_like(p) for p in params]
        tracking = [m.track_running_stats for m in norms]
        try:
            for m in norms:
                m.track_running_stats = False
            for start, stop in chunks(n, batch_size):
                with warnings.catch_warnings():  # torch's jvp decompositions, loaded on
                    warnings.filterwarnings(       # first use, warn of torch.jit.script
                        "ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
                    _, hv, loss = jvp(chunk_gradient(start, stop), (primal,), (tuple(v),),
                                      has_aux=True)
                _check(loss, start, stop)
                total = [t + h for t, h in zip(total, hv)]
        finally:
            for m, flag in zip(norms, tracking):
                m.track_running_stats = flag
        return total

    return hvp


def hvp_function(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                 y: torch.Tensor, loss_fn: LossFn, batch_size: int | None,
                 method: str = "double_backward") -> Hvp:
    """v -> H v for the chunked mean loss (module docstring) by `method`, one of METHODS."""
    if method == "double_backward":
        return double_backward(model, params, x, y, loss_fn, batch_size)
    if method == "forward_over_reverse":
        return forward_over_reverse(model, params, x, y, loss_fn, batch_size)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
