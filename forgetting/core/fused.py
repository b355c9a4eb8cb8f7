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
    a plain model and optimizer (for evaluation, the probe, checkpoints); a member resumed from
    its checkpoint is stacked from its restored model and optimizer."""

    def __init__(self, models: list[torch.nn.Module], optimizers: list[SGD], autocast,
                 compile: bool = False):
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
        decays = [o.param_groups[0]["weight_decay"] for o in optimizers]
        self.wd = torch.tensor(decays, device=device)
        self.wd_shared = decays[0] if len(set(decays)) == 1 else None  # one scalar for all
        self.grad_sq: torch.Tensor | None = None
        # `compile`: torch.compile the fused forward (compiled at the first step, in its time)
        self.fused = torch.compile(self._fused) if compile else self._fused

    def _load_momentum(self, i: int, model: torch.nn.Module, optimizer: SGD) -> None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                self.bufs[name][i].copy_(buf if buf is not None else torch.zeros_like(p))

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

    def _fused(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return vmap(self._call, randomness="error")(params, buffers, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, C, H, W) images, one batch per member -> (K, B, classes) logits."""
        return self.fused(self.params, self.buffers, x)

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: list[float], active: list[bool],
             grad_sq: bool = False):
        """One SGD step of every member on its own batch (x: (K, B, ...), y: (K, B)) with its
        own per-example LR. Members not `active` (finished, diverged) take no step: their
        weights and momentum stay as they are (their BatchNorm statistics, read back when they
        stopped, do not matter any more). Returns each member's summed loss (K,), correct
        count (K,) and per-example hits (K, B). With `grad_sq`, `self.grad_sq` holds each
        member's |gradient of its summed loss|^2 (float64, before weight decay), as
        core/diagnostics/noise.py's `grad_sq_norm` reads it from a single model."""
        with self.autocast():
            out = self.forward(x)
        k, b = y.shape
        losses = F.cross_entropy(out.float().flatten(0, 1), y.flatten(),
                                 reduction="none").view(k, b).sum(1)
        device = losses.device
        mask = None if all(active) else torch.tensor(active, device=device)
        total = (losses if mask is None else torch.where(mask, losses, 0.0)).sum()
        params = [self.params[n] for n in self.names]
        grads = list(torch.autograd.grad(total, params))
        if grad_sq:
            self.grad_sq = sum((g.detach().double() ** 2).flatten(1).sum(1) for g in grads)
        self._update(params, grads, lr, mask)
        hits = out.detach().argmax(-1) == y
        return losses.detach(), hits.sum(1), hits

    @torch.no_grad()
    def _update(self, params: list[torch.Tensor], grads: list[torch.Tensor], lr: list[float],
                mask: torch.Tensor | None) -> None:
        """core/sgd.py's arithmetic (its foreach kernels where members share a value) with a
        weight decay and an LR per member; members outside `mask` (when given) unchanged."""
        bufs = [self.bufs[n] for n in self.names]
        old = None if mask is None else [(p.clone(), b.clone()) for p, b in zip(params, bufs)]
        views = [(self.k,) + (1,) * (p.dim() - 1) for p in params]
        if self.wd_shared is not None:
            if self.wd_shared:
                torch._foreach_add_(grads, params, alpha=self.wd_shared)
        else:
            torch._foreach_add_(grads, [p * self.wd.view(v) for p, v in zip(params, views)])
        if self.momentum:
            torch._foreach_mul_(bufs, self.momentum)
            torch._foreach_add_(bufs, grads)
            if self.nesterov:
                torch._foreach_add_(grads, bufs, alpha=self.momentum)
            else:
                grads = bufs
        if len(set(lr)) == 1:
            torch._foreach_add_(params, grads, alpha=-lr[0])
        else:
            rates = torch.tensor(lr, device=params[0].device)
            torch._foreach_sub_(params, [g * rates.view(v) for g, v in zip(grads, views)])
        if old is not None:  # members not training: put their weights and momentum back
            for p, b, (p0, b0), v in zip(params, bufs, old, views):
                keep = ~mask.view(v)
                p.copy_(torch.where(keep, p0, p))
                b.copy_(torch.where(keep, b0, b))
