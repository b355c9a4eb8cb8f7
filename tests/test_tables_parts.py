"""The per-run tables in parts, and the change feed: an update rewrites only the parts whose runs
changed and reads only the run folders the feed names (or a scan finds), and its tables are
those of a full rebuild."""

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_tables_incremental import (
    assert_same,
    assert_update_equals_full,
    count_reads,
    make_run,
    make_sweep,
    read_tables,
)

from forgetting.tables import feed as pending
from forgetting.tables import manifest, parts
from forgetting.tables.results import collect


def part_files(table: os.PathLike) -> dict[str, int]:
    """Part file -> inode (a rewrite by rename gives a new one)."""
    return {p.name: p.stat().st_ino for p in sorted(table.iterdir()) if p.name[0] not in "._"}


@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setattr(parts, "PART_RUNS", 4)


def test_a_change_rewrites_only_its_part(tmp_path, small_parts):
    folder = tmp_path / "sweep"
    for n in range(20):
        make_run(folder / str(n), n, loss=1.0 + n)
    collect(folder)
    before = part_files(folder / "history.parquet")
    assert len(before) == 5  # 20 runs in parts of 4
    make_run(folder / "9", 9, loss=50.0)  # a rerun: in the change feed
    results, _ = collect(folder)
    after = part_files(folder / "history.parquet")
    assert after.keys() == before.keys()
    assert [name for name in after if after[name] != before[name]] == [sorted(before)[2]]
    history = pd.read_parquet(folder / "history.parquet")
    assert list(history["run_dir"].drop_duplicates()) == [str(folder / str(n)) for n in range(20)]
    assert set(history[history["run_dir"] == str(folder / "9")]["test_loss"]) == {50.0}
    assert_update_equals_full(folder)


def test_a_growing_part_is_split_between_its_neighbours(tmp_path, small_parts):
    folder = make_sweep(tmp_path / "sweep", 8)
    for n in range(8, 30):  # appended: the last part grows past twice PART_RUNS, then splits
        make_run(folder / str(n), n)
        collect(folder)
    layout = manifest.load(folder)[1]["parts"]["history"]["parts"]
    assert all(p[4] <= 3 * 8 for p in layout)  # at most 2 * PART_RUNS runs of 3 epochs a part
    assert [p[0] for p in layout] == sorted(p[0] for p in layout)
    for n in (3, 4, 5):  # reruns in the middle: folders sorted beside theirs
        make_run(folder / f"{n}-rerun", n, loss=0.25)
    collect(folder)
    history = pd.read_parquet(folder / "history.parquet")
    assert len(history) == 30 * 3
    assert_update_equals_full(folder)


def test_a_finished_folder_rewritten_by_hand_is_seen_by_a_scan(tmp_path, monkeypatch):
    folder = make_sweep(tmp_path / "sweep", 6)
    reads = count_reads(monkeypatch)
    make_run(folder / "4", 4, loss=8.0, announce=False)  # copied over, say: not in the feed
    make_run(folder / "6", 6, announce=False)  # a new folder: the listing finds it
    results, _ = collect(folder)
    assert reads == ["6"] and len(results) == 7
    assert results.set_index("run_dir").loc[str(folder / "4"), "test_loss"] == 1.0
    results, _ = collect(folder, scan=True)
    assert reads == ["6", "4"]
    assert results.set_index("run_dir").loc[str(folder / "4"), "test_loss"] == 8.0


def test_a_run_feeds_every_folder_above_it_that_keeps_tables(tmp_path):
    outer, inner = tmp_path / "study", tmp_path / "study" / "sweep"
    make_run(inner / "0", 0)
    collect(inner)
    collect(outer)
    make_run(inner / "1", 1, announce=False)
    assert pending.announce(inner / "1") == [inner, outer]
    assert pending.pending(inner) == ["1"] and pending.pending(outer) == ["sweep/1"]
    assert len(collect(outer)[0]) == 2 and pending.pending(outer) == []


def test_the_single_history_file_of_an_older_version_becomes_parts(tmp_path):
    folder = make_sweep(tmp_path / "sweep", 3)
    single = pd.read_parquet(folder / "history.parquet")
    (folder / ".results.manifest.parquet").unlink()  # as an older version left it
    history = folder / "history.parquet"
    os.rename(history, tmp_path / "parts")
    pq.write_table(pa.Table.from_pandas(single, preserve_index=False), history)
    collect(folder)
    assert history.is_dir()
    pd.testing.assert_frame_equal(pd.read_parquet(history), single)


def test_a_part_changed_by_someone_else_is_laid_out_again(tmp_path, small_parts):
    folder = make_sweep(tmp_path / "sweep", 12)
    before = read_tables(folder)
    first = sorted((folder / "history.parquet").iterdir())[0]
    pq.write_table(pa.table({"run_dir": ["elsewhere"], "epoch": [1]}), first)  # not ours
    results, _ = collect(folder)
    assert results.attrs["folders_read"] == 0
    assert_same(before, read_tables(folder))


def test_a_run_folder_collected_alone_keeps_its_own_history_file(tmp_path):
    run = make_run(tmp_path / "run", 0)
    own = pd.read_parquet(run / "history.parquet")
    results, _ = collect(run)
    assert len(results) == 1 and (run / "results.parquet").is_file()
    assert (run / "history.parquet").is_file()
    pd.testing.assert_frame_equal(pd.read_parquet(run / "history.parquet"), own)


def test_collect_scan_on_the_command_line_finds_a_folder_edited_by_hand(tmp_path, capsys):
    from forgetting.collect import main

    folder = tmp_path / "sweep"
    for n in range(3):
        make_run(folder / str(n), n)
    assert main([str(folder)]) == 0
    make_run(folder / "1", 1, loss=4.0, announce=False)
    assert main([str(folder)]) == 0
    assert pd.read_parquet(folder / "results.parquet")["test_loss"].tolist() == [1.0, 1.0, 1.0]
    assert main([str(folder), "--scan"]) == 0
    assert pd.read_parquet(folder / "results.parquet")["test_loss"].tolist() == [1.0, 4.0, 1.0]
    assert "3 runs" in capsys.readouterr().out
