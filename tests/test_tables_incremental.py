"""Incremental tables: an update re-reads only changed run folders and gives the same tables
as a full rebuild; a damaged metrics.json never replaces an ok row silently (array tasks'
updates: test_tables_pending.py)."""

import functools
import json
import os
import random
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forgetting.tables import feed as pending
from forgetting.tables import manifest, parts
from forgetting.tables.results import TableShrinks, collect

TABLES = ["results.parquet", "history.parquet", "recency.parquet"]


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_run(folder: Path, n: int, status: str = "ok", loss: float = 1.0, probe: bool = False,
             diag: bool = False, seed: int = 0, announce: bool = True) -> Path:
    """A finished run folder of point n: metrics.json, history.parquet, Hydra's files; added
    to the change feed of the tables above it as a run does (unless not `announce`)."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    lr, subset = 2 ** (n % 4), [0.25, 0.5, 1.0][n % 3]
    (folder / ".hydra" / "overrides.yaml").write_text(
        f"- lr={lr}\n- subset={subset}\n- seed={seed + n // 12}\n- quiet=true\n")
    config = {"lr": lr, "subset": subset, "seed": seed + n // 12, "batch_size": 64,
              "model": {"name": "tiny", "width": 0.5}}
    (folder / ".hydra" / "config.yaml").write_text(json.dumps(config))
    metrics = {"status": status, "config_hash": f"{n:016x}", "test_loss": loss,
               "train_loss": loss / 2, "config": config, "choices": {"recipe": "part1"}}
    if status == "failed":
        metrics["error"] = "RuntimeError: boom"
    write_atomic(folder / "metrics.json", json.dumps(metrics).encode())
    rows = [{"epoch": e, "train_loss": loss / (e + 1), "test_loss": loss} for e in range(1, 4)]
    if diag:
        rows = [{**r, "sharpness": 1.5 * e} for e, r in enumerate(rows)]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    write_atomic(folder / "history.parquet", sink.getvalue().to_pybytes())
    if probe:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist([{"steps_ago": s, "loss": 0.1 * s}
                                             for s in range(3)]), sink)
        write_atomic(folder / "recency.parquet", sink.getvalue().to_pybytes())
    if announce:
        pending.announce(folder)
    return folder


def read_tables(folder: Path) -> dict:
    return {name: pd.read_parquet(folder / name) if (folder / name).exists() else None
            for name in TABLES}


def assert_same(a: dict, b: dict) -> None:
    for name in TABLES:
        assert (a[name] is None) == (b[name] is None), name
        if a[name] is not None:
            pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def make_sweep(folder: Path, points: int) -> Path:
    """A sweep folder of finished points 0 .. points - 1, collected once."""
    for n in range(points):
        make_run(folder / str(n), n)
    collect(folder)
    return folder


def count_reads(monkeypatch) -> list[str]:
    """The run folders read from now on (manifest.read_entry's calls), in order."""
    reads = []
    original = manifest.read_entry
    monkeypatch.setattr(manifest, "read_entry",
                        lambda root, rel, sig: reads.append(rel) or original(root, rel, sig))
    return reads


def assert_update_equals_full(folder: Path, replace: bool = False) -> dict:
    """The tables an update left in `folder` equal those a full rebuild writes; returns them."""
    incremental = read_tables(folder)
    collect(folder, replace=replace, full=True)
    assert_same(incremental, read_tables(folder))
    return incremental


def fresh_rebuild(folder: Path, tmp: Path) -> dict:
    """The tables of a copy of the run folders alone (no manifest, no earlier tables)."""
    copy = tmp / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".results*", "*.parquet.tmp",
                                                                 *TABLES, "results.csv"))
    for path in folder.rglob("*.parquet"):  # the run folders' own tables
        if path.parent != folder and path.is_file() and not path.parent.name.endswith(".parquet"):
            shutil.copy2(path, copy / path.relative_to(folder))
    collect(copy)
    tables = read_tables(copy)
    for table in tables.values():  # run_dir names the copy
        if table is not None and "run_dir" in table:
            table["run_dir"] = table["run_dir"].str.replace(str(copy), str(folder), regex=False)
    return tables


@pytest.mark.parametrize("runs_per_part", [1024, 4])
@pytest.mark.parametrize("mode", ["feed", "scan"])
def test_incremental_tables_equal_full_rebuild_under_random_changes(tmp_path, monkeypatch, mode,
                                                                    runs_per_part):
    """An update (the change feed, or a scan of folders rewritten without it) gives the tables
    of a full rebuild, with the per-run tables in one part or in many (split as they grow)."""
    monkeypatch.setattr(parts, "PART_RUNS", runs_per_part)
    rng = random.Random(0)
    folder = tmp_path / "sweep"
    make = functools.partial(make_run, announce=mode == "feed")
    for n in range(30):
        make(folder / str(n), n, loss=1 + n / 10, probe=n % 5 == 0)
    collect(folder)
    next_point = 30
    for step in range(9):
        points = sorted((p for p in folder.iterdir() if p.name.isdigit()),
                        key=lambda p: int(p.name))
        op = ["change", "delete", "fail", "add", "diag", "unfinished", "rerun", "change",
              "delete"][step]
        victims = rng.sample(points, 3)
        for run in victims:
            n = int(run.name)
            if op == "change":
                make(run, n, loss=rng.random() * 3, probe=rng.random() < 0.5)
            elif op == "delete":
                shutil.rmtree(run)
            elif op == "fail":  # the point becomes failed
                make(run, n, status="failed", loss=float("nan"))
            elif op == "diag":  # a new history column in some runs
                make(run, n, loss=2.0, diag=True)
            elif op == "unfinished":  # metrics gone, Hydra's files there (an edit by hand:
                (run / "metrics.json").unlink()  # the feed is told, or a scan finds it)
                if mode == "feed":
                    pending.announce(run)
            elif op == "rerun":  # the same config again, newer, in a folder sorted beside it
                make(folder / f"{n}-rerun", n, loss=0.25)
        if op == "add":
            for _ in range(4):
                make(folder / str(next_point), next_point, loss=0.5)
                next_point += 1
        replace = op == "delete"
        collect(folder, replace=replace, scan=mode == "scan")
        incremental = assert_update_equals_full(folder, replace)
        assert_same(incremental, fresh_rebuild(folder, tmp_path))
        assert len(incremental["results.parquet"]) == len(  # one row per config (point)
            {p.name.split("-")[0] for p in folder.iterdir() if p.name[0].isdigit()})


def test_only_changed_folders_are_read(tmp_path, monkeypatch):
    folder = make_sweep(tmp_path / "sweep", 20)
    reads = count_reads(monkeypatch)
    collect(folder)
    assert reads == []
    make_run(folder / "7", 7, loss=5.0)
    results, _ = collect(folder)
    assert reads == ["7"]
    assert results.set_index("run_dir").loc[str(folder / "7"), "test_loss"] == 5.0


def test_damaged_metrics_keeps_the_ok_row_with_one_warning(tmp_path, capsys):
    folder = make_sweep(tmp_path / "sweep", 3)
    capsys.readouterr()
    damaged = folder / "1" / "metrics.json"
    write_atomic(damaged, damaged.read_bytes()[:40])  # truncated (not by a run: a scan sees it)
    results, _ = collect(folder, scan=True)
    row = results.set_index("run_dir").loc[str(folder / "1")]
    assert row["status"] == "ok" and row["test_loss"] == 1.0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {damaged}: unreadable")
    results, _ = collect(folder, full=True)  # the full rebuild keeps it too
    assert results.set_index("run_dir").loc[str(folder / "1"), "status"] == "ok"
    results, _ = collect(folder, replace=True)
    row = results.set_index("run_dir").loc[str(folder / "1")]
    assert row["status"] == "failed" and "unreadable metrics.json" in row["error"]


def test_a_deleted_table_is_rebuilt_from_the_run_folders(tmp_path):
    folder = make_sweep(tmp_path / "sweep", 3)
    shutil.rmtree(folder / "2")
    with pytest.raises(TableShrinks):
        collect(folder)
    (folder / "results.parquet").unlink()  # stale manifest: rebuilt from disk
    results, _ = collect(folder)
    assert len(results) == 2 and len(pd.read_parquet(folder / "history.parquet")) == 6


def test_a_deleted_history_is_gathered_again_with_the_rows_from_the_unchanged_folders(tmp_path):
    folder = tmp_path / "sweep"
    for n in range(4):
        make_run(folder / str(n), n, loss=1 + n, probe=n == 2)
    collect(folder)
    before = read_tables(folder)
    shutil.rmtree(folder / "history.parquet")  # the manifest stays valid: no row JSON in it
    shutil.rmtree(folder / "recency.parquet")
    results, _ = collect(folder)
    assert results.attrs["folders_read"] == 0
    assert_same(before, read_tables(folder))


def test_examples_tables_are_read_lazily_from_the_chosen_runs(tmp_path):
    import pyarrow.dataset as ds

    from forgetting.tables.gather import run_files

    folder = tmp_path / "sweep"
    for n in range(3):
        run = make_run(folder / str(n), n)
        if n != 1:
            pq.write_table(pa.table({"example": [0, 1], "events": [n, n]}),
                           run / "examples.parquet")
    collect(folder)
    entries, _ = manifest.load(folder)
    files = run_files(folder, manifest.chosen(entries), "examples")
    assert files == [str(folder / "0" / "examples.parquet"), str(folder / "2" / "examples.parquet")]
    assert sorted(ds.dataset(files).to_table()["events"].to_pylist()) == [0, 0, 2, 2]
    assert not (folder / "examples.parquet").exists()  # never gathered


def test_a_folder_spelled_otherwise_or_moved_keeps_its_cache(tmp_path, monkeypatch):
    folder = make_sweep(tmp_path / "sweep", 4)
    moved = tmp_path / "moved"
    folder.rename(moved)
    monkeypatch.chdir(tmp_path)
    reads = count_reads(monkeypatch)
    make_run(Path("moved") / "2", 2, loss=7.0)
    collect(Path("moved"))  # relative, and moved
    assert reads == ["2"]
    incremental = read_tables(moved)
    assert set(incremental["history.parquet"]["run_dir"]) == {f"moved/{n}" for n in range(4)}
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert_update_equals_full(Path("moved"))
