"""The config's sections, one dataclass each (`model.*`, `data.*`, `schedule.*`, `optimizer.*`,
`optuna.*`, `probe.*`, `target.*`, `diag.*`, `logger.*`), and the allowed values they name.
forgetting/core/config.py puts them together into `Config`; it is the one to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from forgetting.core.keys import Rule, key

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")
HVP_PRECISIONS = ("fp32", "bf16")  # diag.hvp_precision
BUDGETS = ("epochs", "steps")
DATASETS = ("cifar10", "imagefolder", "synthetic")
MODELS = ("resnet9", "dawn18", "tiny")
POSITIVE_INT = Rule(ge=1)


@dataclass
class ModelConfig:
    name: str = key("resnet9", "the network: `resnet9` (the seed's part 4), `dawn18` (parts "
                    "1-2), `tiny` (tests)", rule=Rule(choices=MODELS), column="model")
    width: float = key(1.0, "multiplies every channel count", rule=Rule(gt=0), column=True)


@dataclass
class DataConfig:
    name: str = key("cifar10", "`cifar10`, `imagefolder` (your own tree) or `synthetic`",
                    rule=Rule(choices=DATASETS), column="data")
    root: str = key("${oc.env:FORGETTING_DATA,'~/.cache/forgetting/cifar10'}",
                    "cifar10: a folder with `cifar-10-batches-py/` or an ImageFolder tree "
                    "`train/<class>`, `test/<class>`; imagefolder: any such tree",
                    shown="`$FORGETTING_DATA`, else `~/.cache/forgetting/cifar10`")
    cache_dir: str = key("${oc.env:FORGETTING_CACHE,'~/.cache/forgetting/tensors'}",
                         "where decoded images are cached as uint8 tensors", hashed=False,
                         shown="`$FORGETTING_CACHE`, else `~/.cache/forgetting/tensors`")
    download: bool = key(True, "cifar10 only: fetch the official archive through torchvision "
                         "when `root` has none", hashed=False)
    mean: list[float] = key(help="channel mean on the 0-255 scale (the seed's CIFAR-10 values)",
                            factory=lambda: [125.31, 122.95, 113.87])
    std: list[float] = key(help="channel std on the 0-255 scale",
                           factory=lambda: [62.99, 62.09, 66.70])
    num_classes: int = key(10, "synthetic: classes", rule=Rule(ge=2))
    train_size: int = key(2000, "synthetic: training images", rule=POSITIVE_INT)
    test_size: int = key(500, "synthetic: test images", rule=POSITIVE_INT)
    image_size: int = key(32, "synthetic: image side in pixels", rule=Rule(ge=8))
    noise: float = key(48.0, "synthetic: pixel noise (0-255 scale) around each class's pattern",
                       rule=Rule(ge=0))
    data_seed: int = key(0, "synthetic: the generator's seed")


@dataclass
class ScheduleConfig:
    knots: list[float] = key(help="piecewise-linear LR schedule: knots in epochs, stretched to "
                             "the run's `epochs`", factory=lambda: [0.0, 5.0, 24.0],
                             shown="from the recipe")
    values: list[float] = key(help="the schedule's LR at each knot, for `schedule.batch_size` "
                              "examples per step (the seed's numbers)",
                              factory=lambda: [0.0, 0.4, 0.0], shown="from the recipe")
    batch_size: int = key(512, "the batch size `values` are written for", rule=POSITIVE_INT,
                          shown="from the recipe")


@dataclass
class OptimizerConfig:
    momentum: float = key(0.9, "SGD momentum", rule=Rule(ge=0, lt=1))
    nesterov: bool = key(True, "Nesterov momentum (PyTorch's form)")
    weight_decay: float = key(5e-4, "per example; applied as `weight_decay * batch_size` once "
                              "per step", rule=Rule(ge=0))


@dataclass
class OptunaConfig:
    """Which Optuna trial this run is. Set per job by `hydra/sweeper=optuna_study`; null outside
    an Optuna search. The run reports its test loss each epoch to the trial (pruning) and
    records all three in metrics.json."""
    study: Optional[str] = key(None, "set by `hydra/sweeper=optuna_study`: the study's name")
    storage: Optional[str] = key(None, "set by the sweeper: `memory`, `journal:/abs/path.log` "
                                 "or a database URL")
    trial: Optional[int] = key(None, "set by the sweeper: the trial's number")


@dataclass
class ProbeConfig:
    """The forgetting probe (forgetting/core/probe.py): when training stops, the loss of every
    batch of the last `epochs` epochs, rebuilt exactly as it was fed, under the final model."""
    epochs: int = key(2, "the forgetting probe: when training stops, the loss of every batch of "
                      "the last K epochs, rebuilt exactly as fed; 0 = off",
                      rule=Rule(ge=0, note="0 = off"))
    every: int = key(0, "also probe after every N-th epoch (0 = only at the end)",
                     rule=Rule(ge=0, note="0 = only when training stops"))
    verify: bool = key(False, "record a checksum of each probed batch when fed and when rebuilt")


@dataclass
class TargetConfig:
    """Steps to a target loss (forgetting/core/target.py), what the critical batch size is
    measured with (forgetting/analysis/critical.py). Off (0) by default."""
    train_loss: float = key(0.0, "record the step at which the running training loss (mean over "
                            "the last `target.window` examples) first falls to this; 0 = off",
                            rule=Rule(ge=0, note="0 = off"), column="train_loss_target")
    test_loss: float = key(0.0, "record the examples at which the test loss, evaluated every "
                           "`target.test_every` examples, first falls to this; 0 = off",
                           rule=Rule(ge=0, note="0 = off"), column="test_loss_target")
    window: int = key(4096, "examples the running training loss is the mean over (whole steps, "
                      "at least one)", rule=POSITIVE_INT)
    test_every: int = key(10000, "examples between two test evaluations while "
                          "`target.test_loss` is not reached (whole steps, at least one)",
                          rule=POSITIVE_INT)
    stop: bool = key(False, "end the run (status ok) once every target that is set is reached")


@dataclass
class DiagConfig:
    """Measurements of curvature, gradient noise and forgetting during training
    (forgetting/core/diagnostics/). They never change what a run computes: not in the hash."""
    sharpness: bool = key(False, "measure the top Hessian eigenvalue of the mean training loss "
                          "(Lanczos on Hessian-vector products, BatchNorm in batch "
                          "mode) and `sharpness_ratio` against the optimiser's stability edge",
                          hashed=False)
    every: int = key(1, "measure sharpness after every N-th epoch and after the last",
                     rule=Rule(ge=1), hashed=False)
    sharpness_examples: int = key(0, "fixed training examples (no augmentation) the "
                                  "sharpness is measured on, rounded up to whole batches: "
                                  "BatchNorm runs over chunks of exactly `batch_size` (the "
                                  "used number is `sharpness_examples` in metrics.json); at "
                                  "least one batch; 0 = the larger of 256 and one batch",
                                  rule=Rule(ge=0, note="0 = the larger of 256 and one batch"),
                                  hashed=False)
    iters: int = key(20, "Lanczos steps (Hessian-vector products) per sharpness measurement, "
                     "fewer when it changes by < `diag.tol`; each starts from the last one's "
                     "vector", rule=Rule(ge=1), hashed=False)
    tol: float = key(1e-3, "Lanczos stops once lambda_max's estimate changes by less than this "
                     "(relative) between two products", rule=Rule(gt=0, lt=1), hashed=False)
    hvp_precision: str = key("fp32", "the sharpness's Hessian-vector products: `fp32`, or `bf16` "
                             "(convolutions and linear layers in bf16 as under autocast; "
                             "weights and Lanczos vectors stay fp32)",
                             rule=Rule(choices=HVP_PRECISIONS), hashed=False)
    sharpness_se: bool = key(False, "also `sharpness_se` in the history: lambda_max's standard "
                             "error over the fixed examples' batches (NaN with one batch; no "
                             "extra product)", hashed=False)
    noise: bool = key(False, "measure the gradient noise scale B_simple = tr(Sigma)/|G|^2 from "
                      "gradient norms at the batch size and a quarter of it", hashed=False)
    noise_every: int = key(4, "steps between two noise measurements (each costs a forward "
                           "and backward of a quarter batch); an epoch's row has a value only "
                           "from 10 measurements on, metrics.json the run's from all",
                           rule=Rule(ge=1), hashed=False)
    forgetting_events: bool = key(False, "record every training example's correctness when fed "
                                  "and count its forgetting events (correct -> incorrect); "
                                  "writes examples.parquet", hashed=False)
    step_loss_every: int = key(0, "every N steps, the loss on one fixed training batch after "
                               "the step, its LR and the step's update along the last "
                               "sharpness measurement's top Hessian eigenvector; writes "
                               "steps.parquet (single runs only, not in a pack); 0 = off",
                               rule=Rule(ge=0, note="0 = off"), hashed=False)


@dataclass
class LoggerConfig:
    """Experiment trackers every finished run is also logged to (forgetting/runs/tracking/),
    chosen with `logger=none|mlflow|tensorboard|all`. The run's files stay the source of truth
    and a tracker never changes what a run computes: not in the hash."""
    mlflow: bool = key(False, "log each run to MLflow: params, metrics per epoch, tags, "
                       "metrics.json; set by `logger=mlflow` or `logger=all`", hashed=False)
    tensorboard: bool = key(False, "write each run's TensorBoard event folder (scalars per "
                            "epoch, hparams) into `tensorboard/` of its sweep folder, or of a "
                            "single run's folder; set by `logger=tensorboard` or `logger=all`",
                            hashed=False)
    mlflow_uri: str = key("${oc.env:MLFLOW_TRACKING_URI,outputs/mlruns}", "MLflow tracking "
                          "URI: a folder (a local SQLite store `mlflow.db` with `artifacts/` "
                          "beside it), `sqlite:///PATH`, `http://HOST:PORT` or any URI MLflow "
                          "takes", hashed=False,
                          shown="`$MLFLOW_TRACKING_URI`, else `outputs/mlruns`")
    experiment: Optional[str] = key(None, "MLflow experiment; null: one per sweep, named after "
                                    "the sweep folder (its path under `multirun/`: "
                                    "`outputs/multirun/demo` is `demo`; else absolute), and "
                                    "`runs` for single runs", hashed=False)
