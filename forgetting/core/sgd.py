"""SGD with momentum, Nesterov and L2 weight decay: torch.optim.SGD's arithmetic, start-up free.

Building a `torch.optim` optimizer imports torch._dynamo (about a second per process, paid before
the first step of every run). This class does the same per-element operations as
torch.optim.SGD with dampening 0 — weight decay added to the gradient, the momentum buffer
started as a copy of the first gradient, Nesterov's look-ahead, then the update — so results are
bit-identical (tests/test_train.py), with `torch._foreach_*` kernels on every device.

For a captured CUDA graph (forgetting/core/step.py) the LR can be a 0-d device tensor, read when
the graph replays, and `init_state()` creates the momentum buffers (zeros: the first step's
`0 * momentum + grad` is the gradient exactly) so that no step allocates; loading a state dict
copies into existing buffers, keeping the addresses a graph was captured with.
"""

from __future__ import annotations

import torch


class SGD:
    def __init__(self, params, lr: float, momentum: float, nesterov: bool, weight_decay: float):
        self.param_groups = [{"params": list(params), "lr": lr, "momentum": momentum,
                              "nesterov": nesterov, "weight_decay": weight_decay}]
        self.state: dict[torch.Tensor, dict] = {}

    def init_state(self) -> None:
        """Momentum buffers for every parameter (zeros), where there are none yet."""
        for group in self.param_groups:
            if group["momentum"]:
                for p in group["params"]:
                    self.state.setdefault(p, {"momentum_buffer": torch.zeros_like(p)})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]  # updated in place: the next step replaces them
            momentum, wd = group["momentum"], group["weight_decay"]
            if wd:
                torch._foreach_add_(grads, params, alpha=wd)
            if momentum:
                bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params]
                if all(b is not None for b in bufs):
                    torch._foreach_mul_(bufs, momentum)
                    torch._foreach_add_(bufs, grads)
                else:
                    for i, p in enumerate(params):
                        if bufs[i] is None:
                            bufs[i] = grads[i].detach().clone()
                        else:
                            bufs[i].mul_(momentum).add_(grads[i])
                        self.state[p] = {"momentum_buffer": bufs[i]}
                if group["nesterov"]:
                    torch._foreach_add_(grads, bufs, alpha=momentum)
                else:
                    grads = bufs
            lr = group["lr"]
            if isinstance(lr, torch.Tensor):
                torch._foreach_sub_(params, torch._foreach_mul(grads, lr))
            else:
                torch._foreach_add_(params, grads, alpha=-lr)

    def state_dict(self) -> dict:
        """Like torch.optim's: parameters referred to by their index."""
        index = {p: i for i, p in enumerate(self.param_groups[0]["params"])}
        return {"state": {index[p]: {"momentum_buffer": s["momentum_buffer"].clone()}
                          for p, s in self.state.items()},
                "param_groups": [{k: v for k, v in g.items() if k != "params"} | {
                    "lr": float(g["lr"]), "params": list(range(len(g["params"])))}
                    for g in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        params = self.param_groups[0]["params"]
        for group, saved in zip(self.param_groups, state["param_groups"]):
            keep = {"params", "lr"} if isinstance(group["lr"], torch.Tensor) else {"params"}
            group.update({k: v for k, v in saved.items() if k not in keep})
        for i, saved in state["state"].items():
            p = params[int(i)]
            buf = self.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.copy_(saved["momentum_buffer"])
            else:
                self.state[p] = {"momentum_buffer": saved["momentum_buffer"].to(p.device)}
