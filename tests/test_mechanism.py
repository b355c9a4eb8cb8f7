"""Above the edge, step by step (forgetting/analysis/mechanism.py, plot_mechanism.py): the
windows under each top eigenvector, the sign flips of the update along it, the part of
lambda_max's fall that the weight norm accounts for, and the equal-eta_eff split, on a
constructed sweep with known answers; the block in forgetting.analyze and the figure."""

import math

import pandas as pd
import pytest

import helpers
from forgetting.analysis.analyze import Thresholds, analyze
from forgetting.analysis.mechanism import norm_share, wilson
from forgetting.analyze import main
from forgetting.plot import main as plot_main

PER_EPOCH = 10  # steps an epoch; 4 epochs; sharpness measured after epochs 1, 2 and 3
# batch 512 at factor 2: above the edge after epochs 1 and 2, lambda_max halving each time
# while |w|^2 doubles (lambda |w|^2 constant: all of the fall is the norm's); its updates flip
# sign every step after those measurements, and keep one sign after epoch 3's (below the edge)
LARGE = {"ratio": [1.5, 1.2, 0.8], "sharpness": [8.0, 4.0, 2.0],
         "weight_norm": [10.0, 10 * math.sqrt(2), 20.0]}
# batch 128 at factor 8 (the same eta_eff schedule): below the edge, |w| 20 throughout; the
# ratio is 0.1875 lambda_max at epoch 1 as batch 512's is (same eta_eff, no weight decay)
SMALL = {"ratio": [0.6, 0.7, 0.5], "sharpness": [3.2, 3.5, 2.5],
         "weight_norm": [20.0, 20.0, 20.0]}


def make_run(folder, batch, lr, measured, flipping):
    config = {"lr": lr, "subset": 0.125, "batch_size": batch, "seed": 0, "augment": False,
              "model": {"name": "resnet9", "width": 0.25}}
    helpers.write_run(folder, "ok", config, train_loss=0.1, test_loss=1.0, test_acc=0.6,
                      train_s=1.0, steps=4 * PER_EPOCH, epochs_run=4,
                      max_sharpness_ratio=max(measured["ratio"]))
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [2.0, 1.0, 0.5, 0.2],
                            "test_loss": [2.1, 1.5, 1.2, 1.0],
                            "sharpness": measured["sharpness"] + [math.nan],
                            "sharpness_ratio": measured["ratio"] + [math.nan],
                            "weight_norm": measured["weight_norm"] + [20.0]})
    history.to_parquet(folder / "history.parquet")
    steps = range(1, 4 * PER_EPOCH + 1)
    component = [math.nan if s <= PER_EPOCH else
                 (-1) ** s * 0.1 if flipping and s <= 3 * PER_EPOCH else 0.05 for s in steps]
    pd.DataFrame({"step": list(steps), "loss": [2.0 - s / 40 for s in steps],
                  "eta_eff": [0.1] * len(steps), "top_component": component}).to_parquet(
        folder / "steps.parquet")


@pytest.fixture
def sweep(tmp_path):
    make_run(tmp_path / "0", 512, 2.0, LARGE, flipping=True)
    make_run(tmp_path / "1", 128, 8.0, SMALL, flipping=False)
    return tmp_path


def test_windows_flips_norm_share_and_the_equal_eta_split(sweep):
    block = analyze([sweep], Thresholds())["mechanism"]
    small, large = block["runs"]  # by batch size
    assert (large["batch_size"], small["batch_size"]) == (512, 128)
    assert [(w["epoch"], w["flips"], w["pairs"], w["oscillates"]) for w in large["windows"]] == [
        (1, 9, 9, True), (2, 9, 9, True), (3, 0, 9, False)]
    above = large["pooled"]["above"]
    assert (above["flips"], above["pairs"], above["windows"]) == (18, 18, 2)
    assert above["lo"] == pytest.approx(wilson(18, 18)[0]) and above["lo"] > 0.8
    assert large["pooled"]["below"]["flips"] == 0
    assert large["norm_share"] == pytest.approx(1.0)  # lambda |w|^2 unchanged
    assert large["norm_growth"] == pytest.approx(4.0) and large["invariant_change"] == 1.0
    assert small["norm_share"] is None and small["pooled"]["above"]["pairs"] == 0
    assert small["windows"][0]["rms_first"] == pytest.approx(0.05)
    # lambda |w|^2 to the next measurement: constant at 512 (above the edge: x1, its last window
    # has no next); at 128 1280 -> 1400 -> 1000, pooled over its windows below the edge
    assert [w["invariant_after"] for w in large["windows"][:2]] == pytest.approx([1.0, 1.0])
    assert math.isnan(large["pooled"]["below"]["invariant_after"])
    assert small["pooled"]["below"]["invariant_after"] == pytest.approx(
        math.sqrt(1400 / 1280 * 1000 / 1400))
    (pair,) = block["pairs"]
    assert pair["small"] == (128, 8.0) and pair["large"] == (512, 2.0) and pair["epoch"] == 1
    # ratio 1.5 / 0.6 = 2.5 = lambda |w|^2 800 / 1280 x (|w_128| / |w_512|)^2 = 4
    assert pair["invariant_factor"] == pytest.approx(0.625)
    assert pair["norm_factor"] == pytest.approx(4.0)
    assert pair["invariant_factor"] * pair["norm_factor"] == pytest.approx(1.5 / 0.6)


def test_norm_share_counts_only_falls_after_measurements_above_the_edge():
    def m(ratio, lam, norm):
        return {"ratio": ratio, "sharpness": lam, "weight_norm": norm}
    # above: lambda x1/4 while |w|^2 x2 -> half of the fall; below the edge: not counted
    assert norm_share([m(1.5, 8, 1), m(0.9, 2, math.sqrt(2)), m(0.5, 1, 10)]) == (
        pytest.approx(0.5))
    assert norm_share([m(1.5, 2, 1), m(1.2, 3, 2)]) is None  # lambda rose
    lo, hi = wilson(5, 10)
    assert lo < 0.5 < hi and (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_a_run_that_stopped_before_its_first_measurement_is_named_not_read(sweep, capsys):
    make_run(sweep / "2", 512, 8.0, {k: [math.nan] * 3 for k in LARGE}, flipping=False)
    assert main([str(sweep)]) == 0
    assert ("batch 512 factor 8 seed 0 width 0.25 (ok): no sharpness measured, nothing to read"
            in capsys.readouterr().out)
    assert plot_main([str(sweep), "--out", str(sweep / "figures")]) == 0


def test_analyze_prints_the_block_and_plot_draws_it(sweep, capsys):
    assert main([str(sweep)]) == 0
    text = capsys.readouterr().out
    assert "above the edge, step by step (steps.parquet)" in text
    assert ("batch 512 factor 2 seed 0 width 0.25 (ok): flips above 18/18 [0.82, 1.00] in 2 "
            "windows, at or below 0/9 [0.00, 0.30]; lambda |w|^2 to the next measurement x1.00 "
            "after above, - after at or below; |w|^2 x4.00, lambda |w|^2 x1.00; norm share "
            "100%") in text
    assert ("    after epoch  1: ratio 1.50, flips 9/9 (oscillates), rms 0.1 -> 0.1, lambda "
            "|w|^2 x1.00 to the next") in text
    assert ("equal eta_eff, seed 0: batch 512 at 2 vs 128 at 8, epoch 1: ratio 1.50 vs 0.60 = "
            "lambda |w|^2 x0.62 times |w_small|^2 / |w_large|^2 x4.00") in text
    assert plot_main([str(sweep), "--out", str(sweep / "figures")]) == 0
    assert (sweep / "figures" / "mechanism.png").stat().st_size > 10_000


def test_the_figure_shows_each_run_its_windows_and_distinct_legends(sweep):
    """What a reader sees: a column per run titled by its point, the red line of each window
    above the edge and a blue one below, the ratio per measurement, legends without repeats."""
    from forgetting.analysis.plot_mechanism import mechanism_figure
    from forgetting.tables import read

    _, tables, _ = read([sweep])
    fig = mechanism_figure(analyze([sweep], Thresholds())["mechanism"], tables["steps"])
    # axes row by row: the updates (0, 1), the fixed batch's loss (2, 3), per measurement (4, 5)
    titles = [ax.get_title() for ax in fig.axes[:2]]
    assert titles == ["LR factor 8, batch 128", "LR factor 2, batch 512"]
    # batch 512's windows: after epochs 1 and 2 above the edge (red), after 3 below (blue)
    colours = [line.get_color() for line in fig.axes[1].lines if len(line.get_xdata())]
    assert colours[:3] == ["tab:red", "tab:red", "tab:blue"]
    # its per-measurement panel: the ratios 1.5, 1.2, 0.8 at epochs 1, 2, 3
    ratio = next(line for line in fig.axes[5].lines if line.get_label() == "sharpness ratio")
    assert list(ratio.get_xdata()) == [1, 2, 3] and list(ratio.get_ydata()) == [1.5, 1.2, 0.8]
    for ax in (fig.axes[1], fig.axes[5]):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels and len(labels) == len(set(labels))
    assert {t.get_text() for t in fig.axes[1].get_legend().get_texts()} == {
        "after a measurement above the edge", "after one at or below it"}
