"""K same-shaped models trained as one: their weights, BatchNorm statistics and momentum
buffers stacked along a new first dimension, the network called once per step through
`torch.func.vmap` over `functional_call`.

Under vmap a convolution over K stacked weights runs as one grouped convolution, BatchNorm as
one BatchNorm over K x C channels (each member's running statistics updated in its own slice),
the linear layer as one batched matmul: one kernel where K runs would launch K. Members never
mix: a member's loss, gradient and update depend on its own weights and batch only (a member
whose weights turned NaN leaves the others' bits unchanged, tests/test_packed.py).

The step is `sgd_step`'s (core/step.py) for every member at once: the loss summed over each
member's batch, the same SGD arithmetic as core/sgd.py with each member's own LR and weight
decay (per-example LR; weight decay per example x batch size), momentum and Nesterov shared.
Results equal the separate runs' to rounding: the fused kernels add in another order.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from forgetting.core.sgd import SGD


class Pack:
    """The stacked state of K models (and their SGD optimizers) and the fused step.

    `unpack(i, model, optimizer)` writes member i's weights, statistics and momentum back into
    a plain model and optimizer (for evaluation, the probe, checkpoints); `pack(i, ...)` the
    other way (a member resumed from its checkpoint)."""

    def __init__(self, models: list[torch.nn.Module], optimizers: list[SGD], autocast):
        self.k = len(models)
        self.autocast = autocast
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture, without storage
        self.base.train()
        params, buffers = stack_module_state(models)
        self.params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        self.buffers = buffers
        group = optimizers[0].param_groups[0]
        self.momentum, self.nesterov = group["momentum"], group["nesterov"]
        self.names = list(self.params)
        self.bufs = {n: torch.zeros_like(p) for n, p in self.params.items()}
        for i, opt in enumerate(optimizers):
            self._load_momentum(i, models[i], opt)
        device = next(iter(self.params.values())).device
        self.wd = torch.tensor([o.param_groups[0]["weight_decay"] for o in optimizers],
                               device=device)

    def _load_momentum(self, i: int, model: torch.nn.Module, optimizer: SGD) -> None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                self.bufs[name][i].copy_(buf if buf is not None else torch.zeros_like(p))

    def pack(self, i: int, model: torch.nn.Module, optimizer: SGD) -> None:
        """Member i takes `model`'s weights and statistics and `optimizer`'s momentum."""
        with torch.no_grad():
            for name, t in [*model.named_parameters(), *model.named_buffers()]:
                (self.params | self.buffers)[name][i].copy_(t)
        self._load_momentum(i, model, optimizer)

    def unpack(self, i: int, model: torch.nn.Module, optimizer: SGD) -> None:
        """Member i's weights, statistics and momentum, copied into `model` and `optimizer`."""
        with torch.no_grad():
            for name, t in [*model.named_parameters(), *model.named_buffers()]:
                t.copy_((self.params | self.buffers)[name][i])
            optimizer.init_state()
            for name, p in model.named_parameters():
                optimizer.state[p]["momentum_buffer"].copy_(self.bufs[name][i])

    def _call(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.base, (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, C, H, W) images, one batch per member -> (K, B, classes) logits."""
        return vmap(self._call, randomness="error")(self.params, self.buffers, x)

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: list[float], active: list[bool]):
        """One SGD step of every member on its own batch (x: (K, B, ...), y: (K, B)) with its
        own per-example LR. Members not `active` (finished, diverged) take no step: their
        weights and momentum stay as they are (their BatchNorm statistics, read back when they
        stopped, do not matter any more). Returns each member's summed loss (K,), correct
        count (K,) and per-example hits (K, B)."""
        with self.autocast():
            out = self.forward(x)
        k, b = y.shape
        losses = F.cross_entropy(out.float().flatten(0, 1), y.flatten(),
                                 reduction="none").view(k, b).sum(1)
        device = losses.device
        mask = None if all(active) else torch.tensor(active, device=device)
        total = (losses if mask is None else torch.where(mask, losses, 0.0)).sum()
        params = [self.params[n] for n in self.names]
        grads = torch.autograd.grad(total, params)
        self._update(params, list(grads), torch.tensor(lr, device=device), mask)
        hits = out.detach().argmax(-1) == y
        return losses.detach(), hits.sum(1), hits

    @torch.no_grad()
    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: torch.Tensor,
                mask: torch.Tensor | None) -> None:
        """core/sgd.py's arithmetic with a weight decay and an LR per member; members outside
        `mask` (when given) unchanged."""
        for name, p, g in zip(self.names, params, grads):
            shape = (self.k,) + (1,) * (p.dim() - 1)
            buf = self.bufs[name]
            g = g.add(p * self.wd.view(shape))
            if self.momentum:
                new = buf * self.momentum + g
                buf.copy_(new if mask is None else torch.where(mask.view(shape), new, buf))
                g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
            delta = g * lr.view(shape)
            p.sub_(delta if mask is None else torch.where(mask.view(shape), delta, 0.0))
