"""The table's columns and pivots: each config key once, the overrides as one string, no
run-time-only columns, group choices of unfinished runs, pivots that never average over runs of
different configs."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from forgetting.tables.pivots import MixedCells, pivot, pivot_table
from forgetting.tables.results import build_tables
from helpers import run_cli


def hydra_files(run: Path, overrides: list[str], choices: dict, config: dict) -> None:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    hydra = {"hydra": {"runtime": {"choices": {**choices, "hydra/launcher": "basic"}}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))


def finished(run: Path, overrides: list[str], choices: dict, config: dict, **metrics) -> None:
    hydra_files(run, overrides, choices, config)
    record = {"status": "ok", "config": config, "choices": choices, "test_loss": 1.0, **metrics}
    (run / "metrics.json").write_text(json.dumps(record))


def test_unfinished_runs_take_their_group_choices_from_hydra_yaml(tmp_path):
    config = {"lr": 1, "subset": 0.5, "model": {"name": "tiny", "width": 1.0}}
    choices = {"sweep": "quick", "recipe": "part1"}
    finished(tmp_path / "0", ["+sweep=quick", "lr=1"], choices, config)
    hydra_files(tmp_path / "1", ["+sweep=quick", "lr=2"], choices, {**config, "lr": 2})
    results, _, swept = build_tables([tmp_path])  # run 1 was killed: no metrics.json
    assert results["sweep"].tolist() == ["quick", "quick"]
    assert results["recipe"].tolist() == ["part1", "part1"]
    assert results["status"].tolist() == ["ok", "interrupted"]
    text = pivot(results, swept)
    assert "None" not in text and "nan" not in text.lower() and "sweep" not in text


def test_config_keys_are_columns_once_and_overrides_one_string(tmp_path):
    config = {"lr": 1, "subset": 0.5, "model": {"name": "tiny", "width": 0.5},
              "data": {"name": "synthetic", "root": "/x"}, "quiet": True}
    overrides = ["lr=1", "model.width=0.5", "quiet=true", "data.root=/x", "diag.every=2"]
    finished(tmp_path / "0", overrides, {}, {**config, "diag": {"every": 2}})
    results, _, swept = build_tables([tmp_path])
    assert results["width"].tolist() == [0.5]
    for absent in ["model.width", "quiet", "data.root"]:
        assert absent not in results, absent
    assert results["diag.every"].tolist() == [2]  # what is measured stays a column
    assert results["overrides"].tolist() == [" ".join(overrides)]
    assert swept == ["lr", "width", "diag.every"]


def table(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"status": ["ok"] * n, "lr": [1] * n, "subset": [0.5] * n, "seed": list(range(n)),
            "model": ["tiny"] * n, "overrides": [""] * n, "run_dir": [f"r{i}" for i in range(n)]}
    return pd.DataFrame({**base, **columns})


def test_pivot_table_averages_seeds_only():
    frame = table(test_loss=[1.0, 2.0, 3.0])
    out = pivot_table(frame, index="subset", columns="lr")
    assert out.loc[0.5, 1] == pytest.approx(2.0)


def test_pivot_table_refuses_cells_of_different_configs():
    frame = table(test_loss=[1.0, 2.0, 3.0], model=["tiny", "tiny", "resnet9"])
    frame["overrides"] = ["", "", "+sweep=b"]
    frame["sweep"] = [None, None, "b"]
    with pytest.raises(MixedCells) as e:
        pivot_table(frame, index="subset", columns="lr")
    assert str(e.value).splitlines() == [
        "pivot of test_loss by subset x lr: cells mix runs that differ in model, sweep; add "
        "them to index= or select one value first"]
    assert pivot_table(frame, index=["subset", "model", "sweep"], columns="lr").size == 2


def test_text_pivot_splits_what_differs_instead_of_averaging():
    frame = table(test_loss=[1.0, 3.0], model=["tiny", "resnet9"])
    text = pivot(frame, ["lr", "subset"])
    assert "by subset x model (rows)" in text
    assert "1.0000" in text and "3.0000" in text and "2.0000" not in text


@pytest.mark.slow
def test_collect_cli_full_and_damaged_file(tmp_path):
    config = {"lr": 1, "subset": 0.5, "model": {"name": "tiny", "width": 1.0}}
    for n in range(3):
        finished(tmp_path / str(n), [f"lr={n + 1}"], {}, {**config, "lr": n + 1},
                 config_hash=f"{n:016x}")
    assert run_cli(str(tmp_path), module="forgetting.collect").returncode == 0
    damaged = tmp_path / "1" / "metrics.json"
    damaged.write_text(damaged.read_text()[:30])
    proc = run_cli(str(tmp_path), "--full", module="forgetting.collect")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {damaged}: unreadable")
    assert (pd.read_parquet(tmp_path / "results.parquet")["status"] == "ok").all()


def test_a_manifest_of_another_row_format_is_read_again_once(tmp_path, monkeypatch):
    """Tables written before a column existed (here: what a run trained in) get it on the
    next plain update: a manifest of another row format is not used, every folder is read
    once, and the update after that reads none again."""
    from forgetting import tables
    from forgetting.tables import manifest, rows

    sweep = tmp_path / "sweep"
    for k in range(4):
        finished(sweep / str(k), [f"lr={k + 1}"], {}, {"lr": k + 1}, precision="bf16",
                 threads=2)
    with monkeypatch.context() as older:  # the version before: no such columns, format 1
        older.setattr(rows, "USED_COLUMNS", {})
        older.setattr(manifest, "ROW_FORMAT", 1)
        results, _ = tables.update(sweep)
    assert "precision_used" not in results
    results, _ = tables.update(sweep)
    assert list(results["precision_used"]) == ["bf16"] * 4
    assert results.attrs["folders_read"] == 4
    results, _ = tables.update(sweep)
    assert results.attrs["folders_read"] == 0 and list(results["threads_used"]) == [2] * 4
