"""The preemption checkpoint of a run: `checkpoint.pt` in its run folder.

Written only when the run is asked to stop (SIGTERM, SIGUSR1, SIGUSR2;
forgetting/runs/preemption.py): the training loop polls `Checkpoint.stop()` before every step
and, when it turns true, saves and raises `Preempted`. A rerun or requeue of the same config in
the same folder loads it and continues; the file is deleted once the run's metrics.json is
written (and ignored, then replaced, with `force=true`).

Contents (torch.save of a dict of tensors and plain values, loaded with weights_only=True):
- `format`, `config_hash`: a checkpoint of another config or format is ignored (logged);
- every field of `Progress`: where the run stands (`epoch`, `batch`: the next step to take;
  `step`), what it gathered (`history`, `recency`), `wall_s`, `resumes`, and the interrupted
  epoch's running sums (`loss_sum`, `correct`, `epoch_s`);
- `model`, `optimizer`: state dicts (weights, BatchNorm statistics, momentum buffers);
- `rng`: torch's global CPU generator, every CUDA device's generator (when CUDA is in use) and
  the data generator's state *at the start of the epoch*: the resumed run redraws the epoch's
  batch order and augmentation parameters from it, then skips the batches already taken;
- `precision` (as resolved by the first attempt), `batch_log` (the probe's log).
On a CPU the resumed run takes exactly the steps the uninterrupted one would have taken, so its
losses are bit-identical (tests/test_preemption.py); so were they in a check on an H100 (bf16),
though cuDNN's autotuned kernels do not promise it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from forgetting.core.errors import Preempted  # noqa: F401  (raised here)
from forgetting.core.files import atomic_torch_save

log = logging.getLogger("forgetting")
FORMAT = 1


@dataclass
class Progress:
    """Where a run stands before its next step and what it has gathered so far: the training
    loop's state besides weights, optimizer and generators. With those it is all a checkpoint
    holds (its one schema: `Checkpoint.save` writes these fields, `load` reads them back)."""
    epoch: int = 1  # the next step's epoch (1-based) ...
    batch: int = 0  # ... and batch in it (0-based)
    step: int = 0  # steps taken
    history: list[dict] = field(default_factory=list)  # finished epochs' rows
    recency: list[dict] = field(default_factory=list)  # the probe's rows so far
    wall_s: float = 0.0  # training seconds before this point
    resumes: int = 0  # how many times this run was resumed
    # an interrupted epoch's running sums (None: the epoch has not started)
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    epoch_s: float = 0.0
    diag: dict = field(default_factory=dict)  # the diagnostics' state (core/diagnostics/)
    target: dict = field(default_factory=dict)  # the target's watch (core/target.py)

    def next_epoch(self) -> None:
        self.epoch, self.batch = self.epoch + 1, 0
        self.loss_sum, self.correct, self.epoch_s = None, None, 0.0


@dataclass
class Saved:
    """A loaded checkpoint: the progress, and what `restore` puts back into a fresh setup."""
    progress: Progress
    precision: str  # as resolved by the first attempt
    model: dict
    optimizer: dict
    rng: dict
    batch_log: list

    def restore(self, model: torch.nn.Module, optimizer, gen: torch.Generator,
                device: torch.device) -> None:
        """Load weights, optimizer state and generator states saved by a preempted run."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        torch.set_rng_state(self.rng["torch"])
        if device.type == "cuda" and self.rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(self.rng["cuda"])
        gen.set_state(self.rng["data"])


class Checkpoint:
    """Where one run's checkpoint lives, the config hash it must carry, and `stop`, the flag the
    training loop polls before every step (forgetting.runs.preemption.requested in real runs)."""

    def __init__(self, path: Path, config_hash: str,
                 stop: Callable[[], bool] = lambda: False, fresh: bool = False):
        self.path = Path(path)
        self.config_hash = config_hash
        self.stop = stop
        self.fresh = fresh  # ignore an existing checkpoint (force=true)

    def load(self) -> Saved | None:
        """The saved state to resume from, or None (no checkpoint, `fresh`, or not this run's)."""
        if self.fresh or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            log.warning("ignoring unreadable checkpoint %s (%s); starting over", self.path, e)
            return None
        if state.get("format") != FORMAT or state.get("config_hash") != self.config_hash:
            log.warning("ignoring checkpoint %s of another config or format; starting over",
                        self.path)
            return None
        progress = Progress(**{f.name: state[f.name] for f in fields(Progress)
                               if f.name in state})
        return Saved(progress, state["precision"], state["model"], state["optimizer"],
                     state["rng"], state.get("batch_log", []))

    def save(self, progress: Progress, model: torch.nn.Module, optimizer, precision: str,
             epoch_rng: torch.Tensor, batch_log: list) -> None:
        """Save the run's whole state; `epoch_rng`: the data generator's state when the
        current epoch started (the resumed run redraws the epoch from it)."""
        device = next(model.parameters()).device
        cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        state = {**asdict(progress), "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "precision": precision,
                 "rng": {"torch": torch.get_rng_state(), "cuda": cuda, "data": epoch_rng},
                 "batch_log": batch_log}
        atomic_torch_save({"format": FORMAT, "config_hash": self.config_hash, **state},
                          self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
