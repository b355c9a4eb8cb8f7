"""What `diag.*` asks a run to measure, fed by the training loop (core/train.py).

- `diag.sharpness`: after every `diag.every`-th epoch and after the last, the top Hessian
  eigenvalue of the mean training loss on `diag.sharpness_examples` fixed training examples
  (no augmentation; chosen once with their own generator, so training's random streams are
  untouched), in chunks of the run's batch size with BatchNorm in batch mode (what the
  optimiser sees), running statistics left as they were (sharpness.py: Lanczos, warm-started
  from the previous measurement's top Ritz vector, which is checkpointed with the rest).
  Beside it the LR the step took, expressed for the mean loss (`eta_eff` = per-example LR x
  batch size), and
  `sharpness_ratio` = eta_eff (lambda_max + weight decay) / the running optimiser's stability
  edge (stability.py): about 1 at the edge of stability, far below 1 where curvature does not
  limit the run.
- `diag.noise`: every `diag.noise_every` steps, the mean-loss gradient norms of the step's
  batch B and of its first quarter b at the current weights, under the run's autocast,
  accumulated per epoch and over the run; B_simple = tr(Sigma)/|G|^2 is their ratio of means
  (McCandlish et al. 2018, appendix A; noise.py). |G_B|^2 is read from the step's own gradient
  (between backward and update: an eager step's `on_grad`); |G_b|^2 costs one forward and
  backward of the quarter batch before the step (BatchNorm statistics restored): about 1/4 of a
  step per measurement. A CUDA-graph step cannot be entered, so there B is measured by an extra
  pass as well.
- `diag.forgetting_events`: every example's correctness each time it is fed, taken from the
  step's own predictions (no extra forward pass), and its forgetting events (events.py;
  Toneva et al. 2019); the per-example table goes to examples.parquet.

Measurements run in fp32 on the uncompiled model, whatever the run's precision and `compile`.
None of them changes a trained weight, a BatchNorm statistic or a random stream: a run with
diagnostics trains exactly as one without (tests/test_diagnostics_run.py).
"""

from __future__ import annotations

import math

import torch

from forgetting.core.config import Config
from forgetting.core.diagnostics.events import ForgettingEvents
from forgetting.core.diagnostics.noise import NoiseScale, grad_sq_norm, mean_grad_sq
from forgetting.core.diagnostics.sharpness import top_eigenvalue
from forgetting.core.diagnostics.stability import edge, mean_loss_lr, sharpness_ratio

SHARPNESS_SEED = 0  # the fixed examples' generator, apart from every training stream


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
            self.fixed = torch.randperm(n, generator=gen)[:d.sharpness_examples].sort().values
        self.start = None  # the last top Ritz vector: the next measurement's warm start

    def __bool__(self) -> bool:
        return bool(self.events is not None or self.noise_run is not None
                    or self.fixed is not None)

    def before_step(self, run, x: torch.Tensor, y: torch.Tensor, step: int):
        """Every noise_every steps, measure |G_b|^2 on the batch about to be stepped on and
        return the step's `on_grad` hook that reads |G_B|^2 and adds both; else None."""
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

    def after_step(self, idx: torch.Tensor, hits: torch.Tensor, step: int) -> None:
        """The fed examples' correctness (subset-local indices) from the step's predictions."""
        if self.events is not None:
            self.events.record(idx.to(hits.device), hits, step)

    def after_epoch(self, run, row: dict, last: bool) -> dict:
        """The epoch's columns for its history row (NaN where nothing was measured)."""
        out: dict = {}
        finite = math.isfinite(row["train_loss"])
        if self.noise_run is not None:
            out.update(noise_scale=self.noise_epoch.b_simple(),
                       grad_sq=self.noise_epoch.gradient_sq(),
                       trace_sigma=self.noise_epoch.trace_sigma(),
                       noise_measurements=self.noise_epoch.count)
            self.noise_epoch.reset()
        if self.fixed is not None:
            eta = mean_loss_lr(row["step_lr"], self.cfg.batch_size)
            out.update(eta_eff=eta, sharpness=math.nan, sharpness_rel_change=math.nan,
                       sharpness_iters=0, sharpness_ratio=math.nan, sharpness_note=None)
            if not finite:
                out["sharpness_note"] = "not measured: the training loss is not finite"
            elif last or row["epoch"] % self.cfg.diag.every == 0:
                out.update(self.sharpness(run, eta))
        if self.events is not None:
            out["forgetting_events"] = int(self.events.forgetting_events.sum())
        return out

    def sharpness(self, run, eta: float) -> dict:
        idx = self.fixed.to(run.train_y.device)
        x = run.maker.batch(idx).float()
        m = top_eigenvalue(run.model, x, run.train_y[idx], self.cfg.diag.iters,
                           batch_size=self.cfg.batch_size, start=self.start)
        if m["vector"] is not None:
            self.start = m["vector"]
        lam = m["sharpness"]
        ratio = sharpness_ratio(lam, eta, self.cfg.optimizer.weight_decay,
                                self.cfg.optimizer.momentum, self.cfg.optimizer.nesterov)
        return {"sharpness": lam, "sharpness_rel_change": m["sharpness_rel_change"],
                "sharpness_iters": m["sharpness_iters"], "sharpness_ratio": ratio,
                "sharpness_note": m["sharpness_error"]}

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
                       stability_edge=self.edge)
        if self.noise_run is not None:
            last = history[-1].get("noise_scale", math.nan) if history else math.nan
            out.update(noise_scale=last, noise_scale_run=self.noise_run.b_simple(),
                       grad_sq_run=self.noise_run.gradient_sq(),
                       trace_sigma_run=self.noise_run.trace_sigma(),
                       noise_measurements=self.noise_run.count)
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

    def state(self) -> dict:
        """Everything a resumed run needs to go on measuring as if never stopped."""
        return {"events": self.events.state() if self.events is not None else None,
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
        if state.get("start") is not None:
            self.start = [t.to(self.device) for t in state["start"]]
