"""Faults the sweep store survives: a run killed between its metrics.json and the feed, a
sweep folder copied or moved, a killed collect's temporaries, metrics.json of the wrong types,
a point killed without a checkpoint, a table collected while a run was unfinished."""

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_claims import tiny_cfg  # noqa: F401  (a fixture)
from test_tables_incremental import (
    assert_same,
    assert_update_equals_full,
    make_sweep,
    read_tables,
    write_atomic,
)

from forgetting import tables
from forgetting.rundir.schema import wrong_key
from forgetting.runs.job import run_one
from forgetting.tables import rows
from helpers import one_line_error, run_cli, write_run

# a process that names the run folder in the feed and writes its metrics.json
# (forgetting.runs.job.write_metrics), SIGKILLed right after metrics.json's rename
KILLED_AFTER_RENAME = """
import json, os, signal, sys
from pathlib import Path
from forgetting.runs import job

written = job.atomic_write_json

def write_then_die(path, obj):
    written(path, obj)
    os.kill(os.getpid(), signal.SIGKILL)

job.atomic_write_json = write_then_die
job.write_metrics(Path(sys.argv[1]), json.loads(sys.argv[2]))
"""


def test_a_run_killed_right_after_its_metrics_landed_is_in_the_next_update(tmp_path):
    folder = make_sweep(tmp_path / "sweep", 3)
    run = folder / "1"
    metrics = {**json.loads((run / "metrics.json").read_text()), "test_loss": 9.0}
    proc = run_cli("-c", KILLED_AFTER_RENAME, str(run), json.dumps(metrics), module=None)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert json.loads((run / "metrics.json").read_text())["test_loss"] == 9.0
    results, _ = tables.update(folder)  # a plain update: no --scan, no --full
    assert results.set_index("run_dir").loc[str(run), "test_loss"] == 9.0
    assert pd.read_parquet(folder / "results.parquet").set_index("run_dir").loc[
        str(run), "test_loss"] == 9.0


# an update of the sweep folder argv[1] that SIGKILLs itself right after its argv[2]-th rename
# (os.replace: every atomic write; os.rename: the parts' folders); argv[2] = 0: prints the
# number of renames an update makes
KILLED_COLLECT = """
import os, signal, sys
from pathlib import Path
from forgetting import tables

at, done = int(sys.argv[2]), []
for name in ("replace", "rename"):
    real = getattr(os, name)
    def renamed(src, dst, *a, _real=real, **k):
        _real(src, dst, *a, **k)
        done.append(dst)
        if len(done) == at:
            os.kill(os.getpid(), signal.SIGKILL)
    setattr(os, name, renamed)
tables.update(Path(sys.argv[1]))
print(len(done))
"""


@pytest.mark.slow
def test_a_collect_killed_after_any_rename_leaves_tables_the_next_update_mends(tmp_path):
    """The tables, the rows, the parts and the manifest are each renamed into place: a
    collect killed right after any one of them leaves a state from which a plain update
    gives the new rows and the same tables as --full."""
    folder = make_sweep(tmp_path / "sweep", 6)

    def change(loss: float) -> None:  # two runs rewrite their history and metrics, as runs do
        for run in (folder / "1", folder / "4"):
            history = pd.read_parquet(run / "history.parquet").assign(test_loss=loss)
            history.to_parquet(run / "history.parquet")
            metrics = json.loads((run / "metrics.json").read_text())
            tables.announce(run)
            write_atomic(run / "metrics.json", json.dumps({**metrics, "test_loss": loss}).encode())

    change(7.0)
    proc = run_cli("-c", KILLED_COLLECT, str(folder), "0", module=None)
    renames = int(proc.stdout.split()[-1])
    assert proc.returncode == 0 and renames >= 5, proc.stderr  # a part, 3 files, manifest
    for k in range(1, renames + 1):
        change(10.0 + k)
        proc = run_cli("-c", KILLED_COLLECT, str(folder), str(k), module=None)
        assert proc.returncode == -signal.SIGKILL, (k, proc.stderr)
        results, _ = tables.update(folder)
        losses = results.set_index("run_dir")["test_loss"]
        assert losses[str(folder / "1")] == losses[str(folder / "4")] == 10.0 + k, k
        history = assert_update_equals_full(folder)["history.parquet"]
        assert set(history[history["run_dir"] == str(folder / "1")]["test_loss"]) == {10.0 + k}


def test_a_point_killed_without_a_checkpoint_is_interrupted_and_trained_on_rerun(tmp_path,
                                                                                 tiny_cfg):  # noqa: F811
    """SIGKILL leaves Hydra's files, no metrics.json, no live claim, no checkpoint: the point
    is `interrupted` (not a failure: a sweep into the folder exits 0), and a rerun trains it."""
    folder = make_sweep(tmp_path / "sweep", 2)
    run = folder / "2"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(tiny_cfg, run / ".hydra" / "config.yaml")
    (run / ".hydra" / "overrides.yaml").write_text("- lr=1.0\n")
    (run / ".claim").write_text("{}")  # left by the killed process: no lock held
    results, _ = tables.update(folder)
    row = results.set_index("run_dir").loc[str(run)]
    assert row["status"] == "interrupted" and pd.isna(row["error"])
    assert tables.report_failures(results) == 0
    run_one(tiny_cfg, run, {})  # the rerun's job in that folder: trained, not skipped
    results, _ = tables.update(folder)
    assert results.set_index("run_dir").loc[str(run), "status"] == "ok"


GARBAGE = [{"status": "ok", "lr": "x"}, {"status": "ok", "test_loss": "abc"},
           {"status": "ok", "test_loss": 1.0, "config": {"lr": 2.0, "subset_seed": "zero"}},
           {"status": "fine", "test_loss": 1.0}, {"status": "ok", "config": ["lr", 2]}]


def test_the_schema_names_the_first_key_of_a_wrong_type():
    assert [wrong_key(m) for m in GARBAGE] == [
        'lr="x": must be float', 'test_loss="abc": must be a number or null',
        'config.subset_seed="zero": must be int',
        'status="fine": must be one of ok, diverged, pruned, failed',
        'config=["lr", 2]: must be a mapping or null']
    good = {"status": "ok", "test_loss": float("nan"), "noise_note": None, "error": None,
            "config": {"lr": 2, "subset": 0.5, "seed": 1, "subset_seed": "${seed}",
                       "model": {"name": "tiny", "width": 1}, "schedule": {"knots": [0, 5]}}}
    assert wrong_key(good) is None  # ints for floats, NaN, null, an unresolved interpolation


@pytest.mark.parametrize("module, word", [("forgetting.analyze", "judge"),
                                          ("forgetting.report", "report"),
                                          ("forgetting.plot", "draw")])
def test_garbage_run_folders_give_one_line_and_write_nothing(tmp_path, module, word):
    for n, metrics in enumerate(GARBAGE):
        (tmp_path / str(n)).mkdir()
        (tmp_path / str(n) / "metrics.json").write_text(json.dumps(metrics))
    before = sorted(tmp_path.rglob("*"))
    proc = run_cli(str(tmp_path), module=module)
    assert one_line_error(proc) == (f"error: DIR={str(tmp_path)!r}: nothing to {word}: none "
                                    f"of its {len(GARBAGE)} runs finished ({len(GARBAGE)} failed)")
    assert sorted(tmp_path.rglob("*")) == before  # no verdict, no report, no figures/


def test_garbage_next_to_a_last_good_row_keeps_that_row_with_a_warning(tmp_path, capsys):
    folder = make_sweep(tmp_path / "sweep", 3)
    write_run(folder / "3", "ok", lr="x")  # a new garbage folder: a failed row
    garbage = folder / "1" / "metrics.json"
    garbage.write_text(json.dumps({**json.loads(garbage.read_text()), "test_loss": "abc"}))
    tables.announce(garbage.parent)
    capsys.readouterr()
    results, _ = tables.update(folder)
    rows = results.set_index("run_dir")
    assert rows.loc[str(folder / "1"), "status"] == "ok"
    assert rows.loc[str(folder / "1"), "test_loss"] == 1.0
    assert rows.loc[str(folder / "3"), "status"] == "failed"
    assert rows.loc[str(folder / "3"), "error"] == \
        'unreadable metrics.json (lr="x": must be float)'
    assert capsys.readouterr().err.splitlines() == [
        f'warning: {garbage}: unreadable metrics.json (test_loss="abc": must be a number or '
        "null); its earlier ok row kept (--replace takes the failed row)"]


@pytest.mark.parametrize("stale", [False, True])
def test_a_table_collected_mid_run_takes_the_finished_run_later(tmp_path, monkeypatch, stale):
    """A run folder with only Hydra's files (`subset_seed: ${seed}`, as Hydra saves it) is
    collected resolved; once the run finished, an update takes its row without a cast error
    and no column holds `${`. `stale`: the table was collected by a version that stored the
    literal `${seed}` (the update casts only the rows it keeps)."""
    folder = make_sweep(tmp_path / "sweep", 3)
    run = folder / "3"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(
        "lr: 8\nsubset: 1.0\nseed: 5\nsubset_seed: ${seed}\nbatch_size: 64\n"
        "data:\n  root: ${hydra:runtime.cwd}/data\nmodel:\n  name: tiny\n  width: 0.5\n")
    (run / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      recipe: part1\n")
    (run / ".hydra" / "overrides.yaml").write_text("- lr=8\n- seed=5\n")
    if stale:
        monkeypatch.setattr(rows, "resolved", lambda config: config)
    results, _ = tables.update(folder)
    monkeypatch.undo()
    row = results.set_index("run_dir").loc[str(run)]
    assert row["status"] == "interrupted" and row["subset_seed"] == ("${seed}" if stale else 5)
    config = {"lr": 8, "subset": 1.0, "seed": 5, "subset_seed": 5, "batch_size": 64,
              "model": {"name": "tiny", "width": 0.5}}
    (run / "metrics.json").write_text(json.dumps(
        {"status": "ok", "config_hash": "f" * 16, "test_loss": 2.0, "train_loss": 1.0,
         "config": config, "choices": {"recipe": "part1"}}))
    tables.announce(run)
    results, _ = tables.update(folder)
    row = results.set_index("run_dir").loc[str(run)]
    assert row["status"] == "ok" and row["subset_seed"] == 5 and row["test_loss"] == 2.0
    on_disk = pd.read_parquet(folder / "results.parquet")
    for frame in (results, on_disk):
        assert not frame.astype(str).apply(lambda c: c.str.contains("${", regex=False)).any().any()
    assert_update_equals_full(folder)


def test_a_copied_or_moved_sweep_keeps_its_last_good_row_as_in_place(tmp_path, capsys):
    """Keys are relative to the sweep folder: in a copy (new inodes) or a moved folder, a
    truncated metrics.json keeps the earlier ok row with one warning, as in place; run_dir
    names the folder where it is now."""
    place = make_sweep(tmp_path / "place", 4)
    origin = make_sweep(tmp_path / "origin", 4)
    copy = Path(shutil.copytree(origin, tmp_path / "copy"))
    moved = origin.rename(tmp_path / "moved")
    tables_of = {}
    for folder in (place, copy, moved):
        metrics = folder / "1" / "metrics.json"
        write_atomic(metrics, metrics.read_bytes()[:40])
        tables.announce(metrics.parent)
        capsys.readouterr()
        results, _ = tables.update(folder)
        assert results.set_index("run_dir").loc[str(folder / "1"), "status"] == "ok"
        [warning] = capsys.readouterr().err.splitlines()
        assert warning.startswith(f"warning: {metrics}: unreadable metrics.json")
        found = read_tables(folder)
        assert found["results.parquet"] is not None and found["history.parquet"] is not None
        for table in found.values():
            if table is not None:
                assert table["run_dir"].str.startswith(f"{folder}/").all()
                table["run_dir"] = table["run_dir"].str.replace(str(folder), "", regex=False)
        tables_of[folder] = found
    assert_same(tables_of[place], tables_of[copy])
    assert_same(tables_of[place], tables_of[moved])


def killed_writers_temporary(path: Path) -> Path:
    """The temporary atomic_path makes beside `path`, as a writer SIGKILLed mid-write leaves
    it (tempfile.mkstemp with atomic_path's prefix and suffix)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.write(fd, b"half a table")
    os.close(fd)
    return Path(tmp)


@pytest.mark.parametrize("full", [False, True])
def test_collect_removes_a_killed_collects_temporaries_and_nothing_else(tmp_path, full):
    folder = make_sweep(tmp_path / "sweep", 3)
    stale = [killed_writers_temporary(folder / name) for name in (
        "results.csv", "results.parquet", ".results.rows.parquet", ".results.manifest.parquet")]
    [part] = (folder / "history.parquet").iterdir()
    stale.append(killed_writers_temporary(part))
    for staging in (".history.parquet.new", ".history.parquet.old", ".recency.parquet.new"):
        (folder / staging).mkdir()
        stale.append(killed_writers_temporary(folder / staging / part.name))
        stale.append(folder / staging)
    (folder / ".configs").mkdir()
    others = [killed_writers_temporary(folder / "0" / "metrics.json"),  # a run's: its claim's
              killed_writers_temporary(folder / ".configs" / "abc"),  # the runner's
              killed_writers_temporary(folder / ".configs"),
              folder / ".results.csv.mine.tmp", folder / ".results.parquet.keep",
              folder / "notes.results.csv.abcdefgh.tmp"]
    for path in others[3:]:
        path.write_text("someone else's")
    tables.update(folder, full=full)
    assert [p for p in stale if p.exists()] == []
    assert [p for p in others if not p.exists()] == []
    assert len(pd.read_parquet(folder / "results.parquet")) == 3
