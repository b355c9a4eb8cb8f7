"""The step loss (diag.step_loss_every: the loss on one fixed training batch every K steps, the
step's LR and its update along the top Hessian eigenvector) and the per-epoch `weight_norm` and
`effective_lr`: equal to direct computations on the final model, no change to training, off by
default, carried through a preemption, written to steps.parquet."""

from __future__ import annotations

import copy
import math
from itertools import count

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from forgetting.core import train as train_module
from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.errors import ConfigError
from forgetting.core.model import ConvBN, PreActBlock, build_model, scale_invariant_weights
from forgetting.core.packed import check_pack
from forgetting.core.setup import step_lr
from forgetting.core.train import train
from forgetting.runs.preflight import preflight
from helpers import TINY, run_cli

# 640 examples / batch 64: 10 steps an epoch, 20 in all; sharpness after epochs 1 and 2
STEPS = ["epochs=2", "threads=1", "diag.step_loss_every=2", "diag.sharpness=true",
         "diag.sharpness_examples=64", "diag.iters=3"]
TRAINING = ["epoch", "step_lr", "train_loss", "train_acc", "test_loss", "test_acc"]


@pytest.fixture
def final_state(monkeypatch):
    """What `finish` saw: a copy of the final model, the run's setup and the fixed batch."""
    seen: dict = {}
    finish = train_module.finish

    def spy(run, cfg, batch_log, diag, progress, status, target=None):
        seen.update(model=copy.deepcopy(run.model), run=run,
                    fixed=diag.steps.fixed.clone() if diag.steps is not None else None)
        return finish(run, cfg, batch_log, diag, progress, status, target)

    monkeypatch.setattr(train_module, "finish", spy)
    return seen


def bn_fed_norm(model: torch.nn.Module) -> float:
    """|w| of the convs of every ConvBN block (the tiny model's BatchNorm-fed weights)."""
    weights = [block[0].weight.detach().double() for block in model.modules()
               if isinstance(block, ConvBN)]
    return math.sqrt(sum(float((w * w).sum()) for w in weights))


def test_step_rows_equal_direct_computations(make_cfg, final_state):
    cfg = make_cfg(*STEPS)
    result = train(cfg)
    run, model, fixed = final_state["run"], final_state["model"], final_state["fixed"]
    rows = pd.DataFrame(result.steps)
    assert rows.columns.tolist() == ["step", "loss", "eta_eff", "top_component"]
    assert rows["step"].tolist() == list(range(2, 21, 2))
    assert len(fixed) == cfg.batch_size and len(set(fixed.tolist())) == cfg.batch_size
    # the last row is measured after the last step: the final model, BatchNorm in train mode
    model.train()
    with torch.no_grad():
        direct = F.cross_entropy(model(run.maker.batch(fixed).float()), run.train_y[fixed])
    assert rows["loss"].iloc[-1] == pytest.approx(float(direct), abs=1e-5)
    assert rows["loss"].map(math.isfinite).all() and rows["loss"].nunique() > 1
    # the mean-loss LR of the step that was just taken (the step-th, 0-based step - 1)
    assert rows["eta_eff"].tolist() == [
        step_lr(cfg, (s - 1) / run.steps_per_epoch, run.passes) * cfg.batch_size
        for s in rows["step"]]
    # no top eigenvector before the first sharpness measurement (after epoch 1, step 10)
    before = rows["step"] <= run.steps_per_epoch
    assert rows.loc[before, "top_component"].isna().all()
    assert rows.loc[~before, "top_component"].map(math.isfinite).all()
    assert rows.loc[~before, "top_component"].ne(0).all()


def test_weight_norm_and_effective_lr_equal_direct_computations(make_cfg, final_state):
    cfg = make_cfg(*STEPS)
    history = pd.DataFrame(train(cfg).history)
    norm = bn_fed_norm(final_state["model"])
    last = history.iloc[-1]
    assert last["weight_norm"] == pytest.approx(norm, rel=1e-6)
    eta = last["step_lr"] * cfg.batch_size
    assert last["effective_lr"] == pytest.approx(eta / norm ** 2, rel=1e-6)
    assert last["effective_lr"] == pytest.approx(last["eta_eff"] / last["weight_norm"] ** 2,
                                                 rel=1e-12)
    assert history["weight_norm"].gt(0).all()


def test_the_step_loss_does_not_change_training(make_cfg):
    """The same losses with and without; clean_train_loss (eval mode) also shows the running
    statistics left alone by the train-mode passes over the fixed batch."""
    plain = train(make_cfg("epochs=2", "threads=1"))
    measured = train(make_cfg(*STEPS))
    assert [{k: r[k] for k in TRAINING} for r in measured.history] == \
        [{k: r[k] for k in TRAINING} for r in plain.history]
    for key in ("train_loss", "clean_train_loss", "test_loss", "test_acc"):
        assert measured.final[key] == plain.final[key]


def test_off_by_default(make_cfg):
    result = train(make_cfg("epochs=1", "threads=1"))
    assert result.steps == []
    assert not {"weight_norm", "effective_lr", "eta_eff"} & set(result.history[0])
    events_only = train(make_cfg("epochs=1", "threads=1", "diag.forgetting_events=true"))
    assert events_only.steps == [] and events_only.history[0]["weight_norm"] > 0


def stop_before_step(k: int):
    calls = count()
    return lambda: next(calls) >= k


def test_the_step_loss_resumes_as_if_never_stopped(make_cfg, tmp_path):
    cfg = make_cfg(*STEPS)
    whole = train(cfg)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):  # epoch 2, batch 3: after the first sharpness measurement
        train(cfg, checkpoint=Checkpoint(path, "h", stop=stop_before_step(13)))
    assert len(torch.load(path, weights_only=True)["diag"]["steps"]["rows"]) == 6
    resumed = train(cfg, checkpoint=Checkpoint(path, "h"))
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.steps), pd.DataFrame(whole.steps),
                                  check_exact=True)
    columns = ["train_loss", "weight_norm", "effective_lr", "sharpness"]
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.history)[columns],
                                  pd.DataFrame(whole.history)[columns], check_exact=True)


def test_a_run_folder_gets_steps_parquet(tmp_path):
    r = run_cli(*TINY, "epochs=1", "threads=1", "probe.epochs=0", "diag.step_loss_every=5",
                f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    steps = pd.read_parquet(tmp_path / "steps.parquet")
    assert steps["step"].tolist() == [5, 10] and steps["top_component"].isna().all()
    history = pd.read_parquet(tmp_path / "history.parquet")
    assert history["weight_norm"].gt(0).all() and history["effective_lr"].gt(0).all()


def test_a_sweep_gathers_its_runs_steps_into_one_table(tmp_path):
    r = run_cli("-m", *TINY, "epochs=1", "threads=1", "probe.epochs=0", "lr=1,2",
                "diag.step_loss_every=5", f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "steps.parquet")
    runs = sorted(tmp_path.glob("*/steps.parquet"))
    assert len(runs) == 2 and len(table) == 4
    for run in runs:
        own = table[table["run_dir"] == str(run.parent)]
        pd.testing.assert_frame_equal(
            own[["step", "loss", "eta_eff"]].reset_index(drop=True),
            pd.read_parquet(run)[["step", "loss", "eta_eff"]], check_exact=True)
    assert sorted(table["lr"].unique()) == [1, 2]  # the key columns in front: the LR factor
    assert set(table.groupby("run_dir")["step"].apply(list).map(tuple)) == {(5, 10)}


def test_scale_invariant_weights_are_those_that_feed_a_batchnorm():
    resnet = build_model("resnet9", 0.125)
    assert scale_invariant_weights(resnet) == [block[0].weight for block in resnet.modules()
                                               if isinstance(block, ConvBN)]
    assert len(scale_invariant_weights(resnet)) == 8  # prep, 3 layers, 2 residuals of 2
    dawn = build_model("dawn18", 0.125)  # pre-activation: only conv1 feeds a BatchNorm alone
    assert scale_invariant_weights(dawn) == [block.conv1.weight for block in dawn.modules()
                                             if isinstance(block, PreActBlock)]


def test_the_step_loss_is_refused_in_a_pack_and_below_zero(make_cfg):
    with pytest.raises(ConfigError, match="diag.step_loss_every=2: must be 0 in a pack"):
        check_pack([make_cfg(), make_cfg("diag.step_loss_every=2")])
    with pytest.raises(ConfigError, match="diag.step_loss_every=-1: must be an integer >= 0"):
        preflight([*TINY, "diag.step_loss_every=-1"])
