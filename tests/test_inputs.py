"""Bad input said in one line, early (issue 12, items 10 and 11): typos of keys name the real
key, unparsable overrides say why, optional groups name their choices; figures and verdicts of
a sweep whose runs all failed are refused, and nothing is written."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from forgetting.analyze import main as analyze_main
from forgetting.core.data import subset_indices, synthetic
from forgetting.core.errors import UserError
from forgetting.core.source import class_sizes, subset_size
from forgetting.plot import main as plot_main
from forgetting.runs.preflight import preflight
from helpers import TINY, one_line_error, run_cli, write_run


@pytest.mark.parametrize("arg, message", [
    ("modle=resnet9", "unknown key 'modle'; did you mean 'model'? top-level keys are "),
    ("subste=0.5", "unknown key 'subste'; did you mean 'subset'? "),
    ("model.widht=2", "unknown key 'model.widht'; did you mean 'model.width'? keys of model "
     "are name, width"),
    ("learning_rate=1", "unknown key 'learning_rate'; top-level keys are "),
    ("lr=choice()", "cannot parse 'lr=choice()': 'choice()': empty choice is not legal "
     "(Hydra's override grammar: "),
    ("lr=[1,2", "cannot parse 'lr=[1,2': no viable alternative at input '[1,2'"),
    ("+trainset=half", "+trainset='half': choose one of full_augmented, half_plain"),
    ("+trainset=half_plain,whole", "+trainset='whole': choose one of full_augmented, "
     "half_plain"),
])
def test_bad_overrides_are_named_with_what_is_meant(arg, message):
    with pytest.raises(UserError) as e:
        preflight(["-m", arg])
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)
    if "did you mean" in message:
        assert "+" not in str(e.value)  # a typo of a real key never gets a `+KEY=` hint
    preflight([*TINY, "+trainset=half_plain", "model=resnet9"])


@pytest.mark.slow
def test_a_typo_is_one_line_on_the_command_line(tmp_path):
    proc = run_cli(*TINY, "modle=resnet9", f"hydra.run.dir={tmp_path / 'run'}")
    assert "did you mean 'model'?" in one_line_error(proc)
    proc = run_cli(*TINY, "+trainset=half", f"hydra.run.dir={tmp_path / 'run'}")
    assert one_line_error(proc) == ("error: +trainset='half': choose one of full_augmented, "
                                    "half_plain")
    assert not (tmp_path / "run").exists()


def failed_sweep(folder):
    for n in range(2):
        write_run(folder / str(n), "failed", error="boom", lr=n + 1, config={"lr": n + 1})
    return folder


@pytest.mark.parametrize("main, what", [(plot_main, "draw"), (analyze_main, "judge")])
def test_nothing_to_draw_or_judge_when_every_run_failed(tmp_path, capsys, main, what):
    folder = failed_sweep(tmp_path / "sweep")
    before = sorted(folder.rglob("*"))
    assert main([str(folder)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: DIR={str(folder)!r}: nothing to {what}: none of its 2 runs finished "
        "(2 failed)"]
    assert sorted(folder.rglob("*")) == before  # no figures/, no verdict
    write_run(folder / "2", "ok", lr=3, config={"lr": 3})
    main([str(folder)])  # one finished run: past this check
    assert "none of its" not in capsys.readouterr().err


def test_finding_a_finished_run_reads_one_metrics_file_not_all(tmp_path, monkeypatch):
    """The 'nothing finished' check before analyze/plot stops at the first finished run: one
    read of metrics.json in a sweep of 40, not 40; with none finished it reads them all."""
    from forgetting.rundir import identity as resume
    from forgetting.runs import cli

    folder = tmp_path / "sweep"
    for n in range(40):
        write_run(folder / str(n), "ok", lr=n + 1, config={"lr": n + 1})
    reads = []
    real = resume.read_metrics
    monkeypatch.setattr(resume, "read_metrics", lambda run: reads.append(run) or real(run))
    assert cli.nothing_finished([folder]) is None
    assert len(reads) == 1
    reads.clear()
    failed = failed_sweep(tmp_path / "failed")
    assert cli.nothing_finished([failed]) == "none of its 2 runs finished (2 failed)"
    assert len(reads) == 2


# checks that span keys, need the data or the selected plugin: made before Hydra starts
SPANNING = [
    (["cutout=100"], "cutout=100: must be <= the image side 32 (data=cifar10); 0 = off"),
    (["schedule.knots=[0,1]", "schedule.values=[0,1,2]"],
     "schedule.knots=[0, 1]: needs >= 2 knots and one value per knot"),
    ([*TINY, "diag.sharpness=true", "diag.sharpness_examples=999999"],
     "diag.sharpness_examples=999999: must be <= the subset size 640"),
    (["data=cifar10", "data.root=/nonexistent", "data.download=false"],
     "data.root='/nonexistent': no CIFAR-10 found; "),
    ([*TINY, "data.train_size=100", "batch_size=128"],
     "batch_size=128: must be <= the subset size 100 (subset=1.0 of 100 training images)"),
    (["-m", *TINY, "batch_size=32,128", "subset=1,0.1"],
     "batch_size=128: must be <= the subset size 60 (subset=0.1 of 640 training images)"),
    (["-m", "hydra/launcher=packed", "hydra.launcher.pak=2", "lr=1,2"],
     "unknown key 'hydra.launcher.pak'; did you mean 'hydra.launcher.pack'? keys of "
     "hydra.launcher (PackedLauncher) are pack"),
    (["-m", "hydra/sweeper=optuna_study", "hydra.sweeper.n_trial=2", "lr=1,2"],
     "unknown key 'hydra.sweeper.n_trial'; did you mean 'hydra.sweeper.n_trials'? "),
    (["-m", "hydra.sweeper.paramz.lr=1,2"],
     "unknown key 'hydra.sweeper.paramz.lr'; did you mean 'hydra.sweeper.params'? "),
]


@pytest.mark.parametrize("args, message", SPANNING, ids=[
    "cutout", "schedule", "sharpness_sample", "data_root", "batch_over_subset",
    "batch_over_subset_in_a_sweep", "launcher_key", "sweeper_key", "basic_sweeper_key"])
def test_checks_across_keys_and_the_data_come_before_hydra(args, message):
    with pytest.raises(UserError) as e:
        preflight(args)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_points_that_fit_pass_the_checks():
    preflight(["-m", *TINY, "batch_size=32,64", "subset=1,0.5", "cutout=8"])
    preflight(["-m", "+sweep=quick_lr_subset_bs128", "data=synthetic",
               "data.train_size=50000"])  # 21 points, the smallest subset 1,560 images
    preflight(["-m", "hydra/sweeper=optuna_study", "hydra.sweeper.n_trials=2",
               "hydra.sweeper.params.lr=interval(1,2)", *TINY])
    preflight(["--cfg", "job", "cutout=100"])  # printing a config runs nothing: Hydra's
    preflight(["-m", "+sweep=lr_subset_bs512", *TINY, "data.train_size=2000",  # its subsets:
               "hydra.sweeper.params.subset='0.5,1.0'", "hydra.sweeper.params.lr='1,4'"])
    preflight(["-m", *TINY, "seed=0,1,2", "subset_seed=${seed}"])  # seeds tied together
    with pytest.raises(UserError, match=r"subset=0\.0: must be in \(0, 1\]"):
        preflight(["-m", *TINY, "seed=1,0", "subset=${seed}"])  # resolved per point


@pytest.mark.slow
def test_a_check_across_keys_creates_nothing(tmp_path):
    proc = run_cli("cutout=100", f"hydra.run.dir={tmp_path / 'run'}")
    assert one_line_error(proc).startswith("error: cutout=100: must be <= the image side 32")
    proc = run_cli("-m", "hydra/launcher=packed", "hydra.launcher.pak=2", *TINY, "lr=1,2",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert "did you mean 'hydra.launcher.pack'?" in one_line_error(proc)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("train_size, classes, fraction", [(640, 10, 0.1), (103, 7, 0.33),
                                                            (50, 10, 0.01)])
def test_the_subset_size_known_before_loading_is_the_loaded_one(train_size, classes, fraction):
    data = synthetic(classes, train_size, 10, 8, 10.0, 0)
    sizes = class_sizes(SimpleNamespace(name="synthetic", train_size=train_size,
                                        num_classes=classes))
    assert sizes == torch.bincount(data.train_y).tolist()
    assert subset_size(sizes, fraction) == len(subset_indices(data.train_y, fraction, 3))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_that_cannot_be_created_is_named_with_why():
    with pytest.raises(UserError) as e:
        preflight(["-m", "hydra.sweep.dir=/proc/forbidden/x"])
    assert str(e.value) == ("hydra.sweep.dir=/proc/forbidden/x: cannot create /proc/forbidden: "
                            "/proc accepts no new folders (No such file or directory)")


def test_a_download_that_cannot_work_is_refused_before_anything_is_created(tmp_path,
                                                                           monkeypatch):
    """No data at data.root and the download on, but its host unreachable (here: a closed
    port on this machine): one line before the sweep folder exists, not a failed run each."""
    import socket

    import torchvision.datasets

    from forgetting.runs import points

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"http://127.0.0.1:{port}/c.tgz")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    points._sizes.cache_clear()
    root, sweep = tmp_path / "elsewhere" / "cifar10-jpg", tmp_path / "sweep"
    with pytest.raises(UserError) as e:
        preflight(["-m", "data=cifar10", f"data.root={root}", "lr=1,2",
                   f"hydra.sweep.dir={sweep}"])
    assert str(e.value).startswith(
        f"data.root='{root}': no such folder, and the download (data.download=true) cannot "
        f"reach 127.0.0.1:{port} (")
    assert "\n" not in str(e.value) and not root.exists() and not sweep.exists()
