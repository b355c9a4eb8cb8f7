"""`compile: true`: torch.compile the model and warm it up before the run's clock starts.

Compilation happens at the first call of each (mode, input shape). To report it apart from
training, every shape a run will meet (the training batch, full and last evaluation batches) is
run once here, forward and backward, and the model's state (BatchNorm running statistics) is
restored afterwards, so the run trains exactly as if nothing had happened.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from forgetting.augment import BatchMaker
from forgetting.model import state_kept


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
