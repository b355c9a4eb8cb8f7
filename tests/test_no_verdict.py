"""A sweep that is no LR factor x subset grid (one factor, one subset, a partial sweep) gets
one line saying why there is no verdict, on the terminal and in the report."""

from __future__ import annotations

import pytest
from test_analyze import write_run

from forgetting.analysis.analyze import Thresholds, analyze, not_a_grid
from forgetting.analysis.text import render
from helpers import run_cli


@pytest.mark.parametrize("runs, why", [
    ([(2.0, 0.25), (2.0, 0.5)], "the finished runs have 1 LR factor (2); a verdict needs at "
                                "least 2 LR factors x 2 subsets"),
    ([(1.0, 0.5), (4.0, 0.5)], "the finished runs have 1 subset (0.5); a verdict needs at "
                               "least 2 LR factors x 2 subsets"),
    ([(1.0, 0.5, "failed"), (4.0, 0.25, "failed")], "no run finished (ok or diverged)"),
    # a partial sweep (one point failed) whose finished runs still form a 2 x 2 grid: judged
    ([(1.0, 0.5), (4.0, 0.5), (1.0, 0.25), (4.0, 0.25, "failed")], None),
])
def test_the_reason_there_is_no_verdict(tmp_path, runs, why):
    for k, (lr, subset, *status) in enumerate(runs):
        write_run(tmp_path / str(k), lr, subset, 128, status=(status or ["ok"])[0])
    report = analyze([tmp_path], Thresholds())
    assert report.get("no_verdict") == why
    said = [ln for ln in render(report).splitlines() if ln.startswith("verdict: none")]
    assert said == ([] if why is None else [f"verdict: none ({why})"])


def test_analyze_prints_the_reason_for_a_one_factor_sweep(tmp_path):
    for k, subset in enumerate((0.25, 0.5, 1.0)):
        write_run(tmp_path / str(k), 2.0, subset, 128)
    r = run_cli(str(tmp_path), module="forgetting.analyze")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("verdict:")]
    assert lines == ["verdict: none (the finished runs have 1 LR factor (2); a verdict needs "
                     "at least 2 LR factors x 2 subsets)"]


def test_the_grid_check_and_its_reason_agree():
    import pandas as pd

    frame = pd.DataFrame({"status": ["ok"] * 4, "lr": [1, 1, 2, 2], "subset": [.5, 1] * 2,
                          "augment": [True, False] * 2})
    assert not_a_grid(frame) == ("the runs differ in augment as well as in subset: not a "
                                 "subset-size comparison")


def test_analyze_warns_where_one_points_seeds_mix_precisions(tmp_path):
    """`precision=auto` picks per machine: a point whose seeds trained in bf16 on one and fp32
    on another is named, and the table shows what each run trained in beside what was asked."""
    from forgetting.tables import read

    k = 0
    for lr in (1.0, 4.0):
        for subset in (0.25, 1.0):
            for seed in (0, 1, 2):
                used = "fp32" if (lr, subset, seed) == (4.0, 0.25, 2) else "bf16"
                write_run(tmp_path / str(k), lr, subset, 128, seed=seed, precision=used,
                          threads=2)
                k += 1
    results, _, _ = read([tmp_path])
    assert set(results["precision_used"]) == {"bf16", "fp32"}
    assert set(results["threads_used"]) == {2}
    report = analyze([tmp_path], Thresholds())
    assert report["warnings"] == ["lr=4.0 subset=0.25: its runs trained in bf16 (seeds 0, 1) "
                                  "and fp32 (seed 2); seed and precision are confounded there"]
    assert "warning: lr=4.0 subset=0.25: its runs trained in bf16" in render(report)
