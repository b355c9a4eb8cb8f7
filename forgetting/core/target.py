"""Steps to a target loss: what the critical batch size is measured with
(forgetting/analysis/critical.py; McCandlish et al. 2018, Shallue et al. 2019).

With `target.train_loss` set, `Target` keeps the summed training loss of each step (as the step
computed it: train mode, before its update) and reads the *running* loss, the mean per example
over the last `target.window` examples (whole steps, at least one, so the same number of
examples at every batch size). The first step after which it is at or below the target gives
`steps_to_train_target` and `examples_to_train_target` (= steps x batch size).

With `target.test_loss` set, the test set is evaluated every `target.test_every` examples
(rounded to whole steps) until the loss is at or below that target; `examples_to_test_target`
is where the straight line between the last two evaluations crosses it (the first
evaluation's examples when the first is already at or below it). With `target.stop`, the run
ends (status ok) once every target set is reached. A target not reached reads null. Both off
(0) by default: then nothing is kept and nothing is evaluated. While a training target is
watched, each step's loss is read on the host (a GPU synchronises once a step).
"""

from __future__ import annotations

import math
from collections import deque

from forgetting.core.config import Config


class Target:
    """One run's watch on its targets; `state()`/`load()` carry it through a checkpoint."""

    def __init__(self, cfg: Config):
        t = cfg.target
        self.train_target, self.test_target = t.train_loss, t.test_loss
        self.batch = cfg.batch_size
        self.window_steps = max(1, round(t.window / cfg.batch_size))
        self.test_steps = max(1, round(t.test_every / cfg.batch_size))
        self.stop = t.stop
        self.losses: deque[float] = deque(maxlen=self.window_steps)
        self.train_step: int | None = None  # steps taken when the running loss crossed
        self.test_examples: float | None = None
        self.last_test: tuple[int, float] | None = None  # (examples, loss) of the last check

    def __bool__(self) -> bool:
        return bool(self.train_target or self.test_target)

    @property
    def reached(self) -> bool:
        """Whether every target that is set has been reached."""
        return ((not self.train_target or self.train_step is not None)
                and (not self.test_target or self.test_examples is not None))

    @property
    def done(self) -> bool:
        """Whether the run should end here (`target.stop` and every target reached)."""
        return bool(self) and self.stop and self.reached

    def after_step(self, loss, steps: int, evaluate_test) -> None:
        """Take the step's summed loss; `steps`: steps taken so far (this one included);
        `evaluate_test()` -> (test loss, accuracy), called only when a check is due."""
        if self.train_target and self.train_step is None:
            self.losses.append(float(loss) / self.batch)
            if len(self.losses) == self.window_steps \
                    and sum(self.losses) / self.window_steps <= self.train_target:
                self.train_step = steps
        if self.test_target and self.test_examples is None and steps % self.test_steps == 0:
            self.check_test(steps * self.batch, evaluate_test()[0])

    def check_test(self, examples: int, loss: float) -> None:
        """A test evaluation after `examples`: record the crossing when `loss` reaches the
        target (interpolated from the previous evaluation)."""
        if math.isfinite(loss) and loss <= self.test_target:
            if self.last_test is None:
                self.test_examples = float(examples)
            else:
                (e0, l0), e1 = self.last_test, examples
                self.test_examples = e0 + (l0 - self.test_target) / (l0 - loss) * (e1 - e0)
        self.last_test = (examples, loss)

    def final(self) -> dict:
        if not self:
            return {}
        steps = self.train_step
        return {"steps_to_train_target": steps,
                "examples_to_train_target": steps * self.batch if steps is not None else None,
                "examples_to_test_target": self.test_examples}

    def state(self) -> dict:
        return {"losses": list(self.losses), "train_step": self.train_step,
                "test_examples": self.test_examples, "last_test": self.last_test}

    def load(self, saved: dict) -> None:
        if saved:
            self.losses.extend(saved["losses"])
            self.train_step, self.test_examples = saved["train_step"], saved["test_examples"]
            self.last_test = saved["last_test"]
