"""A pack: K runs trained at once as one fused model (core/fused.py), each member computing the
run it stands for. Knows nothing of Hydra or run folders: `train_pack` takes K configs and
returns K `RunResult`s, as `train` (core/train.py) does for one.

Which configs can share a pack (`pack_key`): those equal in every key except `PER_MEMBER`.
- Per member, because the pack keeps them per member (which is every key that does not
  shape the fused step): `lr`, `optimizer.weight_decay` and the
  schedule (`schedule.*`) are a vector of LRs and weight decays fed to the fused update each
  step; `seed` (initial weights, batch order, augmentation), `subset`, `subset_seed`,
  `augment`, `cutout` live in the member's own generator and data subset, whose batches are
  stacked; `epochs` and `budget` set the member's own step count and epoch boundaries (a member
  that has taken all its steps stops: its slot idles until the pack ends); `eval_every`,
  `probe.*` and `diag.*` act on the member's own weights, copied out of the pack at its epoch
  ends (test loss, probe, sharpness) and at its noise measurements' steps (|G_b|^2 of a quarter
  batch, as a single run measures it), or on its step's predictions (forgetting events) and
  its share of the fused gradient (|G_B|^2). `diag.step_loss_every` (the weights just before
  and after a step) is refused: `check_pack`.
- Shared, because they shape the one fused step: the model (`model.*`), `batch_size` (one
  stacked batch), the data (`data.*`: one dataset in memory), `optimizer.momentum` and
  `optimizer.nesterov` (one update rule), `device`, `precision`, `compile`, `cuda_graphs`,
  `threads`, `eval_batch_size`.

Each member's epoch rows, probe, diagnostics and final metrics come from the same code as a
single run's (core/train.py: `epoch_row`, `end_epoch`, `finish`) applied to the member's weights
written back into its own model. A member whose training loss blows up (metrics.blown_up) ends
`diverged` at that epoch, as it would alone, and takes no step after it. When a checkpoint asks
to stop, every member still training saves its own checkpoint, in the single run's format (so a
pack resumes, and so could each member alone), and `Preempted` is raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from forgetting.core.augment import get_batch
from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.config import KEYS, UNHASHED, Config, lookup
from forgetting.core.data import Dataset, load_dataset
from forgetting.core.device import sync
from forgetting.core.errors import ConfigError
from forgetting.core.fused import Pack
from forgetting.core.metrics import OK
from forgetting.core.setup import step_lr
from forgetting.core.train import (
    Epoch,
    RunResult,
    RunState,
    begin,
    end_epoch,
    epoch_row,
    finish,
    open_epoch,
    save_checkpoint,
)

PER_MEMBER = ("lr", "seed", "subset", "subset_seed", "epochs", "budget", "augment", "cutout",
              "schedule.knots", "schedule.values", "schedule.batch_size",
              "optimizer.weight_decay", "eval_every", "probe.epochs", "probe.every",
              "probe.verify", "diag.sharpness", "diag.every", "diag.sharpness_examples",
              "diag.iters", "diag.forgetting_events", "diag.noise", "diag.noise_every")
SHARED = tuple(k for k in KEYS if k not in PER_MEMBER and k not in UNHASHED
               and not k.startswith("optuna."))


def pack_key(cfg: Config) -> tuple:
    """What members of one pack must share (`SHARED` keys and their values)."""
    return tuple((k, repr(lookup(cfg, k))) for k in SHARED) + (("cuda_graphs", cfg.cuda_graphs),)


def check_pack(cfgs: list[Config]) -> None:
    """ConfigError naming the first key in which the configs cannot share one fused step, a
    target loss (core/target.py: single runs measure it) or a step loss (the weights before
    and after a step live in the fused model: single runs measure it)."""
    for key in ("target.train_loss", "target.test_loss"):
        if lookup(cfgs[0], key):
            raise ConfigError(key, lookup(cfgs[0], key), "must be 0 in a pack (steps to a "
                              "target are measured by single runs)")
    for cfg in cfgs:
        if cfg.diag.step_loss_every:
            raise ConfigError("diag.step_loss_every", cfg.diag.step_loss_every, "must be 0 in "
                              "a pack (the step loss is measured by single runs)")
    first = dict(pack_key(cfgs[0]))
    for cfg in cfgs[1:]:
        for k, v in pack_key(cfg):
            if v != first[k]:
                raise ConfigError(k, f"{first[k]} and {v}", "must be equal in one pack (only "
                                  f"{', '.join(PER_MEMBER)} may differ)")


@dataclass
class Member:
    """One run of the pack: its setup and loop state, and its current epoch's."""
    cfg: Config
    state: RunState
    checkpoint: Checkpoint | None
    start: float = 0.0  # the run's clock origin (a resumed run's earlier time counted)
    status: str | None = None  # set when the run stops
    epoch: Epoch | None = None  # the epoch under way (None: not drawn yet)
    lr: float = 0.0

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        run, progress = self.state.run, self.state.progress
        self.lr = step_lr(self.cfg, progress.step / run.steps_per_epoch, run.passes)
        return get_batch(run.maker, run.train_y, self.epoch.order, self.epoch.params,
                         progress.batch, self.cfg.batch_size)

    def noise_probe(self, pack: Pack, i: int, batch):
        """At a noise measurement's step: |G_b|^2 at the member's current weights (copied out
        of the pack) and the function that adds the step's |G_B|^2 (core/diagnostics)."""
        d, progress = self.cfg.diag, self.state.progress
        if not d.noise or progress.step % d.noise_every:
            return None
        run = self.state.run
        pack.unpack(i, run.model, run.optimizer)
        return self.state.diag.noise_probe(run, *batch, progress.step)

    def save(self, pack: Pack, i: int) -> None:
        """Member i's checkpoint, in the single run's format."""
        run = self.state.run
        pack.unpack(i, run.model, run.optimizer)
        save_checkpoint(self.state, self.checkpoint, self.epoch, self.start)


def train_pack(cfgs: list[Config], dataset: Dataset | None = None,
               checkpoints: list[Checkpoint | None] | None = None,
               on_result: Callable[[int, RunResult], None] | None = None,
               names: list[str] | None = None) -> list[RunResult]:
    """Train the runs of `cfgs` as one pack; return their results in order. `on_result(i,
    result)` is called as soon as member i ends (its files can be written while the others
    train). `checkpoints`: one per member, as `train` takes one; `names`: what each member's
    progress lines start with."""
    check_pack(cfgs)
    checkpoints = checkpoints or [None] * len(cfgs)
    data = dataset if dataset is not None else load_dataset(cfgs[0].data)
    members = [Member(cfg, begin(cfg, data, ckpt, fused=True), ckpt)
               for cfg, ckpt in zip(cfgs, checkpoints)]
    runs = [m.state.run for m in members]
    precisions = {r.precision for r in runs}
    if len(precisions) > 1:  # resumed members whose first attempts resolved `auto` apart
        raise ConfigError("precision", cfgs[0].precision,
                          f"resolved differently for members of one pack ({precisions})")
    pack = Pack([r.model for r in runs], [r.optimizer for r in runs], runs[0].autocast,
                compile=cfgs[0].compile)
    for r in runs:
        r.info["pack_size"] = len(members)
    sync(runs[0].device)
    for m in members:
        m.start = time.perf_counter() - m.state.progress.wall_s
    results: list[RunResult | None] = [None] * len(members)
    blank = None
    while any(m.status is None for m in members):
        active = [m.status is None for m in members]
        for m in members:
            if m.status is None and m.epoch is None:
                m.epoch = open_epoch(m.state)
        if any(m.checkpoint is not None and m.checkpoint.stop() for m in members):
            for i, m in enumerate(members):
                if m.status is None and m.checkpoint is not None:
                    m.save(pack, i)
            p = members[active.index(True)].state.progress
            raise Preempted(members[active.index(True)].checkpoint.path, p.epoch, p.batch)
        batches = [m.batch() if m.status is None else None for m in members]
        if blank is None:
            blank = tuple(torch.zeros_like(t) for t in next(b for b in batches if b))
        noise = [m.noise_probe(pack, i, batches[i]) if active[i] else None
                 for i, m in enumerate(members)]
        xs, ys = zip(*(b or blank for b in batches))
        losses, counts, hits = pack.step(torch.stack(xs), torch.stack(ys),
                                         [m.lr for m in members], active,
                                         grad_sq=any(noise))
        for i, add in enumerate(noise):
            if add is not None:  # the step's own |G_B|^2, from member i's fused gradient
                add(pack.grad_sq[i].item() / members[i].cfg.batch_size ** 2)
        for i, m in enumerate(members):
            if active[i]:
                m_result = _after_step(m, i, pack, batches[i], losses[i], counts[i], hits[i],
                                       names[i] if names else "")
                if m_result is not None:
                    results[i] = m_result
                    if on_result is not None:
                        on_result(i, m_result)
    return results


def _after_step(m: Member, i: int, pack: Pack, batch, loss, count, hits,
                name: str) -> RunResult | None:
    """Book member i's step; at its epoch's end write its row (weights copied out of the
    pack); when the run ends, its result."""
    run, progress = m.state.run, m.state.progress
    cfg = m.cfg
    x, y = batch
    m.state.batch_log.record(loss, x, y)
    if m.state.diag:
        lo = progress.batch * cfg.batch_size
        m.state.diag.after_step(run, m.epoch.order[lo:lo + cfg.batch_size], hits,
                                progress.step, m.lr)
    m.epoch.loss_sum += loss
    m.epoch.correct += count
    m.epoch.steps += 1
    progress.step += 1
    progress.batch += 1
    if progress.batch < run.steps_per_epoch:
        return None
    pack.unpack(i, run.model, run.optimizer)
    row = epoch_row(run, cfg, m.state.diag, progress.epoch, m.lr, m.epoch, m.start)
    m.epoch = None
    status = end_epoch(run, cfg, m.state.batch_log, progress, row, tag=name)
    if status is None and progress.epoch > run.passes:
        status = OK
    if status is None:
        return None
    m.status = status
    return finish(run, cfg, m.state.batch_log, m.state.diag, progress, status)
