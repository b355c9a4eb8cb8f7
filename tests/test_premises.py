"""The premises block (forgetting/analysis/premises.py, horizon.py) on constructed data with known
answers: the forgetting horizon in examples at two batch sizes, its ratio's interval, the
dataset-size reading, and the critical batch size from steps to a target."""

import numpy as np
import pandas as pd
import pytest

from forgetting.analysis.analyze import Thresholds, analyze_tables
from forgetting.analysis.horizon import HALF, horizon, ratio, run_horizon
from forgetting.analysis.text import render

TEST_LOSS = 1.5


def recency_rows(batch: int, scale: float, examples: int = 50_000, noise: float = 0.02,
                 seed: int = 0) -> pd.DataFrame:
    """A probe of the last `examples` examples: a batch seen e examples ago has loss
    TEST_LOSS x min(1, 0.3 + 0.7 e / scale) (x noise): within 10% of the test loss from
    e = 6/7 scale on."""
    steps = np.arange(examples // batch)
    ago = steps * batch
    rng = np.random.default_rng(seed)
    loss = TEST_LOSS * np.minimum(1, 0.3 + 0.7 * ago / scale) * (1 + noise * rng.standard_normal(
        len(steps)))
    return pd.DataFrame({"steps_ago": steps, "epochs_ago": ago / examples, "loss": loss,
                         "accuracy": 0.5, "test_loss": TEST_LOSS, "probe_epoch": 3,
                         "batch_size": batch})


@pytest.mark.parametrize("batch", [128, 512])
def test_the_horizon_is_in_examples_at_every_batch_size(batch):
    rows = recency_rows(batch, scale=10_000, noise=0)
    expected = 6 / 7 * 10_000
    assert horizon(rows["steps_ago"].to_numpy() * batch, rows["loss"].to_numpy(),
                   0.9 * TEST_LOSS, 2500) == pytest.approx(expected, rel=0.03)
    # the half rise: half-way from the most recent bin (its batches' mean examples ago, m) to
    # the plateau (the test loss)
    m = np.mean([e for e in rows["steps_ago"] * batch if e < 2500])
    recent = 0.3 + 0.7 * m / 10_000
    half = ((recent + 1) / 2 - 0.3) / 0.7 * 10_000
    assert 5400 < half < 5700
    assert horizon(rows["steps_ago"].to_numpy() * batch, rows["loss"].to_numpy(), HALF,
                   2500) == pytest.approx(half, rel=0.02)
    h = run_horizon(rows.assign(loss=rows["loss"] * (1 + 0.02 * np.random.default_rng(1)
                                                     .standard_normal(len(rows)))), 0.1, 2500)
    assert h["lo"] <= expected <= h["hi"] and h["hi"] / h["lo"] < 1.3
    assert h["half_lo"] <= half <= h["half_hi"] and h["half_hi"] / h["half_lo"] < 1.5
    assert h["per_pass"] == pytest.approx(50_000)


def test_the_ratio_of_horizons_contains_1_only_when_they_agree():
    same = [run_horizon(recency_rows(b, 10_000, seed=b), 0.1, 2500) for b in (512, 128)]
    for kind in ("draws", "half_draws"):
        r = ratio(same[0][kind], same[1][kind])
        assert r[1] <= 1 <= r[2]
    double = run_horizon(recency_rows(512, 20_000), 0.1, 2500)
    for kind in ("draws", "half_draws"):
        r = ratio(double[kind], same[1][kind])
        assert r[0] == pytest.approx(2, rel=0.1) and r[1] > 1
    never = run_horizon(recency_rows(512, 1e9), 0.1, 2500)
    assert never["horizon"] is None and ratio(never["draws"], same[1]["draws"]) is None


def fabricated_sweep():
    """Forgetting runs (batch 128 and 512 at LR factor 2, the same horizon in examples; subsets
    1/32 and 1 at batch 128) and critical-batch runs (S = 400 (1 + 256/B) steps at the best of
    three factors, x 1.5 and x 2 at the others, 3 seeds with 3% noise)."""
    rows, recency = [], []
    rng = np.random.default_rng(0)
    for seed in range(3):
        for batch, subset, examples in [(128, 1.0, 50_000), (512, 1.0, 50_000),
                                        (128, 1 / 32, 1562)]:
            name = f"/sweep/f-{batch}-{subset:g}-{seed}"
            rows.append({"run_dir": name, "lr": 2.0, "batch_size": batch, "subset": subset,
                         "seed": seed, "status": "ok", "mean_forgetting_events": 0.3,
                         "epochs_run": 3})
            scale = 10_000 if subset == 1 else 1e9  # the small subset is never forgotten
            r = recency_rows(batch, scale, examples=examples if subset == 1 else 6 * examples,
                             seed=100 * seed + batch)
            if subset < 1:
                r["epochs_ago"] = r["steps_ago"] * batch / examples
            recency.append(r.assign(run_dir=name))
        for batch in (32, 64, 128, 256, 512, 1024):
            steps = 400 * (1 + 256 / batch) * (1 + 0.03 * rng.standard_normal())
            for lr, worse in [(1.0, 1.5), (2.0, 1.0), (4.0, 2.0)]:
                rows.append({"run_dir": f"/sweep/c-{batch}-{lr:g}-{seed}", "lr": lr,
                             "batch_size": batch, "subset": 1.0, "seed": seed, "status": "ok",
                             "steps_to_train_target": round(steps * worse),
                             "train_loss_target": 1.0, "noise_scale": 300.0 + 20 * seed})
    results = pd.DataFrame(rows)
    for column in ("test_loss", "train_loss", "test_acc"):
        results[column] = 1.0
    return results, pd.concat(recency, ignore_index=True)


def test_analyze_prints_the_premises_block():
    results, recency = fabricated_sweep()
    report = analyze_tables(results, {"recency": recency}, Thresholds(), [])
    block = report["premises"]
    (batch,) = block["batch"]
    assert (batch["small"], batch["large"], batch["holds"]) == (128, 512, 3)
    assert batch["events_per_pass"][128]["mean"] == pytest.approx(0.1)
    over = batch["over_seeds"]  # the seeds' ratios, pooled: near 1, its interval around 1
    assert over["n"] == 3 and over["lo"] <= 1 <= over["hi"] and over["hi"] / over["lo"] < 1.5
    (subset,) = block["subset"]
    assert subset["holds"] == 3  # 1/32 beyond its 6 passes; the full set within one
    crit = block["critical"]["train"]
    assert [s["best_lr"] for s in crit["sizes"]] == [[2.0]] * 6
    low, high = crit["fit"]["b_crit"][1:]
    assert low <= 256 <= high and high / low < 2
    text = render(report)
    assert "ratio contains 1 on 3/3 seeds" in text
    assert "(geometric mean, 95% t-interval, n=3): contains 1" in text
    assert "the smallest subset's horizon in passes is the longer on 3/3 seeds" in text
    assert "critical batch size, train loss target 1 (3 seeds" in text
    assert "B_simple on the same runs: 320 [" in text


def test_the_premises_figures_show_the_fit_and_the_curves_in_examples():
    from forgetting.analysis.plot import figures

    results, recency = fabricated_sweep()
    results["recipe"] = "part1"
    drawn, _ = figures(results, {"recency": recency})
    report = analyze_tables(results, {"recency": recency}, Thresholds(), [])
    fit = report["premises"]["critical"]["train"]["fit"]
    (ax,) = drawn["critical_batch.png"].axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    curve = next(v for k, v in lines.items() if k.startswith("fit"))
    xs, ys = curve.get_data()
    assert ys[0] == pytest.approx(fit["s_min"][0] * (1 + fit["b_noise"][0] / xs[0]))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert any(f"{fit['b_crit'][0]:.0f} [" in t.get_text()
               for t in ax.get_legend().get_texts())
    # one panel per (LR factor, subset): batch 128 and 512 at the full set, both near 1.5
    # nats (the test level) at the oldest bins
    full = next(a for a in drawn["recency_examples.png"].axes if "subset 1" in a.get_title())
    curves = [line for line in full.get_lines() if line.get_label().startswith("batch")]
    assert sorted(line.get_label() for line in curves) == [
        "batch 128 (mean of 3 seeds)", "batch 512 (mean of 3 seeds)"]
    for line in curves:
        assert line.get_ydata()[-1] == pytest.approx(TEST_LOSS, rel=0.05)
