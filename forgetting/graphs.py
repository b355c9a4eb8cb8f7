"""`cuda_graphs: true`: the whole training step replayed as one CUDA graph.

An eager step launches a few hundred kernels (forward, backward, SGD's foreach updates); on a
fast GPU the launches, not the arithmetic, set the pace below a certain width. Here the step —
forward under autocast, summed loss, backward, SGD, the correct count — is captured once and
replayed each step: the batch is copied into a fixed input tensor and the LR written into a 0-d
device tensor that the captured SGD reads (forgetting/sgd.py).

Capturing needs every tensor the step touches to exist at a fixed address first: the momentum
buffers are created (zeros, which give the same first step as none), and a few warm-up steps run
on a side stream (cuDNN's algorithm search, lazy initialisation, torch.compile's first calls)
with the model's and optimizer's state restored in place afterwards, so the run trains exactly
as if they had not happened. Loading a checkpoint later copies into the same tensors.
"""

from __future__ import annotations

import torch

from forgetting.model import state_kept
from forgetting.sgd import SGD

WARMUP_STEPS = 3


def warm_up_in_place(step, model: torch.nn.Module, optimizer: SGD, steps: int) -> None:
    """Run `step()` `steps` times, then put the model's weights and BatchNorm statistics and
    the optimizer's momentum buffers back as they were, in the same tensors (addresses kept)."""
    optimizer.init_state()
    with state_kept(model, [s["momentum_buffer"] for s in optimizer.state.values()]):
        for _ in range(steps):
            step()
    optimizer.zero_grad(set_to_none=True)


class GraphStep:
    """Call with (x, y, lr) like `train.sgd_step`; returns (summed loss, correct count)."""

    def __init__(self, net: torch.nn.Module, model: torch.nn.Module, optimizer: SGD,
                 precision: str, x: torch.Tensor, y: torch.Tensor):
        from forgetting.train import sgd_step

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
            self.loss, self.hits = step()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float):
        self.x.copy_(x, non_blocking=True)
        self.y.copy_(y, non_blocking=True)
        self.lr.fill_(lr)
        self.graph.replay()
        return self.loss.clone(), self.hits.clone()
