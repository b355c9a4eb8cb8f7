"""The preemption checkpoint of a run: `checkpoint.pt` in its run folder.

Written only when the run is asked to stop (SIGTERM, SIGUSR1, SIGUSR2; forgetting/preemption.py):
the training loop polls `Checkpoint.stop()` before every step and, when it turns true, saves and
raises `Preempted`. A rerun or requeue of the same config in the same folder loads it and
continues; the file is deleted once the run's metrics.json is written (and ignored, then
replaced, with `force=true`).

Contents (torch.save of a dict of tensors and plain values, loaded with weights_only=True):
- `format`, `config_hash`: a checkpoint of another config or format is ignored (logged);
- `model`, `optimizer`: state dicts (weights, BatchNorm statistics, momentum buffers);
- `epoch`, `batch`, `step`: the next step to take (1-based epoch, 0-based batch in it);
- `rng`: torch's global CPU generator, every CUDA device's generator (when CUDA is in use) and
  the data generator's state *at the start of the epoch*: the resumed run redraws the epoch's
  batch order and augmentation parameters from it, then skips the batches already taken;
- `loss_sum`, `correct`, `epoch_s`: the epoch's running sums so far;
- `history` (finished epochs' rows), `wall_s` (training seconds so far), `precision` (as
  resolved by the first attempt), `resumes` (how many times the run was resumed before).
On a CPU the resumed run takes exactly the steps the uninterrupted one would have taken, so its
losses are bit-identical (tests/test_preemption.py); so were they in a check on an H100 (bf16),
though cuDNN's autotuned kernels do not promise it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from forgetting.files import atomic_torch_save

log = logging.getLogger("forgetting")
FORMAT = 1


class Preempted(BaseException):
    """The run stopped at a step boundary after saving its checkpoint. A BaseException, like
    KeyboardInterrupt, so that no `except Exception` records it as a failure."""

    def __init__(self, path: Path, epoch: int, batch: int):
        self.path = path
        super().__init__(f"stopped at epoch {epoch}, batch {batch}; checkpoint {path}")


class Checkpoint:
    """Where one run's checkpoint lives, the config hash it must carry, and `stop`, the flag the
    training loop polls before every step (forgetting.preemption.requested in real runs)."""

    def __init__(self, path: Path, config_hash: str,
                 stop: Callable[[], bool] = lambda: False, fresh: bool = False):
        self.path = Path(path)
        self.config_hash = config_hash
        self.stop = stop
        self.fresh = fresh  # ignore an existing checkpoint (force=true)

    def load(self) -> dict | None:
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
        return state

    def save(self, state: dict) -> None:
        atomic_torch_save({"format": FORMAT, "config_hash": self.config_hash, **state},
                          self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def rng_state(epoch_gen_state: torch.Tensor, device: torch.device) -> dict:
    """Every generator's state: torch's global ones and the data generator's at epoch start."""
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    return {"torch": torch.get_rng_state(), "cuda": cuda, "data": epoch_gen_state}


def restore(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            gen: torch.Generator, device: torch.device) -> None:
    """Load weights, optimizer state and generator states saved by a preempted run."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and state["rng"]["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    gen.set_state(state["rng"]["data"])
