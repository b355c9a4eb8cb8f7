"""Example-forgetting events (Toneva et al. 2019), counted on the device during training.

Each time an example is presented in a training batch, its correctness (argmax of the logits
of that step's forward pass == label, on the augmented image) is recorded. A forgetting event
is a transition correct -> incorrect between two consecutive presentations of the same example;
an example is learned at its first correct presentation. Per example we keep: presentations,
correctness at the last presentation, first_learned_step (the `step` passed with the first
correct presentation, -1 if never), and the forgetting-event count.

Summary definitions, over the examples presented at least once (n_presented):
- share_never_forgotten: among the presented examples that were correct at least once
  (first_learned_step >= 0), the share with zero forgetting events. An example first correct at
  its last presentation counts as never forgotten (Toneva's "unforgettable" examples).
- mean_forgetting_events: mean event count over the presented examples; examples never learned
  count 0 here (Toneva count them as infinitely forgotten: see share_never_learned).
- share_never_learned: share of the presented examples never correct at any presentation.
"""

from __future__ import annotations

import math

import torch

FIELDS = ("presentations", "last_correct", "first_learned_step", "forgetting_events")


def count_events(sequence: list[bool]) -> int:
    """Forgetting events in one example's correctness sequence: the number of consecutive pairs
    (correct, incorrect). The reference implementation."""
    return sum(1 for before, after in zip(sequence, sequence[1:]) if before and not after)


class ForgettingEvents:
    """Per-example forgetting statistics for examples 0..n_examples-1, tensors on `device`."""

    def __init__(self, n_examples: int, device: torch.device | str = "cpu"):
        self.n_examples = n_examples
        long = {"dtype": torch.long, "device": device}
        self.presentations = torch.zeros(n_examples, **long)
        self.last_correct = torch.zeros(n_examples, dtype=torch.bool, device=device)
        self.first_learned_step = torch.full((n_examples,), -1, **long)
        self.forgetting_events = torch.zeros(n_examples, **long)

    @property
    def learned_at_end(self) -> torch.Tensor:
        """Bool per example: presented, and correct at its last presentation."""
        return (self.presentations > 0) & self.last_correct

    @torch.no_grad()
    def record(self, indices: torch.Tensor, correct: torch.Tensor, step: int) -> None:
        """One step's presentations: `indices` (int64, on the device, no repeats within one
        call) were presented and `correct` (bool, same shape) says which were classified
        correctly. Tensor operations only: no loop over examples, no host sync. A per-example
        bool is needed: a correct COUNT would broadcast silently, so shapes are checked."""
        if indices.shape != correct.shape or indices.dim() != 1:
            raise ValueError(f"indices {tuple(indices.shape)} and correct "
                             f"{tuple(correct.shape)} must be the same 1-D shape")
        indices = indices.to(self.presentations.device)
        correct = correct.to(self.presentations.device, torch.bool)
        seen = self.presentations[indices] > 0
        forgot = seen & self.last_correct[indices] & ~correct
        self.forgetting_events[indices] += forgot.long()
        first = self.first_learned_step[indices]
        self.first_learned_step[indices] = torch.where(correct & (first < 0), step, first)
        self.last_correct[indices] = correct
        self.presentations[indices] += 1

    def table(self, labels) -> list[dict]:
        """One row per example (all n_examples): example, label, presentations,
        first_learned_step, forgetting_events, learned_at_end (the last presentation was
        correct; False if never presented), never_learned (never correct; True if never
        presented - see presentations)."""
        labels = torch.as_tensor(labels).tolist()
        columns = [t.tolist() for t in (self.presentations, self.first_learned_step,
                                        self.forgetting_events, self.last_correct)]
        return [{"example": i, "label": int(label), "presentations": shown,
                 "first_learned_step": first, "forgetting_events": events,
                 "learned_at_end": bool(last), "never_learned": first < 0}
                for i, (label, shown, first, events, last)
                in enumerate(zip(labels, *columns))]

    def summary(self) -> dict:
        """share_never_forgotten, mean_forgetting_events, share_never_learned (definitions in the
        module docstring; NaN where the population is empty), n_presented, n_learned."""
        presented = self.presentations > 0
        learned = presented & (self.first_learned_step >= 0)
        n_presented, n_learned = int(presented.sum()), int(learned.sum())
        never_forgotten = int((learned & (self.forgetting_events == 0)).sum())
        events = int(self.forgetting_events[presented].sum())
        return {
            "share_never_forgotten": never_forgotten / n_learned if n_learned else math.nan,
            "mean_forgetting_events": events / n_presented if n_presented else math.nan,
            "share_never_learned": ((n_presented - n_learned) / n_presented if n_presented
                                    else math.nan),
            "n_presented": n_presented,
            "n_learned": n_learned,
        }

    def state(self) -> dict:
        """The four per-example tensors (copies, on their device) for a checkpoint."""
        return {name: getattr(self, name).clone() for name in FIELDS}

    def load(self, state: dict) -> None:
        """Copy a `state()` into this tracker's tensors (any device; sizes must match)."""
        for name in FIELDS:
            mine = getattr(self, name)
            saved = state[name]
            if saved.shape != mine.shape:
                raise ValueError(f"{name}: saved {tuple(saved.shape)}, have {tuple(mine.shape)}")
            mine.copy_(saved.to(mine.device, mine.dtype))
