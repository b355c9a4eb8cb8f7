"""The forgetting probe: the loss of recently seen training batches, exactly as they were seen.

During training, `BatchLog` keeps for each of the last K epochs only the data generator's state
at the epoch's start (about 5 kB: it redraws the epoch's order and augmentation parameters,
`BatchMaker.draw_epoch`) and each step's training loss as it was computed (train mode, before
the update). `replay` rebuilds every batch of those epochs — the same images, crops, flips and
cutout squares — and computes its loss with the current model in eval mode: one row per batch
with `steps_ago` (steps taken after that batch's own step; 0 for the last one), `epochs_ago`,
`loss`, `accuracy`, `loss_seen`, and the model's test loss for reference. The rows of a run
go to `recency.parquet`. With `probe.verify`, a SHA-256 of each batch (images and labels) is
recorded when it is fed and again when it is rebuilt (`checksum_seen`, `checksum`).
"""

from __future__ import annotations

import hashlib
from collections import deque

import torch
import torch.nn.functional as F

from forgetting.core.augment import BatchMaker, get_batch


def batch_checksum(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of a batch's bytes: images (with their dtype and shape) and labels."""
    h = hashlib.sha256(f"{x.dtype}{tuple(x.shape)}".encode())
    h.update(x.detach().contiguous().cpu().numpy().tobytes())
    h.update(y.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class BatchLog:
    """The last `keep` epochs' generator states, per-step training losses and (with `verify`)
    batch checksums; `state()`/`load()` carry it through a preemption checkpoint."""

    def __init__(self, keep: int, verify: bool = False):
        self.keep = keep
        self.verify = verify
        self.epochs: deque[dict] = deque(maxlen=max(keep, 1))

    def __bool__(self) -> bool:
        return self.keep > 0

    def start_epoch(self, epoch: int, first_step: int, rng: torch.Tensor) -> None:
        if self.keep:
            self.epochs.append({"epoch": epoch, "first_step": first_step, "rng": rng.clone(),
                                "losses": [], "checksums": []})

    def record(self, loss: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        """One step's summed training loss (kept on the device: no synchronisation)."""
        if self.keep:
            current = self.epochs[-1]
            current["losses"].append(loss)
            if self.verify:
                current["checksums"].append(batch_checksum(x, y))

    def state(self) -> list[dict]:
        return [{**e, "losses": [t.cpu() for t in e["losses"]]} for e in self.epochs]

    def load(self, saved: list[dict], device: torch.device) -> None:
        for e in saved:
            self.epochs.append({**e, "losses": [t.to(device) for t in e["losses"]]})


@torch.no_grad()
def replay(model: torch.nn.Module, maker: BatchMaker, labels: torch.Tensor, log: BatchLog,
           batch_size: int, steps_done: int, autocast, reference: dict) -> list[dict]:
    """Loss and accuracy of every logged batch under `model` in eval mode, oldest first.

    `steps_done`: steps taken so far; `reference`: fields added to every row (the test loss
    and accuracy of the same model, the epoch the probe ran after)."""
    was_training = model.training
    model.eval()
    rows = []
    steps_per_epoch = len(maker) // batch_size
    for e in log.epochs:
        gen = torch.Generator().manual_seed(0)
        gen.set_state(e["rng"])
        order, params = maker.draw_epoch(gen)
        seen = torch.stack(e["losses"]).float().cpu().tolist() if e["losses"] else []
        for i in range(len(e["losses"])):
            x, y = get_batch(maker, labels, order, params, i, batch_size)
            with autocast():
                out = model(x)
            loss = F.cross_entropy(out.float(), y, reduction="sum")
            hits = (out.argmax(1) == y).sum()
            step = e["first_step"] + i
            steps_ago = steps_done - 1 - step
            row = {**reference, "epoch": e["epoch"], "batch": i, "step": step,
                   "steps_ago": steps_ago, "epochs_ago": steps_ago / steps_per_epoch,
                   "loss": loss.item() / len(y), "accuracy": hits.item() / len(y),
                   "loss_seen": seen[i] / len(y)}
            if log.verify:
                row["checksum_seen"] = e["checksums"][i]
                row["checksum"] = batch_checksum(x, y)
            rows.append(row)
    model.train(was_training)
    return rows
