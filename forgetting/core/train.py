"""The training loop: setup, epochs of steps, evaluation, finish. Knows nothing of Hydra: tests
call `train` directly. What a run trains with is built in forgetting/core/setup.py (where the
seed's semantics are stated); its state between steps is one `Progress` (checkpoint.py).

Where a run is goes, besides its log lines, to the logger `forgetting.progress` at DEBUG, for a
reader that listens (forgetting/runs/run_line.py; without one nothing prints): one record when an
epoch ends (its history row as `epoch_row`, the run's epochs as `epochs`) and, within an epoch,
one each time HEARTBEAT_S seconds passed since the epoch's start or the last one (`steps`: the
steps taken and the steps per epoch; `epoch`, `epochs`, `epoch_s`). The clock is read once a
step, without synchronising the device: a heartbeat counts the steps handed to it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from forgetting.core.augment import get_batch
from forgetting.core.checkpoint import Checkpoint, Preempted, Progress
from forgetting.core.config import Config
from forgetting.core.data import Dataset
from forgetting.core.device import sync
from forgetting.core.diagnostics.monitor import Diagnostics
from forgetting.core.metrics import DIVERGED, OK, PRUNED, blown_up
from forgetting.core.probe import BatchLog, replay
from forgetting.core.setup import Setup, prepare, step_lr
from forgetting.core.target import Target

log = logging.getLogger("forgetting")
PROGRESS_LOG = logging.getLogger("forgetting.progress")
HEARTBEAT_S = 30.0  # the longest silence within an epoch, in seconds


@dataclass
class RunResult:
    status: str  # ok | diverged | pruned
    history: list[dict]  # one row per epoch (metrics.HISTORY)
    final: dict  # metrics.FINAL and train_s
    info: dict = field(default_factory=dict)  # device, precision, sizes, steps
    recency: list[dict] = field(default_factory=list)  # the probe's rows (core/probe.py)
    examples: list[dict] = field(default_factory=list)  # per example (diag.forgetting_events)
    steps: list[dict] = field(default_factory=list)  # diag.step_loss_every's rows


def epoch_marker(epoch: int) -> str:
    """The start of epoch `epoch`'s progress line (forgetting.bench waits for it)."""
    return f"epoch {epoch}/"


@dataclass
class RunState:
    """One run's setup and the state its loop carries from step to step."""
    run: Setup
    gen: torch.Generator  # batch order and augmentation
    batch_log: BatchLog
    diag: Diagnostics
    progress: Progress
    target: Target

    def astuple(self):
        return self.run, self.gen, self.batch_log, self.diag, self.progress


def begin(cfg: Config, dataset: Dataset | None, checkpoint: Checkpoint | None,
          fused: bool = False) -> RunState:
    """Prepare a run (`fused`: as a member of a pack, core/packed.py) and put back the state
    of its checkpoint when there is one."""
    saved = checkpoint.load() if checkpoint is not None else None
    run = prepare(cfg, dataset, saved.precision if saved else None, fused=fused)
    state = RunState(run, torch.Generator().manual_seed(cfg.seed),
                     BatchLog(cfg.probe.epochs, cfg.probe.verify), Diagnostics(cfg, run),
                     Progress(), Target(cfg))
    if saved is not None:
        saved.restore(run.model, run.optimizer, state.gen, run.device)
        state.batch_log.load(saved.batch_log, run.device)
        state.progress = saved.progress
        state.diag.load(state.progress.diag)
        state.target.load(state.progress.target)
        state.progress.resumes += 1
        log.info("resumed from %s at epoch %d, batch %d", checkpoint.path,
                 state.progress.epoch, state.progress.batch)
    return state


def train(cfg: Config, dataset: Dataset | None = None,
          on_epoch: Callable[[dict], bool] | None = None,
          checkpoint: Checkpoint | None = None) -> RunResult:
    """Train one model as `cfg` says; return per-epoch history, final metrics and the probe's
    rows (`recency`, core/probe.py).

    `on_epoch(row)` is called with each epoch's history row; returning True stops the run
    there with `status: pruned` (a sweeper's pruner uses it). With `checkpoint`, the run
    resumes from `checkpoint.load()` when there is one, and when `checkpoint.stop()` turns true
    it saves its state before the next step and raises `Preempted` (core/checkpoint.py)."""
    # setup
    state = begin(cfg, dataset, checkpoint)
    run, gen, batch_log, diag, progress = state.astuple()
    sync(run.device)
    start = time.perf_counter() - progress.wall_s
    run.model.train()

    # the loop
    status = None
    while status is None and progress.epoch <= run.passes:
        row = train_epoch(state, cfg, checkpoint, start)
        status = end_epoch(run, cfg, batch_log, progress, row, on_epoch, done=state.target.done)
    return finish(run, cfg, batch_log, diag, progress, status or OK, state.target)


def end_epoch(run: Setup, cfg: Config, batch_log: BatchLog, progress: Progress, row: dict,
              on_epoch: Callable[[dict], bool] | None = None, tag: str = "",
              done: bool = False) -> str | None:
    """Record a finished epoch's row: its progress line, then `diverged` (a training loss not
    finite or above DIVERGED_LOSS: metrics.blown_up) or `pruned` (`on_epoch` says stop) ends
    the run, as does `ok` when `done` (its targets reached, core/target.py); else the probe
    runs when `probe.every` says so and `progress` moves to the next epoch. Returns the status
    that ends the run, else None. `tag` starts the progress line (a pack's member,
    core/packed.py)."""
    progress.history.append(row)
    log.log(logging.DEBUG if cfg.quiet else logging.INFO,
            tag + epoch_marker(row["epoch"]) + "%d  lr %.3g  train_loss %.4f  train_acc %.4f  "
            "test_loss %.4f  test_acc %.4f  %.1fs", run.passes,
            row["step_lr"] * cfg.schedule.batch_size, row["train_loss"], row["train_acc"],
            row["test_loss"], row["test_acc"], row["wall_s"])
    PROGRESS_LOG.debug(tag + "epoch %d of %d done", row["epoch"], run.passes,
                       extra={"epoch_row": row, "epochs": run.passes})
    if blown_up(row["train_loss"]):
        return DIVERGED
    if on_epoch is not None and on_epoch(row):
        return PRUNED
    if done:
        return OK
    if batch_log and cfg.probe.every and row["epoch"] % cfg.probe.every == 0 \
            and row["epoch"] < run.passes:
        progress.recency += probe(run, batch_log, cfg, row, progress.step)
    progress.next_epoch()
    return None


def finish(run: Setup, cfg: Config, batch_log: BatchLog, diag: Diagnostics,
           progress: Progress, status: str, target: Target | None = None) -> RunResult:
    """The run's result once its loop ended with `status`: the clean training-set loss and
    the probe (unless it diverged), final metrics (with the steps to `target`'s losses)."""
    last = progress.history[-1]
    clean_loss, clean_acc = math.nan, math.nan
    if status != DIVERGED:
        clean_loss, clean_acc = run.evaluate_train(cfg.eval_batch_size)
        if batch_log:
            progress.recency += probe(run, batch_log, cfg, last, progress.step)
    final = {"train_loss": last["train_loss"], "train_acc": last["train_acc"],
             "clean_train_loss": clean_loss, "clean_train_acc": clean_acc,
             "test_loss": last["test_loss"], "test_acc": last["test_acc"],
             "epochs_run": len(progress.history), "train_s": last["wall_s"],
             **diag.final(progress.history), **(target.final() if target else {})}
    run.info["resumes"] = progress.resumes
    return RunResult(status, progress.history, final, run.info, progress.recency,
                     diag.examples(run), diag.step_rows())


@dataclass
class Epoch:
    """An epoch under way: its clock, the data generator's state at its start (a resumed run
    redraws the epoch from it), its batch order and augmentation, its running sums."""
    t0: float
    rng: torch.Tensor
    order: torch.Tensor
    params: object
    loss_sum: torch.Tensor
    correct: torch.Tensor
    steps: int = 0  # steps taken in it so far (the sums' count)


def open_epoch(state: RunState) -> Epoch:
    """Draw `progress.epoch`'s order and augmentation; its sums start at zero, or where a
    checkpoint left them (an epoch resumed part-way)."""
    run, progress = state.run, state.progress
    t0 = time.perf_counter() - progress.epoch_s
    rng = state.gen.get_state()
    order, params = run.maker.draw_epoch(state.gen)
    if progress.loss_sum is None:  # a new epoch (not one resumed part-way)
        state.batch_log.start_epoch(progress.epoch, progress.step, rng)
        return Epoch(t0, rng, order, params, torch.zeros((), device=run.device),
                     torch.zeros((), device=run.device, dtype=torch.int64))
    return Epoch(t0, rng, order, params, progress.loss_sum.to(run.device),
                 progress.correct.to(run.device), progress.batch)


def save_checkpoint(state: RunState, checkpoint: Checkpoint, epoch: Epoch,
                    start: float) -> None:
    """Save the run's whole state before the step `progress.batch` of `epoch`."""
    run, progress = state.run, state.progress
    progress.loss_sum, progress.correct = epoch.loss_sum.cpu(), epoch.correct.cpu()
    progress.epoch_s = time.perf_counter() - epoch.t0
    progress.wall_s = time.perf_counter() - start
    progress.diag = state.diag.state()
    progress.target = state.target.state()
    checkpoint.save(progress, run.model, run.optimizer, run.precision, epoch.rng,
                    state.batch_log.state())


def train_epoch(state: RunState, cfg: Config, checkpoint: Checkpoint | None,
                start: float) -> dict:
    """Take the steps left in `progress.epoch`, evaluate, measure what `diag` asks, and return
    the epoch's history row (of the steps taken: fewer when the run's targets are reached
    and `target.stop` ends it there). Before each step, a stop request saves the checkpoint
    and raises `Preempted`."""
    run, _, batch_log, diag, progress = state.astuple()
    target = state.target
    epoch = open_epoch(state)
    beat = time.perf_counter()  # the last sign of life: the epoch's (re)start or a heartbeat
    for i in range(progress.batch, run.steps_per_epoch):
        if checkpoint is not None and checkpoint.stop():
            progress.batch = i
            save_checkpoint(state, checkpoint, epoch, start)
            raise Preempted(checkpoint.path, progress.epoch, i)
        x, y = get_batch(run.maker, run.train_y, epoch.order, epoch.params, i, cfg.batch_size)
        lr = step_lr(cfg, progress.step / run.steps_per_epoch, run.passes)
        hook = diag.before_step(run, x, y, progress.step) if diag else None
        loss, count, hits = run.step(x, y, lr) if hook is None else \
            run.step(x, y, lr, on_grad=hook)
        batch_log.record(loss, x, y)
        if diag:
            diag.after_step(run, epoch.order[i * cfg.batch_size:(i + 1) * cfg.batch_size],
                            hits, progress.step, lr)
        epoch.loss_sum += loss
        epoch.correct += count
        epoch.steps += 1
        progress.step += 1
        if target:
            target.after_step(loss, progress.step,
                              lambda: run.evaluate_test(cfg.eval_batch_size))
            if target.done:
                break
        if time.perf_counter() - beat >= HEARTBEAT_S and i + 1 < run.steps_per_epoch:
            beat = time.perf_counter()
            heartbeat(progress.epoch, run.passes, i + 1, run.steps_per_epoch, beat - epoch.t0)
    return epoch_row(run, cfg, diag, progress.epoch, lr, epoch, start, last=target.done)


def heartbeat(epoch: int, epochs: int, done: int, steps: int, seconds: float) -> None:
    """Say that epoch `epoch` (of `epochs`) has taken `done` of its `steps` in `seconds`."""
    PROGRESS_LOG.debug("epoch %d of %d: step %d/%d, %.0f s in", epoch, epochs, done, steps,
                       seconds, extra={"steps": (done, steps), "epoch": epoch,
                                       "epochs": epochs, "epoch_s": seconds})


def epoch_row(run: Setup, cfg: Config, diag: Diagnostics, number: int, lr: float,
              epoch: Epoch, start: float, last: bool = False) -> dict:
    """Epoch `number`'s history row from `epoch`'s running sums: the test set evaluated when
    `eval_every` says so (and after the last epoch, or the epoch the run ends in when `last`),
    what `diag` measures, the clocks (the epoch's, and the run's from `start`)."""
    last = last or number == run.passes
    seen = epoch.steps * cfg.batch_size
    row = {"epoch": number, "step_lr": lr, "train_loss": epoch.loss_sum.item() / seen,
           "train_acc": epoch.correct.item() / seen, "test_loss": math.nan,
           "test_acc": math.nan}
    if not blown_up(row["train_loss"]) and (
            last or (cfg.eval_every and number % cfg.eval_every == 0)):
        row["test_loss"], row["test_acc"] = run.evaluate_test(cfg.eval_batch_size)
    if diag:
        row.update(diag.after_epoch(run, row, last=last))
    sync(run.device)
    now = time.perf_counter()
    row.update(epoch_s=now - epoch.t0, wall_s=now - start)
    return row


def probe(run: Setup, batch_log: BatchLog, cfg: Config, row: dict, step: int) -> list[dict]:
    """The probe's rows after the epoch of `row` (its test loss is the reference; evaluated
    here when that epoch skipped the test set)."""
    test_loss, test_acc = row["test_loss"], row["test_acc"]
    if not math.isfinite(test_loss):
        test_loss, test_acc = run.evaluate_test(cfg.eval_batch_size)
    reference = {"probe_epoch": row["epoch"], "test_loss": test_loss, "test_acc": test_acc}
    return replay(run.net, run.maker, run.train_y, batch_log, cfg.batch_size, step,
                  run.autocast, reference)
