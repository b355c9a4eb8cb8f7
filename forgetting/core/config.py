"""The config schema: every key declared once, with its type, default, allowed values, help,
whether it is part of the config hash and whether it is a column of the sweep table.

How a key is declared: forgetting/core/keys.py. Everything else is derived from these
declarations (`KEYS`): the checks of a composed config
(`validate`) and of command-line overrides (forgetting/runs/preflight.py), the keys left out of
the config hash (forgetting/rundir/identity.py), the table's config columns
(forgetting/tables/results.py) and the README's key table (`python -m forgetting.core.config`
prints it; a test compares).

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

import dataclasses
import math
import typing
from dataclasses import dataclass

from forgetting.core.errors import ConfigError
from forgetting.core.keys import Key, Rule, declared_keys, key, number_text, section
from forgetting.core.sections import (  # noqa: F401 (re-exported: import them from here)
    BUDGETS,
    DATASETS,
    DEVICES,
    HVP_PRECISIONS,
    MODELS,
    POSITIVE_INT,
    PRECISIONS,
    DataConfig,
    DiagConfig,
    LoggerConfig,
    ModelConfig,
    OptimizerConfig,
    OptunaConfig,
    ProbeConfig,
    ScheduleConfig,
    TargetConfig,
)


@dataclass
class Config:
    lr: float = key(1.0, "LR **factor** on the recipe's per-example learning rate, at every "
                    "point of the schedule; the same factor is the same per-example LR at "
                    "every batch size", rule=Rule(gt=0), column=True)
    subset: float = key(1.0, "fraction of the training set; class-balanced, **nested** (for "
                        "one `subset_seed` the 0.25 subset lies inside the 0.5 one)",
                        rule=Rule(gt=0, le=1), column=True)
    batch_size: int = key(512, "examples per step (drop-last batches)", rule=POSITIVE_INT,
                          column=True, shown="from the recipe")
    epochs: int = key(24, "passes over the subset; the schedule's knots are stretched to fit",
                      rule=POSITIVE_INT, column=True, shown="from the recipe")
    budget: str = key("epochs", "`epochs`: `epochs` passes over the subset; `steps`: as many "
                      "steps as `epochs` passes over the **full** set (a 1/4 subset gets 4x the "
                      "passes), which separates forgetting from under-training",
                      rule=Rule(choices=BUDGETS), column=True)
    seed: int = key(0, "model init, batch order and augmentation", column=True)
    subset_seed: int = key(0, "chooses the subset, independently of `seed`", column=True)
    model: ModelConfig = section(ModelConfig, "`model=resnet9|dawn18|tiny`", group=True)
    data: DataConfig = section(DataConfig, "`data=cifar10|imagefolder|synthetic`", group=True)
    augment: bool = key(True, "reflect-pad 4 + random 32x32 crop + horizontal flip",
                        column=True)
    cutout: int = key(0, "side of a cutout square (8 in the `resnet9` recipe, as in the seed's "
                      "part 4; 0 in `part1`, `part2`); 0 = off", rule=Rule(ge=0), column=True,
                      shown="from the recipe")
    precision: str = key("auto", "`fp32`, `bf16` (autocast), `auto`: bf16 on a GPU that has "
                         "it; on a CPU with bf16 units, whichever measures faster for this "
                         "model (timed once, cached in `$FORGETTING_CACHE/precision.json`)",
                         rule=Rule(choices=PRECISIONS), column=True)
    device: str = key("auto", "`auto` (a GPU when there is one), `cpu`, `cuda`",
                      rule=Rule(choices=DEVICES))
    schedule: ScheduleConfig = section(ScheduleConfig, "set by `recipe=`")
    optimizer: OptimizerConfig = section(OptimizerConfig)
    probe: ProbeConfig = section(ProbeConfig)
    diag: DiagConfig = section(DiagConfig)
    target: TargetConfig = section(TargetConfig)
    eval_batch_size: int = key(1024, "images per evaluation batch", rule=POSITIVE_INT)
    eval_every: int = key(1, "test-set evaluation every N epochs and after the last (other "
                          "rows have test_loss NaN); 0 = only after the last",
                          rule=Rule(ge=0, note="0 = only after the last epoch"))
    threads: int = key(0, "torch CPU threads for the run (0 = all cores; the joblib launcher "
                       "wants cores / n_jobs)", rule=Rule(ge=0, note="0 = all cores"))
    compile: bool = key(False, "`torch.compile` the model; every shape is compiled before the "
                        "clock starts and `compile_s` is reported apart")
    cuda_graphs: bool = key(True, "on a GPU, the whole training step (forward, loss, backward, "
                            "SGD) is captured once as a CUDA graph and replayed; capture counts "
                            "in `compile_s`; no effect on a CPU", hashed=False)
    quiet: bool = key(False, "one short line per epoch (rewritten in place on a terminal) "
                      "instead of the full per-epoch log line and a single run's bar; an epoch "
                      "over 30 s says its step every 30 s either way", hashed=False)
    target_acc: float = key(0.94, "the test accuracy a run counts as reaching in "
                            "`forgetting.analyze` (analysis only)", rule=Rule(gt=0, le=1),
                            hashed=False, column=True)
    force: bool = key(False, "train even when this config already finished in its run folder "
                      "(a rerun of a sweep skips those), ignoring any checkpoint", hashed=False)
    report: bool = key(True, "write the sweep's self-contained `report.html` (verdict, "
                       "figures, tables, provenance) at its end; `python -m forgetting.report "
                       "DIR` writes it any time", hashed=False)
    optuna: OptunaConfig = section(OptunaConfig)
    logger: LoggerConfig = section(LoggerConfig, "`logger=none|mlflow|tensorboard|all`")


KEYS: dict[str, Key] = {k.name: k for k in declared_keys(Config)}
# sections: the first part of a dotted key -> its dataclass; groups: filled by conf/NAME/
SECTIONS = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
            if f.metadata.get("section")}
GROUP_SECTIONS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("group"))
UNHASHED = tuple(k.name for k in KEYS.values() if not k.hashed)
COLUMNS = {k.column: k.name for k in KEYS.values() if k.column}  # table column -> key


def lookup(cfg: object, name: str) -> object:
    """The value of dotted key `name` in a Config (or any object of attributes)."""
    node = cfg
    for part in name.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: Config) -> None:
    """Raise ConfigError (one line: key, value, allowed) for the first bad value."""
    for k in KEYS.values():
        k.check(lookup(cfg, k.name))
    s = cfg.schedule
    if not (len(s.knots) >= 2 and len(s.knots) == len(s.values)):
        raise ConfigError("schedule.knots", s.knots, "needs >= 2 knots and one value per knot")
    if not (all(b > a for a, b in zip(s.knots, s.knots[1:])) and s.knots[0] == 0):
        raise ConfigError("schedule.knots", s.knots, "must start at 0 and increase")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in s.values):
        raise ConfigError("schedule.values", s.values, "must be finite and >= 0")
    if cfg.diag.sharpness and 0 < cfg.diag.sharpness_examples < cfg.batch_size:
        raise ConfigError("diag.sharpness_examples", cfg.diag.sharpness_examples,
                          f"is below one batch (batch_size={cfg.batch_size}); sharpness is "
                          "measured over whole batches: give a multiple of the batch size, "
                          "or 0 for the larger of 256 and one batch")
    d = cfg.data
    if d.name == "synthetic" and d.train_size < d.num_classes:
        raise ConfigError("data.train_size", d.train_size, "must be >= data.num_classes")
    side = {"synthetic": d.image_size, "cifar10": 32}.get(d.name)  # imagefolder: any size
    if side is not None and cfg.cutout > side:
        raise ConfigError("cutout", cfg.cutout, f"must be <= the image side {side} "
                          f"(data={d.name}); 0 = off")


def markdown_table() -> str:
    """The README's key table, one row per declared key."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for k in KEYS.values():
        if k.shown is not None:
            default = k.shown
        elif isinstance(k.default, bool):
            default = str(k.default).lower()
        elif k.default is None:
            default = "null"
        elif isinstance(k.default, str):
            default = f"`{k.default}`"
        elif isinstance(k.default, list):
            default = "[" + ", ".join(number_text(v) for v in k.default) + "]"
        else:
            default = number_text(k.default)
        extra = "" if k.hashed else "; not part of the config hash"
        text = k.help.replace("|", "\\|")  # a pipe would end the cell
        rows.append(f"| `{k.name}` | {default} | {text}{extra} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
