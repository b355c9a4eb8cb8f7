"""What `diag.*` asks a run to measure, fed by the training loop (core/train.py).

- `diag.sharpness`: after every `diag.every`-th epoch and after the last, the top Hessian
  eigenvalue of the mean training loss on fixed training examples (no augmentation; chosen once
  with their own generator, so training's random streams are untouched). Their number is whole
  batches of the run's `batch_size` (`sharpness_examples`: `diag.sharpness_examples` rounded up
  to whole batches; 0 = the larger of 256 and one batch, rounded up, at most the subset's whole
  batches; recorded in metrics.json), and the loss is the mean of the losses of consecutive
  chunks of exactly `batch_size` examples, each with BatchNorm in train mode over its own chunk:
  the statistics of a batch the size the optimiser steps on. Running statistics are left as
  they were. Lanczos (sharpness.py), warm-started from the previous measurement's top Ritz
  vector (checkpointed with the rest) and stopped when the estimate changes by < `diag.tol`
  (1e-3), its products in `diag.hvp_precision` (fp32; bf16: convolutions and linear layers in
  bf16); with `diag.sharpness_se`, `sharpness_se`, its standard error over the batches.
  Beside it the LR the step took, expressed for the mean loss (`eta_eff` = per-example LR x
  batch size), and
  `sharpness_ratio` = eta_eff (lambda_max + weight decay) / the running optimiser's stability
  edge (stability.py): about 1 at the edge of stability, far below 1 where curvature does not
  limit the run.
- `diag.noise`: every `diag.noise_every` steps, the mean-loss gradient norms of the step's
  batch B and of its first quarter b at the current weights, under the run's autocast, both in
  train mode (BatchNorm over the batch given: the optimiser's statistics for B). Every
  measurement is kept per epoch and over the run; B_simple = tr(Sigma)/|G|^2 is the ratio of
  the means, with 95% intervals (Fieller's for it, Student t for |G|^2 and tr(Sigma);
  McCandlish et al. 2018, appendix A; noise.py). An epoch's row has values only when the epoch
  holds at least 10 measurements (else NaN and `noise_note` says why); metrics.json has the
  run's ratio of means over every measurement (`noise_scale`) and the median of the epochs'
  values (`noise_scale_median`). |G_B|^2 is read from the step's own gradient (between
  backward and update: an eager step's `on_grad`); |G_b|^2 costs one forward and backward of
  the quarter batch before the step (BatchNorm statistics restored): about 1/4 of a step per
  measurement. A CUDA-graph step cannot be entered, so there B is measured by an extra pass
  as well.
- `diag.forgetting_events`: every example's correctness each time it is fed, taken from the
  step's own predictions (no extra forward pass), and its forgetting events (events.py;
  Toneva et al. 2019); the per-example table goes to examples.parquet.
- `diag.step_loss_every=K`: every K steps, the loss on one fixed training batch after the
  step's update, the step's mean-loss LR and the step's update along the last sharpness
  measurement's top Ritz vector (steps.py; BatchNorm in train mode over that batch, running
  statistics restored); the rows go to steps.parquet.
- With any of them, every epoch's row also has `weight_norm`: |w|, the L2 norm of the weights
  that feed a BatchNorm (model.scale_invariant_weights: the loss does not change when they are
  scaled; fp32 weights, squares summed in float64), and `effective_lr` = eta / |w|^2, eta the
  mean-loss LR of the epoch's last step (as `eta_eff`): the LR at which such weights turn in
  angle (Li & Arora 2020; Lobacheva et al. 2021).

Measurements run in fp32 on the uncompiled model, whatever the run's precision and `compile`
(the sharpness's products in bf16 with `diag.hvp_precision=bf16`).
None of them changes a trained weight, a BatchNorm statistic or a random stream: a run with
diagnostics trains exactly as one without (tests/test_diagnostics_run.py).
"""

from __future__ import annotations

import math
import statistics

import torch

from forgetting.core.config import Config
from forgetting.core.diagnostics.events import ForgettingEvents
from forgetting.core.diagnostics.noise import NoiseScale, grad_sq_norm, mean_grad_sq
from forgetting.core.diagnostics.sharpness import top_eigenvalue
from forgetting.core.diagnostics.stability import edge, mean_loss_lr, sharpness_ratio
from forgetting.core.diagnostics.steps import StepLoss
from forgetting.core.errors import ConfigError
from forgetting.core.metrics import DIVERGED_LOSS, blown_up
from forgetting.core.model import scale_invariant_weights

NOT_MEASURED = f"not measured: the training loss diverged (not finite or > {DIVERGED_LOSS:g})"

SHARPNESS_SEED = 0  # the fixed examples' generator, apart from every training stream
SHARPNESS_EXAMPLES = 256  # diag.sharpness_examples=0: at least this many, in whole batches


def sharpness_examples(requested: int, batch_size: int, n: int) -> int:
    """How many fixed examples the sharpness is measured on: `requested` rounded up to whole
    batches; 0: the larger of SHARPNESS_EXAMPLES and one batch, rounded up to whole batches and
    at most the `n` examples' whole batches. ConfigError when a requested number, rounded up,
    exceeds n (a number below one batch is refused by config.validate)."""
    if requested == 0:
        wanted = batch_size * math.ceil(max(SHARPNESS_EXAMPLES, batch_size) / batch_size)
        return max(batch_size, min(wanted, batch_size * (n // batch_size)))
    used = batch_size * math.ceil(requested / batch_size)
    if used > n:
        raise ConfigError("diag.sharpness_examples", requested,
                          f"rounded up to whole batches ({used}) exceeds the subset size {n}")
    return used


def weight_norm(model: torch.nn.Module) -> float:
    """|w| of the weights that feed a BatchNorm (model.scale_invariant_weights), in float64."""
    weights = scale_invariant_weights(model)
    if not weights:
        return math.nan
    return math.sqrt(float(torch.stack([w.detach().double().square().sum()
                                        for w in weights]).sum()))


class Diagnostics:
    def __init__(self, cfg: Config, run):
        d = cfg.diag
        self.cfg = cfg
        self.device = run.device
        self.edge = edge(cfg.optimizer.momentum, cfg.optimizer.nesterov)
        self.events = (ForgettingEvents(len(run.train_y), run.device)
                       if d.forgetting_events else None)
        self.noise_epoch = NoiseScale() if d.noise else None
        self.noise_run = NoiseScale() if d.noise else None
        self.small = max(1, cfg.batch_size // 4)
        self.fixed = None
        if d.sharpness:
            n = len(run.train_y)
            gen = torch.Generator().manual_seed(SHARPNESS_SEED)
            used = sharpness_examples(d.sharpness_examples, cfg.batch_size, n)
            self.fixed = torch.randperm(n, generator=gen)[:used].sort().values
        self.start = None  # the last top Ritz vector: the next measurement's warm start
        self.steps = (StepLoss(d.step_loss_every, cfg.batch_size, len(run.train_y))
                      if d.step_loss_every else None)

    def __bool__(self) -> bool:
        return bool(self.events is not None or self.noise_run is not None
                    or self.fixed is not None or self.steps is not None)

    def before_step(self, run, x: torch.Tensor, y: torch.Tensor, step: int):
        """Every noise_every steps, measure |G_b|^2 on the batch about to be stepped on and
        return the step's `on_grad` hook that reads |G_B|^2 and adds both; else None. Keeps
        the weights before a step-loss step."""
        if self.steps is not None:
            self.steps.before_step(run.model, step)
        add = self.noise_probe(run, x, y, step)
        if add is None:
            return None
        if run.info.get("cuda_graphs"):  # a replayed graph: an extra pass for the big batch
            with run.autocast():
                add(mean_grad_sq(run.model, x, y))
            return None
        return lambda: add(grad_sq_norm(run.model, len(x)))

    def noise_probe(self, run, x: torch.Tensor, y: torch.Tensor, step: int):
        """When `step` is a noise measurement's: |G_b|^2 of the batch's first quarter at the
        model's current weights, and the function that takes the step's |G_B|^2 and adds both
        (a pack reads |G_B|^2 from its fused gradient, core/packed.py); else None."""
        if self.noise_run is None or step % self.cfg.diag.noise_every or self.small >= len(x):
            return None
        with run.autocast():
            g_small = mean_grad_sq(run.model, x[:self.small], y[:self.small])

        def add(g_big: float) -> None:
            if math.isfinite(g_small) and math.isfinite(g_big):
                for acc in (self.noise_epoch, self.noise_run):
                    acc.add(g_small, self.small, g_big, len(x))

        return add

    def after_step(self, run, idx: torch.Tensor, hits: torch.Tensor, step: int,
                   lr: float) -> None:
        """After step `step` (0-based) at per-example LR `lr`: the fed examples' correctness
        (subset-local indices) from the step's predictions; the fixed batch's loss."""
        if self.events is not None:
            self.events.record(idx.to(hits.device), hits, step)
        if self.steps is not None:
            self.steps.after_step(run, step, lr, self.start)

    def after_epoch(self, run, row: dict, last: bool) -> dict:
        """The epoch's columns for its history row (NaN where nothing was measured)."""
        out: dict = {}
        diverged = blown_up(row["train_loss"])  # the run ends after this epoch
        eta = mean_loss_lr(row["step_lr"], self.cfg.batch_size)
        norm = weight_norm(run.model)
        out.update(weight_norm=norm, effective_lr=eta / norm ** 2 if norm > 0 else math.nan)
        if self.noise_run is not None:
            out.update(self.noise_epoch.summary())
            self.noise_epoch.reset()
        if self.fixed is not None:
            out.update(eta_eff=eta, sharpness=math.nan, sharpness_rel_change=math.nan,
                       sharpness_iters=0, sharpness_ratio=math.nan, sharpness_note=None)
            if self.cfg.diag.sharpness_se:
                out["sharpness_se"] = math.nan
            if diverged:
                out["sharpness_note"] = NOT_MEASURED
            elif last or row["epoch"] % self.cfg.diag.every == 0:
                out.update(self.sharpness(run, eta))
        if self.events is not None:
            out["forgetting_events"] = int(self.events.forgetting_events.sum())
        return out

    def sharpness(self, run, eta: float) -> dict:
        idx = self.fixed.to(run.train_y.device)
        x = run.maker.batch(idx).float()
        d = self.cfg.diag
        m = top_eigenvalue(run.model, x, run.train_y[idx], d.iters, tol=d.tol,
                           batch_size=self.cfg.batch_size, start=self.start,
                           precision=d.hvp_precision, spread=d.sharpness_se)
        if m["vector"] is not None:
            self.start = m["vector"]
        lam = m["sharpness"]
        ratio = sharpness_ratio(lam, eta, self.cfg.optimizer.weight_decay,
                                self.cfg.optimizer.momentum, self.cfg.optimizer.nesterov)
        out = {"sharpness": lam, "sharpness_rel_change": m["sharpness_rel_change"],
               "sharpness_iters": m["sharpness_iters"], "sharpness_ratio": ratio,
               "sharpness_note": m["sharpness_error"]}
        if d.sharpness_se:
            out["sharpness_se"] = m.get("sharpness_se", math.nan)
        return out

    def final(self, history: list[dict]) -> dict:
        """The run's final figures for metrics.json and the sweep table."""
        out: dict = {}
        if self.fixed is not None:
            ratios = [r["sharpness_ratio"] for r in history
                      if math.isfinite(r.get("sharpness_ratio", math.nan))]
            last = next((r for r in reversed(history)
                         if math.isfinite(r.get("sharpness", math.nan))), None)
            out.update(sharpness=last["sharpness"] if last else math.nan,
                       sharpness_ratio=last["sharpness_ratio"] if last else math.nan,
                       max_sharpness_ratio=max(ratios) if ratios else math.nan,
                       stability_edge=self.edge, sharpness_examples=len(self.fixed))
        if self.noise_run is not None:
            # mean tr(Sigma) / mean |G|^2 over every measurement of the run (weights drifting)
            out.update(self.noise_run.summary())
            out["noise_scale_run"] = out["noise_scale"]  # the name tables used before
            epochs = [r["noise_scale"] for r in history
                      if math.isfinite(r.get("noise_scale", math.nan))]
            out["noise_scale_median"] = statistics.median(epochs) if epochs else math.nan
        if self.events is not None:
            out.update(self.events.summary())
        return out

    def examples(self, run) -> list[dict]:
        """One row per training example of the subset (examples.parquet), indexed by its
        position in the full training set."""
        if self.events is None:
            return []
        rows = self.events.table(run.train_y.cpu())
        subset = run.subset.tolist()
        for row in rows:
            row["example"] = subset[row["example"]]
        return rows

    def step_rows(self) -> list[dict]:
        """The step-loss rows (steps.parquet); [] without diag.step_loss_every."""
        return list(self.steps.rows) if self.steps is not None else []

    def state(self) -> dict:
        """Everything a resumed run needs to go on measuring as if never stopped."""
        return {"events": self.events.state() if self.events is not None else None,
                "steps": self.steps.state() if self.steps is not None else None,
                "noise_epoch": self.noise_epoch.state() if self.noise_run is not None else None,
                "noise_run": self.noise_run.state() if self.noise_run is not None else None,
                "start": [t.cpu() for t in self.start] if self.start is not None else None}

    def load(self, state: dict) -> None:
        if not state:
            return
        if self.events is not None and state.get("events") is not None:
            self.events.load(state["events"])
        if self.noise_run is not None and state.get("noise_run") is not None:
            self.noise_epoch.load(state["noise_epoch"])
            self.noise_run.load(state["noise_run"])
        if self.steps is not None and state.get("steps") is not None:
            self.steps.load(state["steps"])
        if state.get("start") is not None:
            self.start = [t.to(self.device) for t in state["start"]]
