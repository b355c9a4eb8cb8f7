"""forgetting.bench runs with tiny settings and writes the documented JSON.

Behaviour only: the figures must be positive and finite, never fast.
"""

import json
import math
import statistics

import pytest

from forgetting.bench import steps as bench


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_bench_writes_documented_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = bench.main(["--device", "cpu", "--widths", "0.25", "--precisions", "fp32",
                         "--batch-size", "32", "--train-size", "96", "--warmup", "1",
                         "--steps", "2", "--repeats", "2", "--workers", "0", "--quick",
                         "--sweep-images", "256",
                         "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["device_type"] == "cpu" and data["device"]
    assert [(c["width"], c["precision"]) for c in data["cases"]] == [(0.25, "fp32")]
    for case in data["cases"]:
        for key in ("ours_img_s", "baseline_img_s", "ratio", "ceiling_img_s", "pipeline_share"):
            assert _positive(case[key]), key
        low, high = case["ours_spread"]
        assert low <= case["ours_img_s"] <= high
        # ratios are medians of per-round ratios: every round timed every contender
        t = case["seconds"]
        assert {len(v) for v in t.values()} == {data["repeats"]}
        assert set(t) == {"ours", "ceiling", "pipeline", "baseline_w0"}
        best = t["baseline_w0"]  # the only baseline here (--workers 0)
        assert case["ratio"] == pytest.approx(
            statistics.median(b / o for o, b in zip(t["ours"], best)))
        assert case["of_ceiling"] == pytest.approx(
            statistics.median(c / o for o, c in zip(t["ours"], t["ceiling"])))
        assert set(case["baseline_by_workers"]) == {"0"}
    assert _positive(data["pipeline_share"]) and _positive(data["startup_s"])
    assert data["startup"]["startup_s"] < data["startup"]["process_s"]
    for launcher in ("basic", "joblib_2"):
        assert data["sweeps"][launcher]["runs"] == 12
        assert _positive(data["sweeps"][launcher]["runs_per_hour"])
    printed = capsys.readouterr().out
    assert "img/s" in printed and "start-up:" in printed and "runs/h" in printed


def test_bench_without_baseline_startup_and_sweep(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--device", "cpu", "--widths", "0.25", "--precisions", "fp32",
                "--batch-size", "16", "--train-size", "32", "--warmup", "0", "--steps", "1",
                "--repeats", "1", "--no-startup", "--no-baseline", "--no-sweep",
                "--json", str(out)])
    data = json.loads(out.read_text())
    assert "startup_s" not in data and "sweeps" not in data
    (case,) = data["cases"]
    assert _positive(case["ours_img_s"]) and "ratio" not in case


@pytest.mark.slow
def test_bench_packed_times_every_way_and_writes_its_table(tmp_path, capsys):
    from forgetting.bench import packed

    out = tmp_path / "packed.json"
    result = packed.main(["--device", "cpu", "--widths", "0.125", "--ks", "1,2",
                          "--train-size", "128", "--test-size", "64", "--batch-size", "32",
                          "--rounds", "2", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert set(data["seconds"]) == {"sequential|0.125|1", "packed|0.125|1",
                                    "sequential|0.125|2", "packed|0.125|2",
                                    "processes|0.125|2"}
    assert all(len(v) == 2 and all(_positive(s) for s in v) for v in data["seconds"].values())
    by_k = {row["k"]: row for row in data["table"]}
    assert by_k[1]["processes"] is None and _positive(by_k[2]["processes"])
    for row in by_k.values():
        assert row["packed/seq"] == pytest.approx(row["packed"] / row["sequential"])
        assert row["sequential"] == pytest.approx(
            row["k"] * 3600 / statistics.median(data["seconds"][f"sequential|0.125|{row['k']}"]))
    assert "packed/seq" in capsys.readouterr().out


def test_bench_diag_reports_each_sharpness_option_against_the_default(tmp_path, capsys):
    """`bench --diag` with the cheaper sharpness options, tiny: every option has its cost per
    measurement and lambda_max's difference from the default's at the same weights."""
    from forgetting.bench import diag

    out = tmp_path / "diag.json"
    result = diag.main(["--train-size", "64", "--test-size", "32", "--epochs", "2",
                        "--rounds", "1", "--width", "0.0625", "--batch-size", "32",
                        "--threads", "1", "--only", ",".join(diag.OPTIONS),
                        "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert set(data["overhead"]) == {"sharpness", *diag.OPTIONS}  # the reference added
    for name, row in data["sharpness"].items():
        assert row["products"] >= 1
        assert row["steps_per_measurement"] == pytest.approx(row["epochs_per_measurement"] * 2)
        if name != "sharpness":
            assert row["same_weights"] is True
            assert 0 <= row["rel_diff_median"] <= row["rel_diff_max"] < 1
    assert data["sharpness_products"] == data["sharpness"]["sharpness"]["products"]
    assert "training steps per measurement" in capsys.readouterr().out
