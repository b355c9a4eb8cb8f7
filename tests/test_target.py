"""Steps to a target loss (forgetting/core/target.py): the crossing on constructed losses, and
on tiny runs against the per-step losses the forgetting probe kept and the per-epoch test
losses of the history; `target.stop` ends the run there; a checkpoint carries the watch."""

import math
from itertools import count

import pandas as pd
import pytest

from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.errors import ConfigError
from forgetting.core.packed import check_pack
from forgetting.core.target import Target
from forgetting.core.train import train


def watch(make_cfg, *overrides: str) -> Target:
    return Target(make_cfg(*overrides))


def test_the_running_loss_is_the_mean_over_the_window_in_examples(make_cfg):
    # batch 64, window 128 examples = 2 steps; per-example losses 3, 2, 1.4, 0.8, 0.5: the
    # running means are -, 2.5, 1.7, 1.1, 0.65; the target 1.2 is first met after step 4
    t = watch(make_cfg, "batch_size=64", "target.train_loss=1.2", "target.window=128")
    for step, loss in enumerate([3, 2, 1.4, 0.8, 0.5], start=1):
        t.after_step(loss * 64, step, lambda: pytest.fail("no test target"))
    assert t.final() == {"steps_to_train_target": 4, "examples_to_train_target": 256,
                         "examples_to_test_target": None}
    # batch 32, the same window of 128 examples is 4 steps
    assert watch(make_cfg, "batch_size=32", "target.train_loss=1",
                 "target.window=128").window_steps == 4


def test_the_test_crossing_is_interpolated_between_two_evaluations(make_cfg):
    t = watch(make_cfg, "batch_size=64", "target.test_loss=1.0", "target.test_every=128")
    losses = iter([1.6, 1.2, 0.9])  # evaluated after 128, 256, 384 examples
    for step in range(1, 7):
        t.after_step(0.0, step, lambda: (next(losses), 0.0))
    # from (256, 1.2) to (384, 0.9): 1.0 is crossed two thirds of the way
    assert t.final()["examples_to_test_target"] == pytest.approx(256 + 128 * 2 / 3)
    assert t.final()["steps_to_train_target"] is None


def test_off_by_default_keeps_nothing(make_cfg):
    t = watch(make_cfg)
    assert not t and t.final() == {} and not t.done
    assert "steps_to_train_target" not in train(make_cfg()).final


def per_step_losses(result) -> pd.Series:
    """Each step's training loss (mean per example) as the step computed it, by step: the
    probe keeps them for the epochs it replays (`loss_seen`)."""
    rows = pd.DataFrame(result.recency)
    return rows[rows["probe_epoch"] == rows["probe_epoch"].max()].set_index("step")["loss_seen"]


def test_a_run_records_the_first_step_its_running_loss_reaches_the_target(make_cfg):
    # 640 images / batch 64 = 10 steps an epoch; the probe keeps all 6 epochs' step losses
    base = ("epochs=6", "lr=8", "probe.epochs=6", "target.window=192")
    free = train(make_cfg(*base, "target.train_loss=1.0"))
    running = per_step_losses(free).rolling(3).mean()  # 192 examples = 3 steps
    first = int(running[running <= 1.0].index[0]) + 1  # steps taken, this one included
    assert 3 <= first < 60  # a crossing inside the run, not at its edges
    assert free.final["steps_to_train_target"] == first
    assert free.final["examples_to_train_target"] == first * 64
    assert len(free.history) == 6  # without target.stop the run goes on

    stopped = train(make_cfg(*base, "target.train_loss=1.0", "target.stop=true"))
    assert stopped.status == "ok"
    assert stopped.final["steps_to_train_target"] == first
    assert sum(1 for _ in per_step_losses(stopped)) == first  # no step after the crossing
    assert per_step_losses(stopped).equals(per_step_losses(free).iloc[:first])
    last = stopped.history[-1]
    assert len(stopped.history) == math.ceil(first / 10)
    assert math.isfinite(last["test_loss"])  # the epoch it ended in is evaluated
    seen = first - 10 * (len(stopped.history) - 1)  # the last epoch's steps
    assert last["train_loss"] == pytest.approx(per_step_losses(stopped).iloc[-seen:].mean(),
                                               rel=1e-6)


def test_the_test_target_matches_the_history_s_test_losses(make_cfg):
    # evaluated once an epoch (640 examples) by the target and by eval_every=1: the same losses
    result = train(make_cfg("epochs=6", "lr=8", "eval_every=1", "target.test_every=640",
                            "target.test_loss=1.8"))
    losses = [row["test_loss"] for row in result.history]
    i = next(i for i, loss in enumerate(losses) if loss <= 1.8)
    assert i >= 1, losses  # crossed after the first evaluation
    expected = 640 * i + (losses[i - 1] - 1.8) / (losses[i - 1] - losses[i]) * 640
    assert result.final["examples_to_test_target"] == pytest.approx(expected)


def test_a_checkpoint_carries_the_watch(make_cfg, tmp_path):
    cfg = make_cfg("epochs=6", "lr=8", "threads=1", "target.train_loss=1.0",
                   "target.window=192", "target.stop=true")
    reference = train(cfg)
    path = tmp_path / "checkpoint.pt"
    calls = count()
    with pytest.raises(Preempted):  # stopped before step 12 (epoch 2, batch 2)
        train(cfg, checkpoint=Checkpoint(path, "h", stop=lambda: next(calls) >= 12))
    resumed = train(cfg, checkpoint=Checkpoint(path, "h"))
    assert resumed.final["steps_to_train_target"] == reference.final["steps_to_train_target"]
    assert len(resumed.history) == len(reference.history)


def test_a_pack_refuses_a_target(make_cfg):
    with pytest.raises(ConfigError, match="target.train_loss"):
        check_pack([make_cfg("target.train_loss=1"), make_cfg("target.train_loss=1", "lr=2")])
