"""What one run trains with, built from its config: device, precision, the data subset on the
device, model, optimizer and the training step; the LR at each step and the number of passes.

Semantics (the seed's code): the loss is *summed* over the batch; the optimizer's LR is
`lr * schedule(epoch) / schedule.batch_size` (per example); weight decay is
`weight_decay * batch_size`, applied once per step; SGD with Nesterov momentum 0.9. This equals
mean-loss SGD with LR `lr * schedule(epoch) * batch_size / schedule.batch_size` and weight decay
`weight_decay` (tests/test_train.py proves it for one step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from forgetting.core.augment import BatchMaker
from forgetting.core.config import Config
from forgetting.core.data import Dataset, load_dataset, subset_indices
from forgetting.core.device import device_name, resolve_device, resolve_precision, sync
from forgetting.core.model import build_model
from forgetting.core.schedule import piecewise_linear, stretch
from forgetting.core.sgd import SGD
from forgetting.core.source import check_fits
from forgetting.core.step import compile_and_warm, make_autocast, make_step


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
    step: Callable | None  # (x, y, lr) -> (summed loss, correct count, hits): make_step
    autocast: Callable
    maker: BatchMaker  # the training subset
    test: BatchMaker
    train_y: torch.Tensor
    test_y: torch.Tensor
    steps_per_epoch: int
    passes: int
    info: dict
    subset: torch.Tensor  # the training subset's indices in the full training set

    def evaluate_test(self, batch_size: int) -> tuple[float, float]:
        return evaluate(self.net, self.test, self.test_y, batch_size, self.autocast)

    def evaluate_train(self, batch_size: int) -> tuple[float, float]:
        """The whole training subset, without augmentation, in eval mode."""
        return evaluate(self.net, self.maker, self.train_y, batch_size, self.autocast)


def prepare(cfg: Config, dataset: Dataset | None, precision: str | None,
            fused: bool = False) -> Setup:
    """Device, data subset on the device, model, optimizer; seeds torch's global generator.
    `fused`: the run is a member of a pack (core/packed.py), whose fused step trains it: no
    step of its own (`step` is None), nothing compiled."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    precision = precision or resolve_precision(
        cfg.precision, device, cfg.model.name, cfg.model.width, cfg.data.cache_dir)
    data = dataset if dataset is not None else load_dataset(cfg.data)
    subset = subset_indices(data.train_y, cfg.subset, cfg.subset_seed)
    n = len(subset)
    check_fits(cfg, n, len(data.train_y))
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
            "threads": torch.get_num_threads(), "train_size": n, "test_size": len(test_y),
            "passes": passes, "steps": passes * steps_per_epoch, "source": data.source,
            "resumes": 0}
    start = time.perf_counter()
    compiled = cfg.compile and not fused
    net = compile_and_warm(model, maker, cfg.batch_size, [n, len(test_y)],
                           cfg.eval_batch_size, autocast) if compiled else model
    optimizer = make_optimizer(model, cfg)
    train_y = data.train_y[subset].to(device)
    graphs = info["cuda_graphs"] = cfg.cuda_graphs and device.type == "cuda" and not fused
    step = None if fused else make_step(net, model, optimizer, precision, maker, train_y,
                                        cfg.batch_size, graphs)
    sync(device)
    info["compile_s"] = time.perf_counter() - start if compiled or graphs else 0.0
    return Setup(device, precision, model, net, optimizer, step, autocast, maker, test, train_y,
                 test_y, steps_per_epoch, passes, info, subset)
