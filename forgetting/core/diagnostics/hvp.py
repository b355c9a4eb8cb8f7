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

Both raise NonFinite on a non-finite chunk loss; neither writes a parameter or .grad. With
`split` a route returns the products of each chunk's weighted loss, (n_c/n) H_c v, one per chunk
(their sum is H v), instead of their sum.

Precision. `fp32`: the model and inputs' own dtype. `bf16`: the loss is computed under
`Bf16Autocast`, torch.autocast's bf16 casts for the ops these models use, done at the Python level
(torch.func does not see through torch.autocast on a CPU: torch 2.14 raises "Input type
(torch.FloatTensor) and weight type (CPUBFloat16Type) should be the same"). Parameters, products
and the vectors they act on stay fp32: the casts sit inside the differentiated function.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from forgetting.core.config import HVP_PRECISIONS

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Vector = list[torch.Tensor]  # one tensor per parameter
Hvp = Callable[[Vector], Vector]
METHODS = ("double_backward", "forward_over_reverse")


class NonFinite(Exception):
    """A loss or Hessian-vector product that is inf or NaN."""


def _bf16(a):
    return a.to(torch.bfloat16) if isinstance(a, torch.Tensor) and a.is_floating_point() else a


class Bf16Autocast(TorchFunctionMode):
    """Convolutions, linear layers and matrix products run on bf16 copies of their floating
    arguments, weights included (torch.autocast's bf16 list, for the ops these models use); a
    normalisation runs in fp32 and returns its input's dtype (autocast: bf16 in, bf16 out).
    Computing it in fp32 keeps each forward-mode tangent in its primal's dtype, which
    torch.func's mixed-dtype batch norm does not (a bf16 output with an fp32 tangent). Outside
    torch.func the loss is autocast's bit for bit on the tiny net and within 4e-5 (relative) on
    a ResNet-9 at width 1/8 (tests/test_diagnostics_sharpness_accuracy.py)."""

    LOW = (F.conv1d, F.conv2d, F.conv3d, F.linear, torch.matmul, torch.mm, torch.bmm)
    NORMS = (F.batch_norm, F.layer_norm, F.group_norm)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.LOW:
            return func(*(_bf16(a) for a in args), **{k: _bf16(a) for k, a in kwargs.items()})
        if func in self.NORMS and args[0].is_floating_point():
            return func(args[0].float(), *args[1:], **kwargs).to(args[0].dtype)
        return func(*args, **kwargs)


def autocast(precision: str):
    """The context a chunk's loss is computed in: nothing for fp32, Bf16Autocast for bf16."""
    if precision not in HVP_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(HVP_PRECISIONS)}, "
                         f"got {precision!r}")
    return Bf16Autocast() if precision == "bf16" else contextlib.nullcontext()


def _output(out: torch.Tensor, precision: str) -> torch.Tensor:
    """The model's output for the loss: in fp32 after bf16 casts (as the training step takes
    it), else as it is (a float64 model stays float64)."""
    return out.float() if precision == "bf16" else out


def summed(parts, like: list[torch.Tensor]) -> Vector:
    """The sum of the chunks' products `parts` (an iterable of Vectors shaped like `like`)."""
    total = [torch.zeros_like(p) for p in like]
    for part in parts:
        total = [t + h for t, h in zip(total, part)]
    return total


def chunks(n: int, batch_size: int | None) -> list[tuple[int, int]]:
    """(start, stop) of consecutive chunks of `batch_size` examples out of n (one when None)."""
    size = n if batch_size is None else max(1, min(int(batch_size), n))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _check(loss: torch.Tensor, start: int, stop: int) -> None:
    if not bool(torch.isfinite(loss)):
        raise NonFinite(f"loss is not finite ({float(loss.detach())}) on examples {start}:{stop}")


def double_backward(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                    y: torch.Tensor, loss_fn: LossFn, batch_size: int | None,
                    precision: str = "fp32", split: bool = False) -> Hvp:
    """v -> H v by reverse over reverse, every chunk's first-order graph built once here."""
    n = len(x)
    grads = []  # per chunk: [(gradient of parameter k, k)]
    for start, stop in chunks(n, batch_size):
        with autocast(precision):
            out = _output(model(x[start:stop]), precision)
        loss = loss_fn(out, y[start:stop]) * ((stop - start) / n)
        _check(loss, start, stop)
        g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        grads.append([(gi, k) for k, gi in enumerate(g) if gi is not None and gi.requires_grad])

    def product(kept: list, v: Vector) -> Vector:
        if not kept:
            return [torch.zeros_like(p) for p in params]
        hv = torch.autograd.grad([g for g, _ in kept], params,
                                 grad_outputs=[v[k] for _, k in kept], retain_graph=True,
                                 allow_unused=True)
        return [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)]

    def hvp(v: Vector) -> Vector:
        return product([g for chunk in grads for g in chunk], v)

    def parts(v: Vector) -> list[Vector]:
        return [product(chunk, v) for chunk in grads]

    return parts if split else hvp


def forward_over_reverse(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                         y: torch.Tensor, loss_fn: LossFn, batch_size: int | None,
                         precision: str = "fp32", split: bool = False) -> Hvp:
    """v -> H v by `torch.func.jvp` of `torch.func.grad` (nothing kept between products)."""
    from torch.func import functional_call, grad, jvp

    n = len(x)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    primal = tuple(p.detach() for p in params)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def chunk_gradient(start: int, stop: int):
        def chunk_loss(weights: tuple):
            with autocast(precision):
                out = _output(functional_call(model, dict(zip(names, weights)),
                                              (x[start:stop],)), precision)
            loss = loss_fn(out, y[start:stop]) * ((stop - start) / n)
            return loss, loss.detach()

        return grad(chunk_loss, has_aux=True)

    def each(v: Vector):
        """Every chunk's product in turn."""
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
                yield list(hv)
        finally:
            for m, flag in zip(norms, tracking):
                m.track_running_stats = flag

    def hvp(v: Vector) -> Vector:
        return summed(each(v), params)  # one chunk's product held at a time

    def parts(v: Vector) -> list[Vector]:
        return list(each(v))

    return parts if split else hvp


def hvp_function(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                 y: torch.Tensor, loss_fn: LossFn, batch_size: int | None,
                 method: str = "double_backward", precision: str = "fp32",
                 split: bool = False) -> Hvp:
    """v -> H v for the chunked mean loss (module docstring) by `method`, one of METHODS, in
    `precision` (HVP_PRECISIONS); with `split`, v -> [(n_c/n) H_c v for each chunk c]."""
    autocast(precision)  # refuses an unknown precision before any work
    if method == "double_backward":
        return double_backward(model, params, x, y, loss_fn, batch_size, precision, split)
    if method == "forward_over_reverse":
        return forward_over_reverse(model, params, x, y, loss_fn, batch_size, precision, split)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


@contextlib.contextmanager
def buffers_and_modes_kept(model: nn.Module):
    """Run the block, then put the model's buffers (BatchNorm's running statistics) and every
    module's train/eval mode back as they were, whatever the block did or raised."""
    modes = [(m, m.training) for m in model.modules()]
    buffers = list(model.buffers())
    saved = [b.detach().clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)
        for m, training in modes:
            m.training = training
