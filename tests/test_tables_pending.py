"""Array tasks' table updates: a task reads its own folder only, leaves it pending until enough
have finished, and one writer merges every pending folder; the tables equal a full rebuild."""

import pandas as pd
import pytest
from test_tables_incremental import (
    assert_update_equals_full,
    make_run,
    make_sweep,
)

from forgetting.tables import add_pending, deferred, manifest, update_after_run
from forgetting.tables import feed as pending
from forgetting.tables.results import build_tables, collect


@pytest.mark.parametrize("points", [20, 200])
def test_array_task_update_reads_its_own_folder_only(tmp_path, monkeypatch, points):
    """Reads per task do not depend on the sweep's size: none while its folder waits, and the
    pending folders only when a task merges them; no listing."""
    folder = make_sweep(tmp_path / "sweep", points)
    counts = {"read_entry": 0, "scan": 0}
    for name in counts:
        original = getattr(manifest, name)

        def counted(*args, _name=name, _original=original):
            counts[_name] += 1
            return _original(*args)
        monkeypatch.setattr(manifest, name, counted)
    make_run(folder / "3", 3, loss=9.0)
    make_run(folder / str(points), points, loss=0.5, announce=False)  # a new point, running
    first = update_after_run(folder, folder / "3")
    assert not first.wrote and first.pending == 1 and counts["read_entry"] == 0
    last = update_after_run(folder, folder / str(points), points + 1)  # the sweep's last
    assert last.wrote and last.folders_read == 2
    assert counts == {"read_entry": 2, "scan": 0}
    assert sum(last.counts.values()) == points + 1
    monkeypatch.undo()
    incremental = assert_update_equals_full(folder)
    assert incremental["results.parquet"].set_index("run_dir").loc[
        str(folder / "3"), "test_loss"] == 9.0


def test_pending_folders_are_merged_by_one_writer(tmp_path):
    folder = make_sweep(tmp_path / "sweep", 4)
    make_run(folder / "4", 4)
    make_run(folder / "5", 5)
    add_pending(folder, folder / "4")  # a task that has not reached the lock yet
    update = update_after_run(folder, folder / "5", points=6)
    assert update.wrote and update.folders_read == 2  # both merged by this writer
    assert len(pd.read_parquet(folder / "results.parquet")) == 6
    assert not (folder / ".results.pending").exists()
    again = update_after_run(folder, folder / "5", points=6)  # a rerun of a merged point
    assert again.wrote and again.folders_read == 1


def test_tasks_leave_their_folders_pending_until_enough_have_finished(tmp_path, monkeypatch):
    """Below DEFER_MIN pending folders (and one in DEFER_SHARE of the rows) a task writes
    nothing; the task that reaches it merges them all, as a collect would."""
    monkeypatch.setattr(deferred, "DEFER_MIN", 5)
    folder = make_sweep(tmp_path / "sweep", 10)
    before = (folder / "results.parquet").stat().st_mtime_ns
    for n in range(10, 14):
        make_run(folder / str(n), n)
        update = update_after_run(folder, folder / str(n), points=100)
        assert not update.wrote and update.pending == n - 9
        assert sum(update.counts.values()) == 10  # the table as written
    assert (folder / "results.parquet").stat().st_mtime_ns == before
    assert pending.pending(folder) == ["10", "11", "12", "13"]
    # analyze, plot and report gather from the run folders: the pending ones included
    results, _, _ = build_tables([folder])
    assert len(results) == 14
    make_run(folder / "14", 14)
    update = update_after_run(folder, folder / "14", points=100)
    assert update.wrote and update.folders_read == 5 and sum(update.counts.values()) == 15
    assert pending.pending(folder) == []
    assert_update_equals_full(folder)


def test_a_collect_merges_the_pending_folders_and_keeps_later_ones(tmp_path, monkeypatch):
    folder = make_sweep(tmp_path / "sweep", 6)
    make_run(folder / "6", 6)
    assert not update_after_run(folder, folder / "6").wrote
    original = pending.take_pending

    def late(f):  # a task that finishes once collect has taken the pending folders
        taken = original(f)
        make_run(folder / "7", 7)
        add_pending(folder, folder / "7")
        return taken
    monkeypatch.setattr(pending, "take_pending", late)
    results, _ = collect(folder)
    assert len(results) == 8  # its scan saw 7 as well
    assert pending.pending(folder) == ["7"]  # still pending: merged again by a later writer
    monkeypatch.undo()
    assert len(collect(folder)[0]) == 8 and pending.pending(folder) == []
