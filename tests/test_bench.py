"""Tests for forgetting.bench: it runs with tiny settings and writes the documented JSON.

Behaviour only: the figures must be positive and finite, never fast.
"""

import json
import math

from forgetting import bench


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_writes_documented_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = bench.main(["--device", "cpu", "--widths", "0.25", "--precisions", "fp32",
                         "--batch-size", "32", "--train-size", "96", "--warmup", "1",
                         "--steps", "2", "--repeats", "2", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["device"] == "cpu"
    assert [(c["width"], c["precision"]) for c in data["cases"]] == [(0.25, "fp32")]
    for case in data["cases"]:
        assert {"width", "precision", "ours_img_s", "spread", "pipeline_share"} <= set(case)
        low, high = case["spread"]
        assert all(_positive(v) for v in (case["ours_img_s"], low, high))
        assert low <= case["ours_img_s"] <= high
        assert _positive(case["pipeline_share"])
    assert _positive(data["startup_s"])
    assert data["startup"]["startup_s"] < data["startup"]["process_s"]
    printed = capsys.readouterr().out
    assert "img/s" in printed and "start-up:" in printed


def test_bench_without_startup(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--device", "cpu", "--widths", "0.25", "--precisions", "fp32",
                "--batch-size", "16", "--train-size", "32", "--warmup", "0", "--steps", "1",
                "--repeats", "1", "--no-startup", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["startup_s"] is None
    assert len(data["cases"]) == 1 and _positive(data["cases"][0]["ours_img_s"])
