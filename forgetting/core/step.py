"""The training step, in its three forms: eager, compiled, and replayed as a CUDA graph.

`sgd_step` is the step itself: forward under autocast, the loss *summed* over the batch,
backward, our SGD (forgetting/core/sgd.py), and the correct count. `make_step` picks its form.

`compile: true` (`compile_and_warm`): torch.compile the model and warm it up before the run's
clock starts. Compilation happens at the first call of each (mode, input shape), so every shape
a run will meet (the training batch, full and last evaluation batches) is run once, forward and
backward, and the model's state (BatchNorm running statistics) is restored afterwards: the run
trains exactly as if nothing had happened.

`cuda_graphs: true` (`GraphStep`, a GPU's): an eager step launches a few hundred kernels; on a
fast GPU the launches, not the arithmetic, set the pace below a certain width. The step is
captured once and replayed each step: the batch is copied into a fixed input tensor and the LR
written into a 0-d device tensor that the captured SGD reads. Capturing needs every tensor the
step touches to exist at a fixed address first: the momentum buffers are created (zeros, which
give the same first step as none), and a few warm-up steps run on a side stream (cuDNN's
algorithm search, lazy initialisation, torch.compile's first calls) with the model's and
optimizer's state restored in place afterwards. Loading a checkpoint later copies into the same
tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F

from forgetting.core.augment import BatchMaker
from forgetting.core.sgd import SGD

WARMUP_STEPS = 3  # before a CUDA graph's capture


def make_autocast(device: torch.device, precision: str):
    """A factory of autocast contexts: bf16 when `precision` says so, else a no-op."""
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sgd_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, lr: float, autocast,
             on_grad: Callable[[], None] | None = None):
    """One step on the summed loss; returns the (detached) loss, the correct count and which
    examples were correct (bool per example, from the step's own forward pass). `on_grad()` is
    called between backward and the update, while .grad holds the loss's gradient alone (the
    gradient noise measurement reads it there, core/diagnostics/monitor.py)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast():
        out = model(x)
    loss = F.cross_entropy(out.float(), y, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if on_grad is not None:
        on_grad()
    optimizer.step()
    hits = out.detach().argmax(1) == y
    return loss.detach(), hits.sum(), hits


def make_step(net, model, optimizer: SGD, precision: str, maker: BatchMaker,
              labels: torch.Tensor, batch_size: int, graphs: bool) -> Callable:
    """The training step `step(x, y, lr) -> (loss, correct, hits)`: `sgd_step`, or with `graphs`
    (a GPU's) the same step captured as one CUDA graph."""
    if graphs:
        return GraphStep(net, model, optimizer, precision, maker.example(batch_size),
                         labels[:batch_size])
    return partial(sgd_step, net, optimizer, autocast=make_autocast(labels.device, precision))


@contextmanager
def state_kept(model: torch.nn.Module, extra: list[torch.Tensor] = ()):
    """Run the block, then put the model's weights and BatchNorm statistics (and the `extra`
    tensors) back as they were, copied into the same tensors: their addresses are kept."""
    tensors = [*model.state_dict().values(), *extra]
    saved = [t.clone() for t in tensors]
    yield
    with torch.no_grad():
        for t, s in zip(tensors, saved):
            t.copy_(s)


def eval_shapes(sizes: list[int], eval_batch_size: int) -> list[int]:
    """Distinct batch sizes `evaluate` will use over sets of the given sizes."""
    shapes = {min(eval_batch_size, n) for n in sizes}
    shapes |= {n % eval_batch_size for n in sizes if n > eval_batch_size}
    return sorted(s for s in shapes if s > 0)


def compile_and_warm(model: torch.nn.Module, maker: BatchMaker, batch_size: int,
                     eval_sizes: list[int], eval_batch_size: int, autocast):
    """Return the compiled model, every shape of the run compiled."""
    net = torch.compile(model)
    with state_kept(model):
        with autocast():
            out = net(maker.example(batch_size))
        F.cross_entropy(out.float(), torch.zeros(batch_size, dtype=torch.long,
                                                 device=out.device), reduction="sum").backward()
        model.zero_grad(set_to_none=True)
        net.eval()
        with torch.no_grad():
            for n in eval_shapes(eval_sizes, eval_batch_size):
                with autocast():
                    net(maker.batch(torch.arange(min(n, len(maker)))))
        net.train()
    return net


def warm_up_in_place(step, model: torch.nn.Module, optimizer: SGD, steps: int) -> None:
    """Run `step()` `steps` times, then put the model's weights and BatchNorm statistics and
    the optimizer's momentum buffers back as they were, in the same tensors (addresses kept)."""
    optimizer.init_state()
    with state_kept(model, [s["momentum_buffer"] for s in optimizer.state.values()]):
        for _ in range(steps):
            step()
    optimizer.zero_grad(set_to_none=True)


class GraphStep:
    """Call with (x, y, lr) like `sgd_step`; returns (summed loss, correct count, hits)."""

    def __init__(self, net: torch.nn.Module, model: torch.nn.Module, optimizer: SGD,
                 precision: str, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x.clone(), y.clone()
        self.lr = torch.zeros((), device=x.device)

        def autocast():  # autocast's weight cache must be off while capturing
            return torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16",
                                  cache_enabled=False)

        def step():
            return sgd_step(net, optimizer, self.x, self.y, self.lr, autocast)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            warm_up_in_place(step, model, optimizer, WARMUP_STEPS)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss, self.correct, self.hits = step()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float):
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.lr.fill_(lr)
        self.graph.replay()
        return self.loss.clone(), self.correct.clone(), self.hits.clone()
