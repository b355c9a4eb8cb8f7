"""bench --scale runs end to end on a few fabricated points (figures not asserted, counts are)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from forgetting.bench.scale import exponent, main


def test_growth_exponent_is_the_log_log_slope():
    assert exponent([10, 100, 1000], [1, 10, 100]) == pytest.approx(1)
    assert exponent([10, 100, 1000], [2, 2, 2]) == pytest.approx(0)


@pytest.mark.slow
def test_scale_bench_counts_reads_and_writes_its_json(tmp_path):
    template = tmp_path / "template"
    (template / ".hydra").mkdir(parents=True)
    config = {"lr": 1, "subset": 1.0, "seed": 0, "batch_size": 64,
              "model": {"name": "tiny", "width": 0.25}}
    (template / "metrics.json").write_text(json.dumps(
        {"status": "ok", "config": config, "config_hash": "0" * 16, "test_loss": 2.0,
         "choices": {"recipe": "part1"}}))
    pq.write_table(pa.table({"epoch": [1, 2], "train_loss": [2.0, 1.5]}),
                   template / "history.parquet")
    (template / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (template / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {}}))
    out = tmp_path / "scale.json"
    report = main(["--sizes", "6", "12", "--epochs", "3", "--template", str(template),
                   "--dir", str(tmp_path), "--json", str(out)])
    assert json.loads(out.read_text())["sizes"] == [6, 12]
    for size, result in zip([6, 12], report["results"]):
        assert result["full"]["folders_read"] == size
        assert result["one_changed"]["folders_read"] == 1  # the change feed's
        assert result["one_scan"]["folders_read"] == 1  # not in the feed: found by the scan
        assert result["array_task"]["folders_read"] == 0  # left pending
        assert result["merged"] == size  # fewer points than a task may leave: all of them,
        assert result["array_merge"]["folders_read"] == size  # merged by the sweep's last task
        assert result["table_mb"]["results.parquet"] > 0
        assert result["table_mb"]["history.parquet"] > 0  # its parts
    assert set(report["growth"]) == {"full", "one_changed", "one_scan", "array_task",
                                     "array_merge", "analyze", "plot"}
