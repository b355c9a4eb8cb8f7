"""The loss on one fixed training batch every `diag.step_loss_every` steps, and each such
step's update along the top Hessian eigenvector: how the run moves between two sharpness
measurements (whether it oscillates across the edge of stability).

Fixed batch. `batch_size` examples of the training subset, chosen once by a generator of their
own (`STEP_LOSS_SEED`, apart from every training stream and from the sharpness examples'),
without augmentation. Its loss is the mean cross-entropy per example, in fp32 on the uncompiled
model, with BatchNorm in TRAIN mode over this batch (the statistics of a batch the size the
optimiser steps on, as the sharpness is measured); the running statistics (every buffer) are
copied back afterwards, bit-identical, and every module's mode is restored. No gradient is
taken: no weight, statistic or random stream changes.

Rows (steps.parquet), each measured after the step's update:
- `step`: steps taken, this one included (K, 2K, ...);
- `loss`: the fixed batch's loss (nats per example);
- `eta_eff`: the step's LR for the mean loss, eta = per-example LR x batch size
  (stability.mean_loss_lr, as history's `eta_eff`; not `lr`, which names the LR factor in
  every sweep table);
- `top_component`: <w_after - w_before, v>, the step's whole parameter change (momentum and
  weight decay included), flattened over every trained parameter, along the unit top Ritz
  vector v of the last sharpness measurement (monitor.py keeps it as the next measurement's
  warm start); NaN before one (or without `diag.sharpness`). An eigenvector's sign is
  arbitrary: compare signs only between rows under the same v.
Cost: a copy of the weights before a measured step and one forward pass of one batch after.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from forgetting.core.diagnostics.hvp import buffers_and_modes_kept
from forgetting.core.diagnostics.stability import mean_loss_lr

STEP_LOSS_SEED = 1  # the fixed batch's generator (the sharpness examples use 0)


def train_mode_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (x, y), BatchNorm in train mode over x, without a gradient; the
    model's buffers and modes are left as they were. A 0-d tensor on the model's device."""
    with buffers_and_modes_kept(model), torch.no_grad():
        model.train()
        return F.cross_entropy(model(x).float(), y, reduction="mean")


class StepLoss:
    """The step-loss rows of one run (module docstring)."""

    def __init__(self, every: int, batch_size: int, n: int):
        self.every = every
        self.batch_size = batch_size
        gen = torch.Generator().manual_seed(STEP_LOSS_SEED)
        self.fixed = torch.randperm(n, generator=gen)[:batch_size].sort().values
        self.rows: list[dict] = []
        self.batch = None  # (x, y) of the fixed examples on the device, built when first used
        self.before = None  # the trained weights before a measured step

    def before_step(self, model: nn.Module, step: int) -> None:
        """Before step `step` (0-based): keep the weights when it is a measured one."""
        if (step + 1) % self.every == 0:
            self.before = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    def after_step(self, run, step: int, lr: float, vector: list[torch.Tensor] | None) -> None:
        """After step `step` (0-based) at per-example LR `lr`: a row when it is a measured one;
        `vector` is the last top Ritz vector (None: not known yet)."""
        if (step + 1) % self.every or self.before is None:
            return
        model = run.model
        if self.batch is None:
            idx = self.fixed.to(run.train_y.device)
            self.batch = (run.maker.batch(idx).float(), run.train_y[idx])
        loss = train_mode_loss(model, *self.batch)
        component = math.nan
        if vector is not None:
            params = [p.detach() for p in model.parameters() if p.requires_grad]
            component = float(torch.stack([
                ((p - b).double() * v.double()).sum()
                for p, b, v in zip(params, self.before, vector)]).sum())
        self.before = None
        self.rows.append({"step": step + 1, "loss": float(loss),
                          "eta_eff": mean_loss_lr(lr, self.batch_size),
                          "top_component": component})

    def state(self) -> dict:
        """The rows so far and the fixed batch's indices, for a checkpoint."""
        return {"rows": [dict(r) for r in self.rows], "fixed": self.fixed.clone()}

    def load(self, state: dict) -> None:
        if state["fixed"].shape != self.fixed.shape:
            raise ValueError(f"step loss: saved {tuple(state['fixed'].shape)} examples, have "
                             f"{tuple(self.fixed.shape)}")
        self.fixed = state["fixed"].clone()
        self.rows = [dict(r) for r in state["rows"]]
        self.batch = None
