"""Resume and skip: a rerun of a sweep into its folder skips finished runs (matched by config
hash), reruns the others, never duplicates a row; force=true recomputes."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

import helpers
from forgetting.rundir import identity
from forgetting.rundir.identity import config_hash
from forgetting.runs.resume import job_folder, latest_runs
from helpers import REPO, TINY, run_cli

LRS = "lr=0.5,1,1.5,2,2.5,3"


def finished(folder: Path) -> dict[Path, tuple[bytes, int]]:
    """metrics.json of every finished run: contents and mtime."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.glob("*/metrics.json")}


@pytest.mark.slow
def test_killed_sweep_rerun_skips_finished_runs(tmp_path):
    folder = tmp_path / "sweep"
    args = ["-m", *TINY, "epochs=4", "threads=1", LRS, f"hydra.sweep.dir={folder}"]
    proc = subprocess.Popen([sys.executable, "-m", "forgetting.run", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group
    try:
        deadline = time.monotonic() + 120
        while len(finished(folder)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = finished(folder)
    assert 2 <= len(before) < 6, "the sweep was not killed mid-way"

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("skipped: this config already finished") == len(before)
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == 6 and (table["status"] == "ok").all()
    assert sorted(table["lr"]) == [0.5, 1, 1.5, 2, 2.5, 3]
    assert sorted(Path(d).name for d in table["run_dir"]) == ["0", "1", "2", "3", "4", "5"]
    after = finished(folder)
    assert {p: after[p] for p in before} == before  # not retrained, not rewritten

    forced = run_cli("-m", *TINY, "epochs=4", "threads=1", "lr=0.5", "force=true",
                     f"hydra.sweep.dir={folder}")
    assert forced.returncode == 0, forced.stderr
    assert (folder / "0" / "metrics.json").stat().st_mtime_ns > after[folder / "0" /
                                                                       "metrics.json"][1]
    assert len(pd.read_parquet(folder / "results.parquet")) == 6


@pytest.mark.slow
def test_other_config_never_overwrites_a_finished_run(tmp_path):
    folder = tmp_path / "sweep"
    assert run_cli("-m", *TINY, "lr=1", f"hydra.sweep.dir={folder}").returncode == 0
    before = finished(folder)
    proc = run_cli("-m", *TINY, "lr=2,1", f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr
    assert finished(folder)[folder / "0" / "metrics.json"] == before[folder / "0" /
                                                                       "metrics.json"]
    table = pd.read_parquet(folder / "results.parquet").sort_values("lr")
    assert table["lr"].tolist() == [1, 2] and (table["status"] == "ok").all()
    assert Path(table["run_dir"].iloc[1]).name.startswith("0-")  # folder 0 was taken

    run = run_cli(*TINY, "lr=4", f"hydra.run.dir={folder / '0'}")  # a single run into it
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"error: {folder / '0'} holds a finished run of another config; choose another "
        "folder, or force=true to replace it"]
    forced = run_cli(*TINY, "batch_size=1000", "force=true", f"hydra.run.dir={folder / '0'}")
    assert forced.returncode == 2 and "must be <= the subset size" in forced.stderr
    assert finished(folder)[folder / "0" / "metrics.json"][0] == before[
        folder / "0" / "metrics.json"][0]  # a failure never replaces a finished run
    assert not (folder / "0" / "error.log").exists()


def root_config(sweep_dir: Path, num: int, **values):
    """A stand-in for the composed sweep config a job's resolver sees."""
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}, "job": {"num": num}},
                             "lr": 1.0, "quiet": False, **values})


def write_run(folder: Path, status: str, **values) -> None:
    helpers.write_run(folder, status, config_hash=config_hash({"lr": 1.0, **values}))


def test_job_folder_rules(tmp_path):
    root = root_config(tmp_path, 3)
    assert job_folder(3, _root_=root) == "3"  # empty sweep folder: folder N
    write_run(tmp_path / "3", "ok", lr=2.0)
    key = config_hash({"lr": 1.0})
    assert job_folder(3, _root_=root) == f"3-{key[:8]}"  # N holds another config
    assert (tmp_path / ".configs" / key).read_text() == f"3-{key[:8]}\n"  # the index
    write_run(tmp_path / f"3-{key[:8]}", "failed")
    assert job_folder(5, _root_=root_config(tmp_path, 5)) == f"3-{key[:8]}"  # found again


def test_job_folder_indexes_a_sweep_folder_written_without_an_index(tmp_path):
    root = root_config(tmp_path, 3)
    write_run(tmp_path / "3", "ok", lr=2.0)
    write_run(tmp_path / "7", "failed")
    assert job_folder(3, _root_=root) == "7"  # an unfinished run of this config
    shutil.rmtree(tmp_path / ".configs")
    write_run(tmp_path / "9", "ok")
    assert job_folder(3, _root_=root) == "9"  # a finished one comes first
    assert job_folder(3, _root_=root_config(tmp_path, 3, quiet=True)) == "9"  # runtime key
    (tmp_path / "4" / ".hydra").mkdir(parents=True)  # killed before metrics: its .hydra/
    (tmp_path / "4" / ".hydra" / "config.yaml").write_text("lr: 5.0\nquiet: true\n")
    (tmp_path / "4" / ".hydra" / "overrides.yaml").write_text("[]\n")  # Hydra's last file
    assert job_folder(4, _root_=root_config(tmp_path, 4, lr=5.0)) == "4"


def hydra_files(folder: Path, config: str | None, overrides: bool = True) -> None:
    """The `.hydra` files Hydra writes into a run folder (config.yaml first, overrides.yaml
    last); `config=None`: none yet."""
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / ".hydra" / "config.yaml").write_text(config)
    if overrides:
        (folder / ".hydra" / "overrides.yaml").write_text("[]\n")


def test_an_empty_config_file_is_no_other_config(tmp_path, monkeypatch):
    """Another process has opened `.hydra/config.yaml` for writing (empty) and died: after a
    short wait the folder is free, never a folder of another config (`N-HASH`)."""
    monkeypatch.setattr(identity, "WRITE_WAIT_S", 0.2)
    hydra_files(tmp_path / "0", "", overrides=False)
    assert job_folder(0, _root_=root_config(tmp_path, 0)) == "0"
    hydra_files(tmp_path / "1", "", overrides=True)  # an empty file, all written
    assert job_folder(1, _root_=root_config(tmp_path, 1)) == "1"
    assert not [p for p in tmp_path.iterdir() if "-" in p.name]


@pytest.mark.parametrize("lr, chosen", [(1.0, "0"), (2.0, "0-{key}")])
def test_a_config_being_written_is_waited_for(tmp_path, monkeypatch, lr, chosen):
    """An identical sweep's job is writing folder 0's `.hydra` files (config.yaml empty,
    overrides.yaml not yet there) while ours chooses: ours waits, then reads the whole
    config: the same config keeps folder 0 (one training, through the claim), another one
    sends ours to `0-HASH`."""
    monkeypatch.setattr(identity, "WRITE_WAIT_S", 10.0)
    hydra_files(tmp_path / "0", "", overrides=False)

    def finish_writing():
        time.sleep(0.3)
        hydra_files(tmp_path / "0", f"lr: {lr}\nquiet: false\n")

    writer = threading.Thread(target=finish_writing)
    writer.start()
    try:
        folder = job_folder(0, _root_=root_config(tmp_path, 0))
    finally:
        writer.join()
    assert folder == chosen.format(key=config_hash({"lr": 1.0})[:8])


def test_job_folder_does_not_list_the_sweep_folder(tmp_path, monkeypatch):
    """Once the index exists, choosing a folder reads a fixed number of files: it never
    lists the sweep folder (the cost per job does not grow with the sweep)."""
    for n in range(20):
        write_run(tmp_path / str(n), "ok", lr=float(n + 2))
    write_run(tmp_path / "20", "failed")
    assert job_folder(0, _root_=root_config(tmp_path, 0)) == "20"  # builds the index once

    def no_listing(self):
        raise AssertionError(f"listed {self}")

    monkeypatch.setattr(Path, "iterdir", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    monkeypatch.setattr(os, "scandir", no_listing)
    assert job_folder(1, _root_=root_config(tmp_path, 1)) == "20"
    key = config_hash({"lr": 1.0, "seed": 1})
    assert job_folder(21, _root_=root_config(tmp_path, 21, seed=1)) == "21"  # a new config
    assert (tmp_path / ".configs" / key).read_text() == "21\n"


def test_table_keeps_one_run_per_config(tmp_path):
    write_run(tmp_path / "0", "failed")
    write_run(tmp_path / "1", "ok")
    write_run(tmp_path / "2", "failed")
    write_run(tmp_path / "3", "ok", lr=2.0)
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "metrics.json").write_text("{ truncated")
    runs = sorted(tmp_path.iterdir())
    assert [p.name for p in latest_runs(runs)] == ["1", "3", "4"]


def test_how_a_run_executes_is_not_part_of_its_config_hash():
    """cuda_graphs (and quiet, force) change how a run executes, not what it computes: a
    finished run is found whatever they say, also one recorded before the key existed."""
    base = {"lr": 1.0, "data": {"name": "cifar10", "cache_dir": "a"}}
    variants = [{**base, "cuda_graphs": True, "quiet": True},
                {**base, "cuda_graphs": False, "force": True, "data": {**base["data"],
                                                                       "cache_dir": "b"}}]
    assert {config_hash(v) for v in variants} == {config_hash(base)}
    assert config_hash({**base, "lr": 2.0}) != config_hash(base)


def test_a_section_of_unhashed_keys_leaves_older_hashes_as_they_were():
    """The diag section (every key unhashed) did not exist before: a config with it at any
    setting hashes like the same config without it."""
    old = {"lr": 2.0, "subset": 0.5, "probe": {"epochs": 2}}
    assert config_hash({**old, "diag": {"sharpness": True, "every": 3, "noise": False,
                                        "sharpness_examples": 256, "iters": 20,
                                        "noise_every": 16, "forgetting_events": True}}) == \
        config_hash(old)
    assert config_hash({**old, "probe": {"epochs": 3}}) != config_hash(old)
