"""Diagnostics inside real (tiny) runs: they never change training, land in the run's history,
metrics and examples table, survive a preemption, and a failed measurement is an outcome."""

from __future__ import annotations

import math
from itertools import count

import pandas as pd
import pytest
import torch

from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.diagnostics import monitor
from forgetting.core.diagnostics.events import ForgettingEvents, count_events
from forgetting.core.diagnostics.stability import edge
from forgetting.core.errors import ConfigError
from forgetting.core.train import train
from forgetting.runs.preflight import preflight
from helpers import TINY, run_cli

ALL = ["diag.sharpness=true", "diag.sharpness_examples=64", "diag.iters=4", "diag.noise=true",
       "diag.noise_every=1", "diag.forgetting_events=true"]
TRAINING = ["epoch", "step_lr", "train_loss", "train_acc", "test_loss", "test_acc"]


def test_diagnostics_do_not_change_training(make_cfg):
    """Same losses with and without; clean_train_loss (eval mode) also shows that BatchNorm's
    running statistics were left alone by the measurements."""
    plain = train(make_cfg("epochs=2", "threads=1"))
    measured = train(make_cfg("epochs=2", "threads=1", *ALL))
    assert [{k: r[k] for k in TRAINING} for r in measured.history] == \
        [{k: r[k] for k in TRAINING} for r in plain.history]
    for key in ("train_loss", "clean_train_loss", "test_loss", "test_acc"):
        assert measured.final[key] == plain.final[key]


def test_every_measurement_lands_in_history_and_metrics(make_cfg):
    cfg = make_cfg("epochs=3", "threads=1", "lr=4", *ALL)
    result = train(cfg)
    history = pd.DataFrame(result.history)
    assert history["sharpness"].gt(0).all() and history["sharpness_iters"].ge(1).all()
    wd, nesterov_edge = cfg.optimizer.weight_decay, edge(0.9, True)
    expected = history["eta_eff"] * (history["sharpness"] + wd) / nesterov_edge
    assert history["sharpness_ratio"].tolist() == pytest.approx(expected.tolist(), rel=1e-12)
    assert history["eta_eff"].tolist() == pytest.approx(
        (history["step_lr"] * cfg.batch_size).tolist())
    assert history["noise_measurements"].tolist() == [10, 10, 10]  # every step: 10 an epoch
    # an epoch's value from its 10 measurements, with its interval; NaN only with a note
    for _, r in history.iterrows():
        if math.isfinite(r["noise_scale"]):
            assert r["noise_scale_lo"] <= r["noise_scale"] <= r["noise_scale_hi"]
            assert r["grad_sq_lo"] <= r["grad_sq"] <= r["grad_sq_hi"]
        else:
            assert r["noise_note"].startswith("not resolved")
    assert history["trace_sigma"].gt(0).all()
    f = result.final
    assert f["stability_edge"] == pytest.approx(1.3571428571)
    assert f["sharpness"] == history["sharpness"].iloc[-1]
    assert f["max_sharpness_ratio"] == history["sharpness_ratio"].max()
    assert f["sharpness_examples"] == 64
    assert f["noise_measurements"] == 30
    # the run's estimates from every measurement: the epochs' means (equal counts), divided
    # after averaging, with intervals
    assert f["grad_sq"] == pytest.approx(history["grad_sq"].mean(), rel=1e-9)
    assert f["trace_sigma"] == pytest.approx(history["trace_sigma"].mean(), rel=1e-9)
    assert f["trace_sigma_lo"] <= f["trace_sigma"] <= f["trace_sigma_hi"]
    assert (f["noise_scale"] == pytest.approx(f["trace_sigma"] / f["grad_sq"])
            if f["grad_sq"] > 0 else math.isnan(f["noise_scale"]))
    assert f["noise_scale_run"] == f["noise_scale"] or math.isnan(f["noise_scale"])
    assert f["noise_scale_lo"] <= f["noise_scale_hi"]
    epochs = history["noise_scale"].dropna()
    assert len(epochs) > 0 and f["noise_scale_median"] == epochs.median()
    assert 0 <= f["share_never_forgotten"] <= 1 and f["mean_forgetting_events"] >= 0
    examples = pd.DataFrame(result.examples)
    assert len(examples) == 640 and examples["presentations"].eq(3).all()  # 3 passes
    assert examples["forgetting_events"].sum() == history["forgetting_events"].iloc[-1]


def test_the_median_of_the_epochs_is_nan_when_no_epoch_has_a_value(make_cfg):
    """5 measurements an epoch: no epoch reaches the 10 a value needs, the run's 10 do."""
    result = train(make_cfg("epochs=2", "threads=1", "diag.noise=true", "diag.noise_every=2"))
    assert [r["noise_measurements"] for r in result.history] == [5, 5]
    assert all(math.isnan(r["noise_scale"]) for r in result.history)
    assert math.isnan(result.final["noise_scale_median"])
    assert result.final["noise_measurements"] == 10
    assert not (result.final["noise_note"] or "").startswith("not measured")


def test_sharpness_every_n_epochs_and_after_the_last(make_cfg):
    history = pd.DataFrame(train(make_cfg("epochs=5", "threads=1", "diag.sharpness=true",
                                          "diag.sharpness_examples=64", "diag.iters=3",
                                          "diag.every=2")).history)
    assert history["sharpness"].notna().tolist() == [False, True, False, True, True]


def test_events_equal_those_recounted_from_the_fed_correctness(make_cfg, monkeypatch):
    trace: list[tuple[list[int], list[bool]]] = []
    record = ForgettingEvents.record

    def logged(self, indices, correct, step):
        trace.append((indices.tolist(), correct.tolist()))
        record(self, indices, correct, step)

    monkeypatch.setattr(ForgettingEvents, "record", logged)
    result = train(make_cfg("epochs=4", "threads=1", "lr=8", "diag.forgetting_events=true"))
    per_example: dict[int, list[bool]] = {}
    for indices, correct in trace:
        for i, c in zip(indices, correct):
            per_example.setdefault(i, []).append(c)
    assert len(trace) == 40 and len(per_example) == 640
    table = pd.DataFrame(result.examples)
    # examples are indexed in the full set; the tiny run's subset is the full set
    recounted = [count_events(per_example[i]) for i in table["example"]]
    assert table["forgetting_events"].tolist() == recounted
    assert sum(recounted) > 0  # a run that forgets something: the check is not vacuous
    first = [next((k for k, c in enumerate(per_example[i]) if c), None) for i in table["example"]]
    assert table["never_learned"].tolist() == [f is None for f in first]


def stop_before_step(k: int):
    calls = count()
    return lambda: next(calls) >= k


@pytest.mark.slow
def test_diagnostics_resume_as_if_never_stopped(make_cfg, tmp_path):
    cfg = make_cfg("epochs=3", "threads=1", *ALL)
    whole = train(cfg)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Preempted):
        train(cfg, checkpoint=Checkpoint(path, "h", stop=stop_before_step(15)))
    resumed = train(cfg, checkpoint=Checkpoint(path, "h"))
    columns = ["train_loss", "sharpness", "noise_scale", "forgetting_events"]
    pd.testing.assert_frame_equal(pd.DataFrame(resumed.history)[columns],
                                  pd.DataFrame(whole.history)[columns], check_exact=True)
    assert resumed.examples == whole.examples


def test_a_failed_measurement_is_recorded_and_the_run_goes_on(make_cfg, monkeypatch):
    def broken(*args, **kwargs):
        return {"sharpness": math.nan, "sharpness_rel_change": math.nan, "sharpness_iters": 1,
                "sharpness_error": "non-finite Hessian-vector product", "vector": None}

    monkeypatch.setattr(monitor, "top_eigenvalue", broken)
    result = train(make_cfg("threads=1", "diag.sharpness=true", "diag.sharpness_examples=64"))
    assert result.status == "ok"
    assert math.isnan(result.final["sharpness"]) and math.isnan(result.final["sharpness_ratio"])
    assert result.history[-1]["sharpness_note"] == "non-finite Hessian-vector product"


@pytest.mark.parametrize("loss", [math.inf, 5e3])
def test_an_epoch_that_diverged_is_not_measured(make_cfg, monkeypatch, loss):
    from types import SimpleNamespace

    def never(*args, **kwargs):
        raise AssertionError("measured a diverged epoch")

    monkeypatch.setattr(monitor, "top_eigenvalue", never)
    cfg = make_cfg("diag.sharpness=true", "diag.sharpness_examples=64")
    from forgetting.core.model import build_model

    run = SimpleNamespace(device=torch.device("cpu"), train_y=torch.zeros(640, dtype=torch.long),
                          model=build_model("tiny"))
    out = monitor.Diagnostics(cfg, run).after_epoch(
        run, {"epoch": 1, "train_loss": loss, "step_lr": 0.1}, last=True)
    assert math.isnan(out["sharpness"]) and out["sharpness_note"] == monitor.NOT_MEASURED


@pytest.mark.parametrize("override, message", [
    ("diag.every=-1", "diag.every=-1: must be an integer >= 1"),
    ("diag.iters=0", "diag.iters=0: must be an integer >= 1"),
    ("diag.noise_every=0", "diag.noise_every=0: must be an integer >= 1"),
    ("diag.sharpness=maybe", "diag.sharpness='maybe': must be true or false"),
])
def test_bad_diagnostics_settings_are_refused_before_a_run(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        preflight([*TINY, override])


def test_more_sharpness_examples_than_the_subset_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="diag.sharpness_examples=1000: must be <= the subset "
                                          "size 640"):
        train(make_cfg("diag.sharpness=true", "diag.sharpness_examples=1000"))


@pytest.mark.slow
def test_the_curvature_preset_end_to_end(tmp_path):
    """+sweep=quick_curvature on tiny data: the table carries the measurements, the figures
    and the verdict cite them."""
    sweep = tmp_path / "sweep"
    r = run_cli("-m", "+sweep=quick_curvature", *TINY, "subset=1.0", "batch_size=64,128",
                "lr=0.5,8", "diag.sharpness_examples=128", "diag.noise_every=1", "epochs=2",
                f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    results = pd.read_parquet(sweep / "results.parquet")
    assert len(results) == 4 and results["status"].eq("ok").all()
    assert results["max_sharpness_ratio"].gt(0).all() and results["stability_edge"].notna().all()
    assert results["sharpness_examples"].eq(128).all()  # whole batches of 64 and of 128
    assert results["share_never_learned"].between(0, 1).all()
    examples = pd.read_parquet(results["run_dir"].iloc[0] + "/examples.parquet")
    assert len(examples) == 640 and set(examples["label"]) == set(range(10))
    history = pd.read_parquet(sweep / "history.parquet")
    assert {"sharpness", "sharpness_ratio", "noise_scale", "eta_eff"} <= set(history.columns)
    r = run_cli(str(sweep), module="forgetting.plot")
    assert r.returncode == 0, r.stderr
    figures = {p.name for p in (sweep / "figures").glob("*.png")}
    assert {"sharpness.png", "noise_scale.png"} <= figures
    r = run_cli(str(sweep), module="forgetting.analyze")
    assert r.returncode == 0, r.stderr


def test_the_step_s_own_gradient_is_the_big_batch_gradient():
    """|G_B|^2 read between backward and update equals a separate mean-loss pass."""
    import copy

    from forgetting.core.diagnostics.noise import grad_sq_norm, mean_grad_sq
    from forgetting.core.model import build_model
    from forgetting.core.sgd import SGD
    from forgetting.core.step import make_autocast, sgd_step

    torch.manual_seed(0)
    model = build_model("tiny", 0.5).train()
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    separate = mean_grad_sq(copy.deepcopy(model), x, y)
    seen = []
    opt = SGD(model.parameters(), lr=0.0, momentum=0.9, nesterov=True, weight_decay=0.5)
    sgd_step(model, opt, x, y, 0.01, make_autocast(torch.device("cpu"), "fp32"),
             on_grad=lambda: seen.append(grad_sq_norm(model, len(x))))
    assert seen == [pytest.approx(separate, rel=1e-5)]  # weight decay not in it
