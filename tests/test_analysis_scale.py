"""A 10,000-row table (8 LR factors x 5 subsets x 2 batch sizes x 125 seeds) analysed and drawn
from its tables: the right verdict and the right curves, with figures whose size follows the
lines they draw, not the runs. Not timed: what is checked is the output."""

from __future__ import annotations

import fabricate
import pytest

from forgetting.analysis import figure
from forgetting.analysis.analyze import Thresholds, analyze_tables
from forgetting.analysis.plot import plot_tables

SUBSETS = [0.25, 0.375, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def sweep():
    results, tables = fabricate.sweep(seeds=125, subsets=SUBSETS, probe_runs=400)
    assert len(results) == 10_000 and len(tables["history"]) == 40_000
    return results, tables


def test_a_10k_row_table_gets_the_known_verdict(sweep):
    results, tables = sweep
    report = analyze_tables(results, tables, Thresholds(), [])
    assert report["runs"] == 10_000
    assert report["status"] == {"ok": 125 * 5 * (7 + 5), "diverged": 125 * 5 * (1 + 3)}
    b128, b512 = report["lr_subset"]
    assert (b128["batch_size"], b128["onset"], b512["onset"]) == (128, 16, 4)
    best = {s["subset"]: s["best_lr"] for s in b128["subsets"]}
    for subset in SUBSETS:
        assert best[subset] == pytest.approx(fabricate.expected_optimum(subset), rel=0.05)
    assert b128["verdict"] == "forgetting-limited"
    assert all(c["ok"] for c in b128["checks"])
    assert len(report["probe"]) == 400
    assert {p["steps_to_test_level"] for p in report["probe"]} <= set(range(20)) | {None}
    [curv128, curv512] = report["curvature"]
    assert (curv128["edge_from"], curv512["edge_from"]) == (16, 4)


def test_a_10k_row_table_draws_aggregates(sweep, tmp_path, monkeypatch):
    results, tables = sweep
    kept = {}

    def keep(fig, path):
        kept[path.name] = fig
        return path

    monkeypatch.setattr(figure, "save", keep)
    written = plot_tables(results, tables, tmp_path)
    assert {p.name for p in written} == {"lr_subset.png", "test_loss_per_epoch.png",
                                         "sharpness.png", "noise_scale.png", "recency.png",
                                         "equal_eta.png"}
    # lr_subset: one mean curve per subset and panel, at the mean over seeds
    ax = kept["lr_subset.png"].axes[1]  # batch 128, test loss
    curves = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label().startswith("subset")}
    assert len(curves) == len(SUBSETS)
    ok = results[(results["status"] == "ok") & (results["batch_size"] == 128)]
    means = ok[ok["subset"] == 0.5].groupby("lr")["test_loss"].mean()
    assert list(curves["subset 0.5"].get_ydata()) == pytest.approx(list(means))
    # per epoch: a panel per LR factor, a curve per dataset (subset x batch), not per run
    epochs = [a for a in kept["test_loss_per_epoch.png"].axes if a.get_visible()]
    assert len(epochs) == 8
    assert max(len([ln for ln in a.get_lines() if ln.get_linestyle() != "None"])
               for a in epochs) == 10
    # the probe: at most 12 of the 400 probed runs get a panel
    assert len([a for a in kept["recency.png"].axes if a.get_visible()]) == 12
    for fig in kept.values():
        figure.plt().close(fig)
