"""The config schema (dataclasses in Hydra's ConfigStore) and its validation.

Units, once and for all (see also the README's "Training semantics"):
- `lr` is a *factor* on the recipe's per-example learning rate. The recipe's schedule gives LR
  values as the seed's code writes them, for `schedule.batch_size` examples per step, so the
  per-example LR at epoch e is `schedule(e) / schedule.batch_size`. The optimizer sees
  `lr * schedule(e) / schedule.batch_size` on a loss *summed* over the batch, whatever the run's
  `batch_size`: the same factor is the same per-example LR at every batch size.
- `optimizer.weight_decay` is per example; the optimizer applies `weight_decay * batch_size`
  once per step, which is the seed's "5e-4 x batch size".
- `subset` is a fraction of the training set; `epochs` counts passes over the subset
  (`budget: epochs`) or sets the step count of that many passes over the full set
  (`budget: steps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from forgetting.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")
BUDGETS = ("epochs", "steps")
DATASETS = ("cifar10", "imagefolder", "synthetic")


@dataclass
class ModelConfig:
    name: str = "resnet9"
    width: float = 1.0  # multiplies every channel count


@dataclass
class DataConfig:
    name: str = "cifar10"
    # cifar10: folder with cifar-10-batches-py/ or an ImageFolder tree train/<class>, test/<class>
    # imagefolder: any ImageFolder tree with train/ and test/
    root: str = "${oc.env:FORGETTING_DATA,'~/.cache/forgetting/cifar10'}"
    cache_dir: str = "${oc.env:FORGETTING_CACHE,'~/.cache/forgetting/tensors'}"
    download: bool = True  # cifar10 only: fetch the official archive through torchvision
    # channel mean and std on the 0-255 scale (the seed's CIFAR-10 values)
    mean: list[float] = field(default_factory=lambda: [125.31, 122.95, 113.87])
    std: list[float] = field(default_factory=lambda: [62.99, 62.09, 66.70])
    # synthetic only: a learnable class-conditional image set
    num_classes: int = 10
    train_size: int = 2000
    test_size: int = 500
    image_size: int = 32
    noise: float = 48.0  # pixel noise (0-255 scale) around each class's pattern
    data_seed: int = 0


@dataclass
class ScheduleConfig:
    # piecewise-linear LR schedule: knots in epochs -> values (the seed's LR for `batch_size`
    # examples per step). Knots are stretched to the run's `epochs` when they differ.
    knots: list[float] = field(default_factory=lambda: [0.0, 5.0, 24.0])
    values: list[float] = field(default_factory=lambda: [0.0, 0.4, 0.0])
    batch_size: int = 512  # the batch size `values` are written for


@dataclass
class OptimizerConfig:
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # per example; applied as weight_decay * batch_size per step


@dataclass
class OptunaConfig:
    """Which Optuna trial this run is. Set per job by `hydra/sweeper=optuna_study`; null outside
    an Optuna search. The run reports its test loss each epoch to the trial (pruning) and
    records all three in metrics.json."""
    study: Optional[str] = None  # study name
    storage: Optional[str] = None  # memory, journal:/abs/path.log, or a database URL
    trial: Optional[int] = None  # trial number (= the job's number in the sweep)


@dataclass
class ProbeConfig:
    """The forgetting probe (forgetting/probe.py): when training stops, the loss of every batch
    of the last `epochs` epochs, rebuilt exactly as it was fed, under the final model."""
    epochs: int = 2  # K: how many of the last epochs to probe; 0 turns the probe off
    every: int = 0  # also probe after every N-th epoch (0: only when training stops)
    verify: bool = False  # checksum every probed batch when fed and when rebuilt


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    lr: float = 1.0  # factor on the recipe's per-example LR
    subset: float = 1.0  # fraction of the training set, class-balanced and nested
    subset_seed: int = 0  # chooses the subset; independent of `seed`
    batch_size: int = 512
    epochs: int = 24
    budget: str = "epochs"  # epochs: passes over the subset; steps: steps of `epochs` full passes
    seed: int = 0  # model init, batch order and augmentation
    device: str = "auto"
    precision: str = "auto"
    augment: bool = True  # reflect-pad 4 + random 32x32 crop + horizontal flip
    cutout: int = 0  # side of the cutout square (the seed's part 3+ uses 8); 0 = off
    eval_batch_size: int = 1024
    # test-set evaluation every this many epochs (passes) and always after the last (0: only
    # after the last); other epochs' rows have test_loss NaN. For many passes over small subsets.
    eval_every: int = 1
    quiet: bool = False  # no progress line per epoch
    threads: int = 0  # torch CPU threads for this run; 0 = torch's default (all cores)
    compile: bool = False  # torch.compile the model; compile time is reported apart
    # on a GPU, capture the whole training step once as a CUDA graph and replay it (no effect
    # on a CPU); capture time is counted in compile_s (forgetting/graphs.py); not hashed
    cuda_graphs: bool = True
    # the test accuracy a run counts as reaching in `forgetting.analyze` (the seed's 94%);
    # analysis only: not part of the config hash
    target_acc: float = 0.94
    # train even when this config already finished in its run folder (a rerun of a sweep skips
    # those), ignoring any checkpoint; the new result replaces the old (forgetting/resume.py)
    force: bool = False


SECTIONS = {"model": ModelConfig, "data": DataConfig, "schedule": ScheduleConfig,
            "optimizer": OptimizerConfig, "optuna": OptunaConfig, "probe": ProbeConfig}


def register_configs(sweeps_dir: Path | None = None) -> None:
    """Store the schema; with `sweeps_dir`, also each preset `sweeps_dir/NAME.yaml` as group
    `sweep` (package _global_), selected with `+sweep=NAME`."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for path in sorted(sweeps_dir.glob("*.yaml")) if sweeps_dir is not None else []:
        cs.store(group="sweep", name=path.stem, node=OmegaConf.load(path), package="_global_")


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_value(key: str, value: object) -> None:
    """Check one top-level value; shared by the per-run check and the sweep pre-flight."""
    if key == "lr":
        _check(_finite(value) and value > 0, key, value, "must be a number > 0")
    elif key == "subset":
        _check(_finite(value) and 0 < value <= 1, key, value, "must be in (0, 1]")
    elif key == "batch_size":
        _check(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")
    elif key == "epochs":
        _check(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")
    elif key == "device":
        _check(value in DEVICES, key, value, f"choose one of {', '.join(DEVICES)}")
    elif key == "precision":
        _check(value in PRECISIONS, key, value, f"choose one of {', '.join(PRECISIONS)}")
    elif key == "budget":
        _check(value in BUDGETS, key, value, f"choose one of {', '.join(BUDGETS)}")
    elif key == "cutout":
        _check(isinstance(value, int) and value >= 0, key, value, "must be an integer >= 0")
    elif key == "threads":
        _check(isinstance(value, int) and value >= 0, key, value,
               "must be an integer >= 0 (0 = all cores)")
    elif key == "eval_every":
        _check(isinstance(value, int) and value >= 0, key, value,
               "must be an integer >= 0 (0 = only after the last epoch)")
    elif key in ("probe.epochs", "probe.every"):
        _check(isinstance(value, int) and value >= 0, key, value,
               "must be an integer >= 0 (0 = off)" if key == "probe.epochs"
               else "must be an integer >= 0 (0 = only when training stops)")
    elif key == "eval_batch_size":
        _check(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")


CHECKED_KEYS = ("lr", "subset", "batch_size", "epochs", "device", "precision", "budget",
                     "cutout", "eval_batch_size", "eval_every", "threads", "probe.epochs",
                     "probe.every")


def validate(cfg: Config) -> None:
    """Raise ConfigError (one line: key, value, allowed) for the first bad value."""
    for key in CHECKED_KEYS:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        validate_value(key, node)
    _check(cfg.data.name in DATASETS, "data.name", cfg.data.name,
           f"choose one of {', '.join(DATASETS)}")
    s = cfg.schedule
    _check(len(s.knots) >= 2 and len(s.knots) == len(s.values), "schedule.knots", s.knots,
           "needs >= 2 knots and one value per knot")
    _check(all(b > a for a, b in zip(s.knots, s.knots[1:])) and s.knots[0] == 0,
           "schedule.knots", s.knots, "must start at 0 and increase")
    _check(all(_finite(v) and v >= 0 for v in s.values), "schedule.values", s.values,
           "must be finite and >= 0")
    _check(s.batch_size >= 1, "schedule.batch_size", s.batch_size, "must be an integer >= 1")
    _check(cfg.optimizer.weight_decay >= 0, "optimizer.weight_decay",
           cfg.optimizer.weight_decay, "must be >= 0")
    _check(0 <= cfg.optimizer.momentum < 1, "optimizer.momentum", cfg.optimizer.momentum,
           "must be in [0, 1)")
    if cfg.data.name == "synthetic":
        d = cfg.data
        _check(d.num_classes >= 2, "data.num_classes", d.num_classes, "must be >= 2")
        _check(d.train_size >= d.num_classes, "data.train_size", d.train_size,
               "must be >= data.num_classes")
        _check(d.test_size >= 1, "data.test_size", d.test_size, "must be >= 1")
        _check(d.image_size >= 8, "data.image_size", d.image_size, "must be >= 8")
