"""The premises' presets run end to end on synthetic data at a tiny width, and
`forgetting.analyze` reads each one's premise from the sweep's tables."""

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli

pytestmark = pytest.mark.slow

TINY_DATA = ["data=synthetic", "data.test_size=256", "model.width=0.0625", "report=false"]


def sweep(tmp_path, name: str, *overrides: str, train_size: int = 1024):
    out = tmp_path / name
    r = run_cli("-m", f"+sweep={name}", *TINY_DATA, f"data.train_size={train_size}",
                *overrides, f"hydra.sweep.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def analyze(out) -> str:
    r = run_cli(str(out), module="forgetting.analyze")
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_the_batch_size_preset_gives_each_seed_s_ratio_of_horizons(tmp_path):
    out = sweep(tmp_path, "quick_forgetting_batch", "lr=2", "seed=0,1")
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(results["batch_size"]) == [128, 128, 512, 512]
    assert (results["status"] == "ok").all()
    assert results["mean_forgetting_events"].notna().all()
    text = analyze(out)
    assert "forgetting vs batch size, LR factor 2, subset 1: half-rise horizon" in text
    assert text.count("    seed ") >= 2


def test_the_dataset_size_preset_gives_each_subset_s_horizon_in_passes(tmp_path):
    out = sweep(tmp_path, "quick_forgetting_subset", "subset=0.25,1.0", "seed=0")
    results = pd.read_parquet(out / "results.parquet")
    # the same steps for both (budget=steps): the quarter set takes 4x the passes
    assert sorted(results["epochs_run"]) == [3, 12]
    text = analyze(out)
    assert "forgetting vs dataset size, LR factor 2, batch 128" in text
    assert "passes" in text


def test_the_critical_batch_preset_stops_at_its_target_and_is_fitted(tmp_path):
    out = sweep(tmp_path, "quick_critical_batch", "batch_size=32,64,128", "lr=1,4", "seed=0,1",
                "target.train_loss=1.5", "target.test_loss=1.8", "target.window=256",
                "target.test_every=256")
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 12 and (results["status"] == "ok").all()
    reached = results[results["steps_to_train_target"].notna()
                      & results["examples_to_test_target"].notna()]
    assert len(reached) >= 6
    # stopped when both were reached: the test loss is checked every 256 examples
    batch = reached["batch_size"]
    test_step = np.ceil(reached["examples_to_test_target"] / 256) * 256 // batch
    stop = np.maximum(reached["steps_to_train_target"], test_step)
    assert (reached["epochs_run"] == np.ceil(stop / (1024 // batch))).all()
    assert (reached["examples_to_train_target"]
            == reached["steps_to_train_target"] * reached["batch_size"]).all()
    text = analyze(out)
    assert "critical batch size, train loss target 1.5" in text
    assert (out / "figures").exists() is False  # analyze writes no figures
    r = run_cli(str(out), module="forgetting.plot")
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_batch_512_steps_control_takes_batch_128_s_steps(tmp_path):
    out = sweep(tmp_path, "quick_lr_subset_bs512_steps", "subset=0.125,0.25", "lr=1,4",
                "epochs=2", train_size=5120)
    results = pd.read_parquet(out / "results.parquet")
    # 2 full-set epochs of steps at batch 512 on 5,120 examples: 20 steps; the 1/8 subset
    # (640 examples, one step a pass) takes them in 20 passes, the 1/4 in 10
    assert set(results["steps"]) == {20}
    assert sorted(results["epochs_run"]) == [10, 10, 20, 20]
    assert len(results) == 4 and (results["status"] == "ok").all()
    assert "LR factor x subset, batch 512" in analyze(out)
