"""The training loop of the seed recipe. Knows nothing of Hydra: tests call `train` directly.

Semantics (the seed's code): the loss is *summed* over the batch; the optimizer's LR is
`lr * schedule(epoch) / schedule.batch_size` (per example); weight decay is
`weight_decay * batch_size`, applied once per step; SGD with Nesterov momentum 0.9. This equals
mean-loss SGD with LR `lr * schedule(epoch) * batch_size / schedule.batch_size` and weight decay
`weight_decay` (tests/test_train.py proves it for one step).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F

from forgetting import checkpoint as ckpt
from forgetting.augment import BatchMaker, get_batch
from forgetting.compile import compile_and_warm
from forgetting.config import Config
from forgetting.data import Dataset, load_dataset, subset_indices
from forgetting.device import device_name, resolve_device, resolve_precision, sync
from forgetting.errors import ConfigError
from forgetting.model import build_model
from forgetting.probe import BatchLog, replay
from forgetting.schedule import piecewise_linear, stretch
from forgetting.sgd import SGD

log = logging.getLogger("forgetting")


@dataclass
class RunResult:
    status: str  # ok | diverged | pruned
    history: list[dict]  # one row per epoch
    final: dict  # train_loss, clean_train_loss, test_loss, test_acc, ...
    info: dict = field(default_factory=dict)  # device, precision, sizes, steps
    recency: list[dict] = field(default_factory=list)  # the probe's rows (forgetting/probe.py)


def step_lr(cfg: Config, epoch_progress: float, passes: int) -> float:
    """Optimizer LR (per example, summed loss) at a point of the run, in epochs."""
    knots = stretch(cfg.schedule.knots, passes)
    return cfg.lr * piecewise_linear(epoch_progress, knots, cfg.schedule.values) \
        / cfg.schedule.batch_size


def plan_passes(cfg: Config, full_size: int, subset_size: int) -> int:
    """Passes over the subset: `epochs`, or as many as give the full set's step count."""
    if cfg.budget == "epochs":
        return cfg.epochs
    full_steps = cfg.epochs * (full_size // cfg.batch_size)
    return max(1, round(full_steps / (subset_size // cfg.batch_size)))


def make_optimizer(model: torch.nn.Module, cfg: Config) -> SGD:
    """SGD on the summed loss: weight decay per example x batch size (the seed's recipe)."""
    return SGD(model.parameters(), lr=0.0, momentum=cfg.optimizer.momentum,
               nesterov=cfg.optimizer.nesterov,
               weight_decay=cfg.optimizer.weight_decay * cfg.batch_size)


def make_autocast(device: torch.device, precision: str):
    """A factory of autocast contexts: bf16 when `precision` says so, else a no-op."""
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sgd_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, lr: float, autocast):
    """One step on the summed loss; returns the (detached) loss and the correct count."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast():
        out = model(x)
    loss = F.cross_entropy(out.float(), y, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (out.detach().argmax(1) == y).sum()


def make_step(net, model, optimizer: SGD, precision: str, maker: BatchMaker,
              labels: torch.Tensor, batch_size: int, graphs: bool) -> Callable:
    """The training step `step(x, y, lr) -> (loss, correct)`: `sgd_step`, or with `graphs`
    (a GPU's) the same step captured as one CUDA graph (forgetting/graphs.py)."""
    if graphs:
        from forgetting.graphs import GraphStep

        return GraphStep(net, model, optimizer, precision, maker.example(batch_size),
                         labels[:batch_size])
    return partial(sgd_step, net, optimizer, autocast=make_autocast(labels.device, precision))


@torch.no_grad()
def evaluate(model, maker: BatchMaker, labels: torch.Tensor, batch_size: int,
             autocast) -> tuple[float, float]:
    """Mean loss and accuracy over all of `maker`'s images, eval mode, no augmentation."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=labels.device)
    correct = torch.zeros((), device=labels.device, dtype=torch.int64)
    n = len(labels)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size), device=labels.device)
        with autocast():
            out = model(maker.batch(idx))
        y = labels[idx]
        loss += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    model.train(was_training)
    return loss.item() / n, correct.item() / n


@dataclass
class Setup:
    """What one run trains with: built from the config (and a resumed run's precision)."""
    device: torch.device
    precision: str
    model: torch.nn.Module  # weights, for checkpoints
    net: torch.nn.Module  # what is called: the model or its compiled form
    optimizer: SGD
    step: Callable  # (x, y, lr) -> (summed loss, correct count): make_step
    autocast: Callable
    maker: BatchMaker  # the training subset
    test: BatchMaker
    train_y: torch.Tensor
    test_y: torch.Tensor
    steps_per_epoch: int
    passes: int
    info: dict

    def evaluate_test(self, batch_size: int) -> tuple[float, float]:
        return evaluate(self.net, self.test, self.test_y, batch_size, self.autocast)


def prepare(cfg: Config, dataset: Dataset | None, precision: str | None) -> Setup:
    """Device, data subset on the device, model, optimizer; seeds torch's global generator."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    precision = precision or resolve_precision(
        cfg.precision, device, cfg.model.name, cfg.model.width, cfg.data.cache_dir)
    data = dataset if dataset is not None else load_dataset(cfg.data)
    subset = subset_indices(data.train_y, cfg.subset, cfg.subset_seed)
    n = len(subset)
    if cfg.batch_size > n:
        raise ConfigError("batch_size", cfg.batch_size,
                          f"must be <= the subset size {n} (subset={cfg.subset} of "
                          f"{len(data.train_y)} training images)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.name, cfg.model.width, data.num_classes)
    model = model.to(device, memory_format=torch.channels_last)
    autocast = make_autocast(device, precision)
    maker = BatchMaker(data.train_x[subset], cfg.data.mean, cfg.data.std, device, torch.float32,
                       cutout=cfg.cutout, augment=cfg.augment)
    test = BatchMaker(data.test_x, cfg.data.mean, cfg.data.std, device, torch.float32,
                      augment=False)
    test_y = data.test_y.to(device)
    steps_per_epoch = n // cfg.batch_size
    passes = plan_passes(cfg, len(data.train_y), n)
    info = {"device": str(device), "device_name": device_name(device), "precision": precision,
            "train_size": n, "test_size": len(test_y), "passes": passes,
            "steps": passes * steps_per_epoch, "source": data.source, "resumes": 0}
    start = time.perf_counter()
    net = compile_and_warm(model, maker, cfg.batch_size, [n, len(test_y)],
                           cfg.eval_batch_size, autocast) if cfg.compile else model
    optimizer = make_optimizer(model, cfg)
    train_y = data.train_y[subset].to(device)
    graphs = info["cuda_graphs"] = cfg.cuda_graphs and device.type == "cuda"
    step = make_step(net, model, optimizer, precision, maker, train_y, cfg.batch_size, graphs)
    sync(device)
    info["compile_s"] = time.perf_counter() - start if cfg.compile or graphs else 0.0
    return Setup(device, precision, model, net, optimizer, step, autocast, maker, test, train_y,
                 test_y, steps_per_epoch, passes, info)


def train(cfg: Config, dataset: Dataset | None = None,
          on_epoch: Callable[[dict], bool] | None = None,
          checkpoint: ckpt.Checkpoint | None = None) -> RunResult:
    """Train one model as `cfg` says; return per-epoch history, final metrics and the probe's
    rows (`recency`, forgetting/probe.py).

    `on_epoch(row)` is called with each epoch's history row; returning True stops the run
    there with `status: pruned` (a sweeper's pruner uses it). With `checkpoint`, the run
    resumes from `checkpoint.load()` when there is one, and when `checkpoint.stop()` turns true
    it saves its state before the next step and raises `Preempted` (forgetting/checkpoint.py)."""
    resume = checkpoint.load() if checkpoint is not None else None
    run = prepare(cfg, dataset, resume["precision"] if resume else None)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch_log = BatchLog(cfg.probe.epochs, cfg.probe.verify)
    history: list[dict] = []
    recency: list[dict] = []
    status = "ok"
    step, first_epoch, first_batch, elapsed = 0, 1, 0, 0.0
    if resume is not None:
        ckpt.restore(resume, run.model, run.optimizer, gen, run.device)
        history, step, elapsed = list(resume["history"]), resume["step"], resume["wall_s"]
        first_epoch, first_batch = resume["epoch"], resume["batch"]
        recency = list(resume.get("recency", []))
        batch_log.load(resume.get("batch_log", []), run.device)
        run.info["resumes"] = resume["resumes"] + 1
        log.info("resumed from %s at epoch %d, batch %d", checkpoint.path, first_epoch,
                 first_batch)
    sync(run.device)
    start = time.perf_counter() - elapsed
    run.model.train()
    for epoch in range(first_epoch, run.passes + 1):
        t0 = time.perf_counter()
        epoch_rng = gen.get_state()  # a resumed run redraws this epoch's order and params
        order, params = run.maker.draw_epoch(gen)
        loss_sum = torch.zeros((), device=run.device)
        correct = torch.zeros((), device=run.device, dtype=torch.int64)
        batches = range(run.steps_per_epoch)
        if resume is not None and epoch == first_epoch:  # the batches not yet taken
            batches = range(first_batch, run.steps_per_epoch)
            loss_sum += resume["loss_sum"].to(run.device)
            correct += resume["correct"].to(run.device)
            t0 -= resume["epoch_s"]
        else:
            batch_log.start_epoch(epoch, step, epoch_rng)
        for i in batches:
            if checkpoint is not None and checkpoint.stop():
                checkpoint.save({
                    "epoch": epoch, "batch": i, "step": step, "history": history,
                    "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                    "rng": ckpt.rng_state(epoch_rng, run.device), "loss_sum": loss_sum.cpu(),
                    "correct": correct.cpu(), "epoch_s": time.perf_counter() - t0,
                    "wall_s": time.perf_counter() - start, "precision": run.precision,
                    "resumes": run.info["resumes"], "batch_log": batch_log.state(),
                    "recency": recency})
                raise ckpt.Preempted(checkpoint.path, epoch, i)
            x, y = get_batch(run.maker, run.train_y, order, params, i, cfg.batch_size)
            lr = step_lr(cfg, step / run.steps_per_epoch, run.passes)
            loss, hits = run.step(x, y, lr)
            batch_log.record(loss, x, y)
            loss_sum += loss
            correct += hits
            step += 1
        seen = run.steps_per_epoch * cfg.batch_size
        train_loss = loss_sum.item() / seen
        row = {"epoch": epoch, "step_lr": lr, "train_loss": train_loss,
               "train_acc": correct.item() / seen}
        if not math.isfinite(train_loss):
            status = "diverged"
            row.update(test_loss=math.nan, test_acc=math.nan)
        elif epoch == run.passes or (cfg.eval_every and epoch % cfg.eval_every == 0):
            row["test_loss"], row["test_acc"] = run.evaluate_test(cfg.eval_batch_size)
        else:
            row.update(test_loss=math.nan, test_acc=math.nan)
        sync(run.device)
        now = time.perf_counter()
        row.update(epoch_s=now - t0, wall_s=now - start)
        history.append(row)
        log.log(logging.DEBUG if cfg.quiet else logging.INFO,
                "epoch %d/%d  lr %.3g  train_loss %.4f  train_acc %.4f  test_loss %.4f  "
                "test_acc %.4f  %.1fs", epoch, run.passes, lr * cfg.schedule.batch_size,
                train_loss, row["train_acc"], row["test_loss"], row["test_acc"], row["wall_s"])
        if status == "diverged":
            break
        if on_epoch is not None and on_epoch(row):
            status = "pruned"
            break
        if batch_log and cfg.probe.every and epoch % cfg.probe.every == 0 \
                and epoch < run.passes:
            recency += probe(run, batch_log, cfg, row, step)

    last = history[-1]
    if status != "diverged":
        clean_loss, clean_acc = evaluate(run.net, run.maker, run.train_y, cfg.eval_batch_size,
                                         run.autocast)
        if batch_log:
            recency += probe(run, batch_log, cfg, last, step)
    else:
        clean_loss, clean_acc = math.nan, math.nan
    final = {"train_loss": last["train_loss"], "train_acc": last["train_acc"],
             "clean_train_loss": clean_loss, "clean_train_acc": clean_acc,
             "test_loss": last["test_loss"], "test_acc": last["test_acc"],
             "epochs_run": len(history), "train_s": last["wall_s"]}
    return RunResult(status, history, final, run.info, recency)


def probe(run: Setup, batch_log: BatchLog, cfg: Config, row: dict, step: int) -> list[dict]:
    """The probe's rows after the epoch of `row` (its test loss is the reference; evaluated
    here when that epoch skipped the test set)."""
    test_loss, test_acc = row["test_loss"], row["test_acc"]
    if not math.isfinite(test_loss):
        test_loss, test_acc = run.evaluate_test(cfg.eval_batch_size)
    reference = {"probe_epoch": row["epoch"], "test_loss": test_loss, "test_acc": test_acc}
    return replay(run.net, run.maker, run.train_y, batch_log, cfg.batch_size, step,
                  run.autocast, reference)
