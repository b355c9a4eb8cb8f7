"""forgetting.analyze and forgetting.plot on constructed run folders with known answers."""

import json
import math

import pandas as pd
import pytest

import helpers
from forgetting.analysis.analyze import Thresholds, analyze, optimum
from forgetting.analysis.text import render
from forgetting.analyze import main
from helpers import run_cli

GRID = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16]


def write_run(folder, lr, subset, batch_size, status="ok", train_loss=0.1, test_loss=1.0,
              seed=0, test_acc=0.9, recipe="part1", train_s=10.0, error=None, budget="steps",
              **metrics):
    """A finished run of the seed's grid (helpers.write_run with this file's defaults)."""
    config = {"lr": lr, "subset": subset, "batch_size": batch_size, "seed": seed,
              "augment": True, "target_acc": 0.94, "budget": budget}
    extra = {"error": error} if error else {}
    helpers.write_run(folder, status, config, train_loss=train_loss, test_loss=test_loss,
                      test_acc=test_acc, train_s=train_s, choices={"recipe": recipe},
                      **extra, **metrics)


def bowl(lr, best, base=1.0):
    return base + 0.1 * (math.log2(lr) - math.log2(best)) ** 2


def make_sweep(root, batch_size, best, edge, base=1.0, seeds=(0, 1), budget="steps",
               train=lambda lr, subset: 0.05 * lr, ratio=None, noise=None):
    """Subsets 0.25 and 1 (optimum `best[subset]`, the same for every seed), runs diverge from
    `edge` on; `budget=epochs` gives the small subset 4x fewer steps; `ratio(lr)`: the measured
    max sharpness ratio; `noise`: the noise scale of every run."""
    k = len(list(root.glob("*")))
    for seed in seeds:
        for subset in (0.25, 1.0):
            for lr in GRID:
                diverged = lr >= edge
                measured = {} if ratio is None else {"max_sharpness_ratio": ratio(lr)}
                if noise is not None:
                    measured["noise_scale"] = noise
                write_run(root / str(k), lr, subset, batch_size, seed=seed, budget=budget,
                          status="diverged" if diverged else "ok",
                          train_loss=math.nan if diverged else train(lr, subset),
                          test_loss=math.nan if diverged else bowl(lr, best[subset], base),
                          steps=1000 if budget == "steps" else int(1000 * subset),
                          **measured)
                k += 1


def test_optimum_is_the_parabola_vertex_on_log2():
    losses = [(math.log2(v) - 0.5) ** 2 for v in GRID]
    best, at_edge = optimum(GRID, losses)
    assert best == pytest.approx(2 ** 0.5) and not at_edge
    assert optimum(GRID, list(range(8))) == (0.125, True)  # minimum at the grid's low end


def test_forgetting_limited_at_128_curvature_limited_at_512(tmp_path):
    make_sweep(tmp_path, 128, {0.25: 4.0, 1.0: 1.0}, edge=16)
    make_sweep(tmp_path, 512, {0.25: 1.0, 1.0: 1.0}, edge=2)
    report = analyze([tmp_path], Thresholds())
    by_batch = {e["batch_size"]: e for e in report["lr_subset"]}
    b128, b512 = by_batch[128], by_batch[512]
    assert b128["onset"] == 16 and b512["onset"] == 2
    best = {s["subset"]: s["best_lr"] for s in b128["subsets"]}
    assert best[1.0] == pytest.approx(1.0) and best[0.25] == pytest.approx(4.0)
    assert b128["verdict"] == "forgetting-limited"
    assert b512["verdict"] == "curvature-limited"


def test_a_train_loss_jump_is_an_onset_and_flat_optima_are_inconclusive(tmp_path):
    make_sweep(tmp_path, 128, {0.25: 1.0, 1.0: 1.0}, edge=99)
    for run in tmp_path.glob("*"):  # train loss 0.05*lr, then a jump at factor 8
        m = json.loads((run / "metrics.json").read_text())
        if m["config"]["lr"] >= 8:
            m["train_loss"] = 2.3
            (run / "metrics.json").write_text(json.dumps(m))
    entry = analyze([tmp_path], Thresholds())["lr_subset"][0]
    assert entry["onset"] == 8
    assert entry["subsets"][0]["onset_reason"] == "train loss 0.2 -> 2.3"
    assert entry["verdict"] == "inconclusive" and "does not move" in entry["why"]
    assert analyze([tmp_path], Thresholds(jump=20))["lr_subset"][0]["onset"] is None


def test_failed_runs_are_not_instability(tmp_path):
    make_sweep(tmp_path, 128, {0.25: 4.0, 1.0: 1.0}, edge=99)
    write_run(tmp_path / "x", 2, 1.0, 128, status="failed", error="DataError: boom")
    report = analyze([tmp_path], Thresholds())
    assert report["status"]["failed"] == 1
    assert report["lr_subset"][0]["onset"] is None
    assert report["lr_subset"][0]["verdict"] == "forgetting-limited"


def verdict_of(root, **th):
    return analyze([root], Thresholds(**th))["lr_subset"][0]


def test_an_under_trained_sweep_is_confounded_not_forgetting_limited(tmp_path):
    """Like the demo: budget=epochs (the small subset takes 4x fewer steps) and train loss
    about the test loss (nothing memorised); the optimum still rises as the subset shrinks."""
    make_sweep(tmp_path, 128, {0.25: 4.0, 1.0: 1.0}, edge=99, budget="epochs",
               train=lambda lr, subset: 1.0)
    entry = verdict_of(tmp_path)
    assert entry["loss_shape"] == "forgetting-limited"
    assert entry["verdict"] == "confounded: equal steps, small subsets fit"
    checks = {c["check"]: c for c in entry["checks"]}
    assert checks["equal steps"]["text"] == "steps per run 250-1000 across subsets (x4)"
    assert "factor 4: train_loss 1 vs test 1 " in checks["small subsets fit"]["text"]
    text = render(analyze([tmp_path], Thresholds()))
    assert "verdict: confounded: equal steps, small subsets fit" in text
    assert "[fails] equal steps" in text and "fitted means <= 0.5 x test" in text


def test_whole_passes_count_as_equal_steps_and_a_subsets_ratio_does_not():
    import pandas as pd

    from forgetting.analysis.verdict import equal_steps

    def check(steps):
        return equal_steps(pd.DataFrame({"status": "ok", "subset": [0.03125, 0.0625, 0.125],
                                         "steps": steps}))
    assert check([780, 768, 768]) == {"check": "equal steps", "ok": True,
                                      "text": "steps per run 768-780 across subsets (x1.02)"}
    assert not check([250, 500, 1000])["ok"]


def test_one_seed_or_a_spread_that_spans_the_claim_is_not_resolved(tmp_path):
    make_sweep(tmp_path / "one", 128, {0.25: 4.0, 1.0: 1.0}, edge=99, seeds=(0,))
    entry = verdict_of(tmp_path / "one")
    assert entry["verdict"] == "not resolved: 1 seed(s) per point; a claim needs >= 2"
    assert verdict_of(tmp_path / "one", min_seeds=1)["verdict"] == "forgetting-limited"
    # seed 1's small-subset optimum is 1.5, below the x2 the claim needs; the mean still says 2.5
    make_sweep(tmp_path / "spread", 128, {0.25: 4.0, 1.0: 1.0}, edge=99, seeds=(0,))
    make_sweep(tmp_path / "spread", 128, {0.25: 1.5, 1.0: 1.0}, edge=99, seeds=(1,))
    entry = verdict_of(tmp_path / "spread")
    assert entry["loss_shape"] == "forgetting-limited"
    assert entry["verdict"].startswith("not resolved: 2 seeds;") and "x1.5-x4" in entry["verdict"]
    small = entry["subsets"][0]
    assert sorted(small["best_lr_seeds"]) == pytest.approx([1.5, 4.0])


def test_curvature_is_claimed_only_where_the_measured_ratio_reached_the_edge(tmp_path):
    def at_edge(lr):  # ratio 0.95 from factor 1 on: the edge reached
        return min(1.0, 0.95 * lr)

    def far(lr):  # far below the edge
        return 0.05 * lr

    make_sweep(tmp_path / "edge", 512, {0.25: 1.0, 1.0: 1.0}, edge=2, ratio=at_edge)
    make_sweep(tmp_path / "far", 512, {0.25: 1.0, 1.0: 1.0}, edge=2, ratio=far)
    entry = verdict_of(tmp_path / "edge")
    assert entry["verdict"] == "curvature-limited"
    assert entry["sharpness"]["at_optimum"] == 0.95 and entry["sharpness"]["at_onset"] == 1.0
    assert verdict_of(tmp_path / "edge", edge_ratio=0.99)["verdict"].startswith("not resolved")
    entry = verdict_of(tmp_path / "far")
    assert entry["loss_shape"] == "curvature-limited"
    assert entry["verdict"].startswith("not resolved: sharpness ratio at the optimum (factor 1) "
                                       "0.05, at the onset (factor 2) 0.10")
    assert "the edge was not reached" in entry["verdict"]


def test_a_forgetting_limited_optimum_at_the_edge_is_a_disagreement(tmp_path):
    make_sweep(tmp_path, 128, {0.25: 4.0, 1.0: 1.0}, edge=99, ratio=lambda lr: 0.9)
    entry = verdict_of(tmp_path)
    assert entry["loss_shape"] == "forgetting-limited"
    assert "sits at the edge of stability" in entry["verdict"]
    make_sweep(tmp_path / "b", 128, {0.25: 4.0, 1.0: 1.0}, edge=99, ratio=lambda lr: 0.1,
               noise=2000.0)
    entry = verdict_of(tmp_path / "b")
    assert entry["verdict"] == "forgetting-limited"
    assert entry["noise"]["noise_scale"] == 2000
    assert "a 4x batch (512) is still below it" in entry["noise"]["text"]


def test_recipes_share_reaching_the_target(tmp_path):
    for seed, acc in enumerate([0.941, 0.935, 0.95]):
        write_run(tmp_path / f"a{seed}", 1, 1.0, 128, seed=seed, test_acc=acc, recipe="part1",
                  train_s=300 + seed)
    for seed, acc in enumerate([0.92, 0.945]):
        write_run(tmp_path / f"b{seed}", 1, 1.0, 512, seed=seed, test_acc=acc, recipe="part2",
                  train_s=250)
    rec = {r["recipe"]: r for r in analyze([tmp_path], Thresholds())["recipes"]}
    assert (rec["part1"]["reached"], rec["part1"]["runs"]) == (2, 3)
    assert rec["part1"]["median_train_s"] == 301 and rec["part2"]["share"] == 0.5
    rec = {r["recipe"]: r for r in analyze([tmp_path], Thresholds(target_acc=0.9))["recipes"]}
    assert rec["part2"]["reached"] == 2


def write_probe(run_dir, test_loss=1.0, steps_per_epoch=50, steps=100):
    rows = [{"probe_epoch": 3, "epoch": 3 - s // steps_per_epoch, "steps_ago": s,
             "epochs_ago": s / steps_per_epoch, "loss": 0.2 + 0.008 * s, "accuracy": 0.9,
             "test_loss": test_loss, "test_acc": 0.7} for s in range(steps - 1, -1, -1)]
    pd.DataFrame(rows).to_parquet(run_dir / "recency.parquet")


def test_probe_steps_until_the_test_level(tmp_path):
    write_run(tmp_path / "0", 4, 1.0, 128)
    write_probe(tmp_path / "0")
    [entry] = analyze([tmp_path], Thresholds())["probe"]
    # loss 0.2 + 0.008 s; bins of round(0.05 * 50) = 2 steps; first bin mean >= 0.9 is 88-89
    assert entry["steps_to_test_level"] == 88
    assert entry["epochs_to_test_level"] == pytest.approx(1.76)
    assert entry["recent_loss"] == pytest.approx(0.204)
    [entry] = analyze([tmp_path], Thresholds(within=0.01))["probe"]
    assert entry["steps_to_test_level"] is None  # never within 1% in the probed 2 epochs


def test_cli_writes_verdict_and_figures_with_diverged_and_failed_runs(tmp_path):
    make_sweep(tmp_path, 128, {0.25: 4.0, 1.0: 1.0}, edge=8)
    write_run(tmp_path / "x", 2, 1.0, 128, status="failed", error="DataError: boom")
    (tmp_path / "y" / ".hydra").mkdir(parents=True)  # a run that never wrote metrics.json
    (tmp_path / "y" / ".hydra" / "config.yaml").write_text("lr: 1\nsubset: 0.25\nbatch_size: 128\n")
    write_probe(tmp_path / "0")
    assert main([str(tmp_path)]) == 0
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["lr_subset"][0]["verdict"] == "forgetting-limited"
    assert verdict["status"] == {"ok": 24, "diverged": 8, "failed": 1, "interrupted": 1}
    text = (tmp_path / "verdict.txt").read_text()
    assert "forgetting-limited" in text and "thresholds:" in text and "within 10%" in text
    r = run_cli(str(tmp_path), module="forgetting.plot")
    assert r.returncode == 0, r.stderr
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == ["lr_subset.png", "recency.png"]
    assert all((tmp_path / "figures" / f).stat().st_size > 10_000 for f in figures)


@pytest.mark.parametrize("module", ["forgetting.analyze", "forgetting.plot"])
def test_bad_folders_are_one_line_errors(tmp_path, module):
    r = run_cli(str(tmp_path / "missing"), module=module)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "no such folder" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(str(tmp_path), module=module)  # empty
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: DIR=")


@pytest.mark.slow
def test_plot_and_analyze_a_real_tiny_sweep_with_diverged_and_failed_runs(tmp_path):
    from helpers import TINY
    from helpers import write_run as write_metrics

    sweep = tmp_path / "sweep"
    # LR factor 1e5: diverged
    r = run_cli("-m", *TINY, "subset=0.5,1.0", "lr=0.5,2,100000", "probe.every=1",
                f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-3000:]
    reference = json.loads((sweep / "0" / "metrics.json").read_text())["config"]
    for k, lr in enumerate([0.5, 2, 100000]):  # three points that failed (a crash, say)
        write_metrics(sweep / f"failed{k}", "failed", error="crashed", lr=lr, subset=0.05,
                      config={**reference, "lr": lr, "subset": 0.05})
    r = run_cli(str(sweep), module="forgetting.collect")
    assert r.returncode == 1 and "3 run(s) failed" in r.stderr
    status = pd.read_parquet(sweep / "results.parquet").groupby("status").size().to_dict()
    assert status["failed"] == 3 and status.get("diverged", 0) >= 1
    r = run_cli(str(sweep), module="forgetting.analyze")
    assert r.returncode == 0, r.stderr
    verdict = json.loads((sweep / "verdict.json").read_text())
    entry = verdict["lr_subset"][0]
    assert entry["batch_size"] == 64 and entry["onset"] == 100000
    assert [s["subset"] for s in entry["subsets"]] == [0.5, 1.0]
    assert len(verdict["probe"]) == status["ok"]
    r = run_cli(str(sweep), module="forgetting.plot")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (sweep / "figures").glob("*.png")) == [
        "lr_subset.png", "recency.png", "recency_evolution.png", "recency_examples.png",
        "test_loss_per_epoch.png"]


def test_datasets_that_differ_in_augmentation_are_not_a_subset_grid(tmp_path):
    """The probe preset's (a) 50% plain vs (b) full augmented: no LR x subset verdict."""
    for k, (lr, subset) in enumerate([(0.25, 0.5), (4, 0.5), (0.25, 1.0), (4, 1.0)]):
        write_run(tmp_path / str(k), lr, subset, 128)
        m = json.loads((tmp_path / str(k) / "metrics.json").read_text())
        m["config"]["augment"] = subset == 1.0
        (tmp_path / str(k) / "metrics.json").write_text(json.dumps(m))
    assert "lr_subset" not in analyze([tmp_path], Thresholds())


def test_measured_curvature_per_batch_size_against_the_loss_onset(tmp_path):
    """An LR x batch grid with sharpness measured: the first factor whose ratio reaches the
    edge, next to the factor where the final train loss jumps."""
    for k, (batch, lr) in enumerate((b, v) for b in (128, 512) for v in (1, 4, 16)):
        jump = lr >= (16 if batch == 128 else 4)
        write_run(tmp_path / str(k), lr, 0.125, batch, train_loss=1.0 if jump else 0.01,
                  max_sharpness_ratio=lr / (16 if batch == 128 else 4), noise_scale_run=300.0)
    report = analyze([tmp_path], Thresholds())
    assert "lr_subset" not in report
    b128, b512 = report["curvature"]
    assert (b128["edge_from"], b128["loss_onset"]) == (16, 16)
    assert (b512["edge_from"], b512["loss_onset"]) == (4, 4)
    assert "at or before the loss's instability onset 4" in b512["reading"]
    text = render(report)
    assert "measured curvature, batch 512 (subset 0.125)" in text and "B_simple" in text
    # a loss onset the measurement does not reach is called out
    shallow = tmp_path / "shallow"
    for k, lr in enumerate((1, 4, 16)):
        write_run(shallow / str(k), lr, 0.125, 128, train_loss=1.0 if lr == 16 else 0.01,
                  max_sharpness_ratio=0.1)
    [entry] = analyze([shallow], Thresholds())["curvature"]
    assert "curvature does not explain it" in entry["reading"]


def test_replication_gives_each_seeds_optimum_and_counts_the_seeds_a_claim_holds_on(tmp_path):
    """Three seeds whose optima differ: per subset each seed's optimum with a t-interval, and
    the subset shift's claim on 2 of 3 seeds (not resolved)."""
    best = {0: {0.25: 4, 1.0: 0.5}, 1: {0.25: 2, 1.0: 0.5}, 2: {0.25: 0.5, 1.0: 0.5}}
    for seed, optima in best.items():
        make_sweep(tmp_path, 128, optima, edge=1e9, seeds=(seed,))
    report = analyze([tmp_path], Thresholds())
    rep = report["replication"]
    assert rep["seeds"] == [0, 1, 2]
    [entry] = rep["lr_subset"]
    small, large = entry["subsets"]
    assert small["optima"] == pytest.approx({0: 4, 1: 2, 2: 0.5})
    assert large["optima"] == pytest.approx({0: 0.5, 1: 0.5, 2: 0.5})
    assert small["geomean"] == pytest.approx(2 ** (1 / 3 * (2 + 1 - 1)))
    # log2 optima 2, 1, -1: sd sqrt(7/3), t(2) = 4.303
    half = 4.303 * math.sqrt(7 / 3) / math.sqrt(3)
    assert small["lo"] == pytest.approx(2 ** (2 / 3 - half), rel=1e-3)
    assert small["hi"] == pytest.approx(2 ** (2 / 3 + half), rel=1e-3)
    # where a new seed's optimum is expected: t sd sqrt(1 + 1/n), wider by sqrt(n + 1)
    pred = 4.303 * math.sqrt(7 / 3) * math.sqrt(4 / 3)
    assert small["pred_lo"] == pytest.approx(2 ** (2 / 3 - pred), rel=1e-3)
    assert small["pred_hi"] == pytest.approx(2 ** (2 / 3 + pred), rel=1e-3)
    assert large["lo"] == pytest.approx(0.5)
    claim = entry["claim"]
    assert claim["shifts"] == pytest.approx({0: 8, 1: 4, 2: 1})
    assert (claim["holds"], claim["seeds"]) == (2, 3)
    text = render(report)
    assert "replication over 3 seeds (0, 1, 2)" in text
    assert "holds on 2/3 seeds (x8, x4, x1): not resolved" in text
    assert f"{{{2 ** (2 / 3 - pred):.3g}, {2 ** (2 / 3 + pred):.3g}}}" in text
    # one seed: no replication section
    single = tmp_path / "single"
    make_sweep(single, 128, best[0], edge=1e9, seeds=(0,))
    assert "replication" not in analyze([single], Thresholds())


def test_replicated_curvature_counts_seeds_at_the_edge_and_compares_equal_eta_eff(tmp_path):
    """An LR x batch grid on 2 seeds: per factor the seeds at the edge and above 1 without
    diverging; B_simple's interval against each batch size; and the equal-eta_eff pairs
    (batch 128 at 4k against batch 512 at k)."""
    k = 0
    for seed in (0, 1):
        for batch in (128, 512):
            for lr in (1, 4, 16):
                ratio = lr / 16 * (1 if batch == 128 else 6) * (1 + 0.1 * seed)
                diverged = batch == 512 and lr == 16
                write_run(tmp_path / str(k), lr, 0.125, batch, seed=seed,
                          status="diverged" if diverged else "ok",
                          train_loss=math.nan if diverged else 0.01,
                          max_sharpness_ratio=ratio, noise_scale=300.0,
                          noise_scale_lo=200.0 if seed == 0 else 100.0, noise_scale_hi=450.0)
                k += 1
    rep = analyze([tmp_path], Thresholds())["replication"]
    b128, b512 = rep["curvature"]
    f16 = b128["factors"][2]
    assert [r["max_ratio"] for r in f16["seeds"]] == pytest.approx([1.0, 1.1])
    assert (f16["at_edge"], f16["above_1_stable"], f16["measured"]) == (2, 1, 2)
    f1, f4, f16b = b512["factors"]  # 6/16 = 0.375 and 0.4125; 1.5, 1.65; 6.0 and 6.6 diverged
    assert (f1["at_edge"], f4["at_edge"], f4["above_1_stable"]) == (0, 2, 2)
    assert f16b["above_1_stable"] == 0 and f16b["at_edge"] == 2
    # B_simple 200-450 and 100-450: below 512 on both seeds; above 128 on seed 0 only
    assert f4["noise"][512] == {"above": 0, "below": 2, "not resolved": 0}
    assert f4["noise"][128] == {"above": 1, "below": 0, "not resolved": 1}
    [pair, pair2] = sorted(rep["equal_eta"], key=lambda p: p["large"][1])
    assert (pair["small"], pair["large"]) == ((128, 4), (512, 1))
    assert pair2["small"] == (128, 16) and pair2["large"] == (512, 4)
    assert (pair2["larger_sharper"], pair2["seeds"]) == (2, 2)
    text = render(analyze([tmp_path], Thresholds()))
    assert "batch 128 at factor 16 vs batch 512 at factor 4: the larger batch's max ratio is " \
           "larger on 2/2 seeds (1.00 vs 1.50, 1.10 vs 1.65)" in text
    assert "B_simple against batch 512 (runs): above 0, below 6, not resolved 0" in text
