"""The command line end to end: real subprocess sweeps on tiny synthetic data."""

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers import TINY, head_commit, one_line_error, run_cli

pytestmark = pytest.mark.slow


def sweep(tmp_path: Path, *args: str, name: str = "sweep"):
    folder = tmp_path / name
    proc = run_cli("-m", *TINY, *args, f"hydra.sweep.dir={folder}")
    return proc, folder


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_grid_sweep_writes_one_table(tmp_path, launcher):
    proc, folder = sweep(tmp_path, "lr=1,2", "subset=0.5,1.0", *launcher)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(folder / "results.parquet")
    assert len(table) == 4
    assert sorted(zip(table["lr"], table["subset"])) == [(1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)]
    for column in ["lr", "subset", "batch_size", "epochs", "seed", "model", "status",
                   "train_loss", "clean_train_loss", "test_loss", "test_acc", "wall_s",
                   "run_dir"]:
        assert column in table, column
    assert (table["status"] == "ok").all()
    assert (table["model"] == "tiny").all() and (table["batch_size"] == 64).all()
    assert table["test_loss"].notna().all()
    assert len(pd.read_csv(folder / "results.csv")) == 4
    history = pd.read_parquet(folder / "history.parquet")
    assert len(history) == 4 * 2 and {"epoch", "test_loss", "lr", "subset"} <= set(history)
    assert "test_loss by subset (rows) and lr (columns)" in proc.stdout
    metrics = json.loads((Path(table["run_dir"][0]) / "metrics.json").read_text())
    for key in ["torch", "hydra", "git_commit", "device", "wall_s", "status"]:
        assert key in metrics
    assert metrics["git_commit"] == head_commit()  # the checkout's commit, always


def test_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    proc, folder = sweep(tmp_path, "lr=1,1e9")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(folder / "results.parquet").sort_values("lr")
    assert table["status"].tolist() == ["ok", "diverged"]
    assert "diverged" in proc.stdout  # in the pivot, not silently dropped


def test_failing_point_is_recorded_others_finish(tmp_path):
    # a damaged image shows only when the data is decoded: that point fails at run time
    tree = _tree_with_broken_image(tmp_path / "tree")
    proc, folder = sweep(tmp_path, "data=synthetic,imagefolder", f"data.root={tree}",
                         "batch_size=4", "report=true")
    assert proc.returncode == 1
    table = pd.read_parquet(folder / "results.parquet").sort_values("data")
    assert table["status"].tolist() == ["failed", "ok"]
    bad = f"data.root: unreadable image {tree / 'train' / 'b' / 'bad.png'}"
    assert table["error"].iloc[0].startswith(bad)
    assert (Path(table["run_dir"].iloc[1]) / "history.parquet").is_file()
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: 1 run(s) failed: {bad}")
    assert (folder / "report.html").is_file()  # written although a run failed
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_point_that_cannot_fit_stops_the_sweep_before_it_starts(tmp_path):
    # subset 0.05 of 640 images = 30 < batch 64: known before anything runs
    proc, folder = sweep(tmp_path, "subset=0.05,1.0")
    assert one_line_error(proc) == ("error: batch_size=64: must be <= the subset size 30 "
                                    "(subset=0.05 of 640 training images)")
    assert not folder.exists()


def test_collect_rebuilds_and_reports_broken_folders(tmp_path):
    proc, folder = sweep(tmp_path, "lr=1,2")
    assert proc.returncode == 0, proc.stderr
    (folder / "results.parquet").unlink()
    (folder / "1" / "metrics.json").write_text("{ truncated")
    (folder / "7" / ".hydra").mkdir(parents=True)
    (folder / "7" / ".hydra" / "config.yaml").write_text("lr: 4\nsubset: 1.0\n")
    proc = run_cli(str(folder), module="forgetting.collect")
    assert proc.returncode == 1  # some runs failed
    assert "Traceback" not in proc.stderr
    table = pd.read_parquet(folder / "results.parquet").set_index("lr")
    assert table.loc[1, "status"] == "ok"
    assert table.loc[2, "status"] == "failed" and "unreadable metrics.json" in table.loc[2, "error"]
    assert table.loc[4, "status"] == "interrupted"  # killed: a rerun trains it again
    merged = tmp_path / "merged"
    proc = run_cli(str(folder), str(folder), "--out", str(merged), module="forgetting.collect")
    assert len(pd.read_parquet(merged / "results.parquet")) == 6


def test_collect_on_missing_folder(tmp_path):
    proc = run_cli(str(tmp_path / "nope"), module="forgetting.collect")
    assert proc.returncode == 2
    missing = tmp_path / "nope"
    assert proc.stderr.strip().splitlines() == [f"error: DIR={str(missing)!r}: no such folder"]


def _tree_with_broken_image(root: Path) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(root / split / c / f"{i}.png")
    (root / "train" / "b" / "bad.png").write_bytes(b"not an image")
    return root


BAD_INPUTS = [
    (["subset=0"], "subset=0: must be in (0, 1]"),
    (["subset=1.5"], "subset=1.5: must be in (0, 1]"),
    (["lr=0"], "lr=0: must be a number > 0"),
    (["lr=-1"], "lr=-1: must be a number > 0"),
    (["batch_size=0"], "batch_size=0: must be an integer >= 1"),
    (["epochs=0"], "epochs=0: must be an integer >= 1"),
    (["model=resnet99"], "model='resnet99': choose one of dawn18, resnet9, tiny"),
    (["data=mnist"], "data='mnist': choose one of cifar10, imagefolder, synthetic"),
    (["precision=fp16"], "precision='fp16': choose one of fp32, bf16, auto"),
    (["device=tpu"], "device='tpu': choose one of auto, cpu, cuda"),
    (["learning_rate=1"], "unknown key 'learning_rate'"),
    (["model.depth=3"], "unknown key 'model.depth'; keys of model are name, width"),
    (["-m", "lr=1,-1"], "lr=-1: must be a number > 0"),
    (["batch_size=1000"], "batch_size=1000: must be <= the subset size 640"),
    (["model.width=0"], "model.width=0: must be a number > 0"),
    (["data=cifar10", "data.download=false", "data.root=/nonexistent/cifar"],
     "data.root='/nonexistent/cifar': no CIFAR-10 found"),
    (["data=imagefolder"], "data.root='': required for data=imagefolder"),
    (["cuda_graphs=maybe"], "cuda_graphs='maybe': must be true or false"),
    (["-m", "compile=false,maybe"], "compile='maybe': must be true or false"),
    (["data.train_size=1.5"], "data.train_size=1.5: must be an integer"),
    (["seed=abc"], "seed='abc': must be an integer"),
    (["-m", "--cfg", "job"], "-m --cfg: choose one of --run (-r), --multirun (-m), --cfg (-c), "
                             "--info (-i), --shell-completion (-sc)"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line(tmp_path, args, message):
    proc = run_cli(*TINY, *args, f"hydra.run.dir={tmp_path / 'run'}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert message in one_line_error(proc)
    if "-m" in args:  # a bad sweep value is refused before any run starts
        assert not (tmp_path / "sweep").exists()


def test_unreadable_image_and_corrupt_archive(tmp_path):
    tree = _tree_with_broken_image(tmp_path / "tree")
    proc = run_cli(*TINY, "data=imagefolder", f"data.root={tree}", "batch_size=4",
                   f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unreadable image" in proc.stderr
    assert "bad.png" in proc.stderr
    archive = tmp_path / "root" / "cifar-10-batches-py"
    archive.mkdir(parents=True)
    (archive / "data_batch_1").write_bytes(b"garbage")
    proc = run_cli(*TINY, "data=cifar10", f"data.root={tmp_path / 'root'}",
                   f"hydra.run.dir={tmp_path / 'run2'}")
    assert proc.returncode == 2 and "corrupt CIFAR-10 archive" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_failing_run_does_not_touch_a_finished_one(tmp_path):
    proc, folder = sweep(tmp_path, "lr=1")
    assert proc.returncode == 0
    before = {p: p.read_bytes() for p in (folder / "0").iterdir() if p.is_file()}
    proc = run_cli(*TINY, "lr=-1", f"hydra.run.dir={folder / '0'}")
    assert proc.returncode == 2
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("module, args, message", [
    ("forgetting.bench", ["--steps", "0"], "--steps must be >= 1"),
    ("forgetting.bench", ["--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
    ("forgetting.analyze", ["DIR", "--jump", "x"], "argument --jump: invalid float value"),
    ("forgetting.plot", ["--bin"], "argument --bin: expected one argument"),
    ("forgetting.collect", [], "the following arguments are required: dirs"),
])
def test_bad_arguments_of_the_tools_are_one_line(module, args, message):
    proc = run_cli(*args, module=module)
    line = one_line_error(proc)
    assert message in line and line.endswith(f"(see python -m {module} --help)")
