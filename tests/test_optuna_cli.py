"""Optuna searches through the forgetting CLI: real subprocess sweeps on tiny synthetic data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from helpers import REPO, TINY, one_line_error, run_cli

pytestmark = pytest.mark.slow

OPTUNA = ["hydra/sweeper=optuna_study", "epochs=3"]


def optuna_sweep(folder: Path, *args: str, env: dict | None = None):
    return run_cli("-m", *TINY, *OPTUNA, *args, f"hydra.sweep.dir={folder}", env=env)


def load_study(folder: Path, name: str):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna_journal.log")))
    return optuna.load_study(study_name=name, storage=storage)


def epochs_run(folder: Path, trial: int) -> int:
    return len(pd.read_parquet(folder / str(trial) / "history.parquet"))


# lr 4 learns, lr 0.01 does not: with the grid's order the bad trial runs second and the median
# pruner stops it after its first epoch
PRUNING = ["lr=choice(4,0.01)", "hydra.sweeper.sampler=grid", "hydra.sweeper.study_name=prune",
           "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_kwargs.n_startup_trials=1",
           "hydra.sweeper.n_jobs=1"]


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]],
                         ids=["basic", "joblib", "submitit_local"])
def test_pruning_stops_a_bad_trial_early(tmp_path, launcher):
    folder = tmp_path / "sweep"
    proc = optuna_sweep(folder, *PRUNING, *launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert epochs_run(folder, 0) == 3 and epochs_run(folder, 1) == 1
    table = pd.read_parquet(folder / "results.parquet").sort_values("trial")
    assert table["status"].tolist() == ["ok", "pruned"]
    assert table["trial_state"].tolist() == ["COMPLETE", "PRUNED"]
    assert table["lr"].tolist() == [4, 0.01] and table["params_lr"].tolist() == [4, 0.01]
    assert table["study"].tolist() == ["prune"] * 2 and table["trial_duration_s"].notna().all()
    metrics = json.loads((folder / "1" / "metrics.json").read_text())
    assert metrics["status"] == "pruned" and metrics["trial"] == 1
    assert metrics["study"] == "prune"
    assert metrics["storage"] == f"journal:{folder.resolve()}/optuna_journal.log"
    study = load_study(folder, "prune")
    assert list(study.trials[1].intermediate_values) == [1]
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["best"]["trial"] == 0 and results["best"]["params"] == {"lr": 4}


def test_resume_to_total_without_folder_collisions(tmp_path):
    folder = tmp_path / "sweep"
    args = ["lr=tag(log, interval(0.1, 8))", "hydra.sweeper.study_name=resume",
            "hydra.sweeper.objectives=[test_loss,wall_s]",
            "hydra.sweeper.directions=[minimize,minimize]", "epochs=1"]
    first = optuna_sweep(folder, *args, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr[-3000:]
    mtimes = {p: p.stat().st_mtime_ns for p in folder.glob("*/metrics.json")}
    second = optuna_sweep(folder, *args, "hydra.sweeper.n_trials=5")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("Launching 1 jobs") == 2  # only the missing trials
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # earlier runs untouched
    table = pd.read_parquet(folder / "results.parquet").sort_values("trial")
    assert table["trial"].tolist() == [0, 1, 2, 3, 4]
    assert [Path(d).name for d in table["run_dir"]] == ["0", "1", "2", "3", "4"]
    assert {"value_test_loss", "value_wall_s", "params_lr", "trial_state"} <= set(table)
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 5 and results["pareto_front"]


def test_two_workers_share_one_study_exactly(tmp_path):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "forgetting.run", "-m", *TINY, *OPTUNA, "epochs=2",
               "lr=tag(log, interval(0.1, 8))", "hydra.sweeper.study_name=shared",
               "hydra.sweeper.n_trials=6", f"hydra.sweep.dir={folder}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one core each
    procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    study = load_study(folder, "shared")
    assert [t.number for t in study.trials] == list(range(6))  # none surplus, none lost
    assert {t.user_attrs["worker"]["pid"] for t in study.trials} == {p.pid for p in procs}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    runs = sorted(int(p.parent.name) for p in folder.glob("*/metrics.json"))
    assert runs == list(range(6))
    trials = [json.loads((folder / str(n) / "metrics.json").read_text())["trial"] for n in runs]
    assert trials == runs


def test_diverged_runs_fail_or_get_the_worst_value(tmp_path):
    args = ["lr=choice(1,1e9)", "hydra.sweeper.sampler=grid", "epochs=1"]
    proc = optuna_sweep(tmp_path / "fail", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "fail" / "results.parquet").sort_values("lr")
    assert table["status"].tolist() == ["ok", "diverged"]
    assert table["trial_state"].tolist() == ["COMPLETE", "FAIL"]
    proc = optuna_sweep(tmp_path / "worst", *args, "hydra.sweeper.on_nan=worst")
    table = pd.read_parquet(tmp_path / "worst" / "results.parquet").sort_values("lr")
    assert table["trial_state"].tolist() == ["COMPLETE", "COMPLETE"]
    assert table["value"].iloc[1] == float("inf")
    proc = optuna_sweep(tmp_path / "all", "lr=choice(1e9,2e9)", "hydra.sweeper.sampler=grid",
                        "epochs=1")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: study ") and "none of its 2 trials completed" in last
    assert "Traceback" not in proc.stderr
    assert len(pd.read_parquet(tmp_path / "all" / "results.parquet")) == 2  # table still built


BAD_SWEEPERS = [
    (["hydra.sweeper.sampler=bogus", "lr=1,2"],
     "hydra.sweeper.sampler='bogus': choose one of tpe, random, grid, gp, cmaes"),
    (["hydra.sweeper.pruner=sometimes", "lr=1,2"],
     "hydra.sweeper.pruner='sometimes': choose one of none, median, successive_halving, "
     "hyperband"),
    (["hydra.sweeper.n_trials=2"], "hydra.sweeper.params: empty search space"),
    (["hydra.sweeper.storage=nosuchdb://x", "hydra.sweeper.study_name=s", "lr=1,2"],
     "hydra.sweeper.storage='nosuchdb://x': cannot open it"),
    (["hydra.sweeper.objectives=[test_loss,wall_s]", "lr=1,2"],
     "hydra.sweeper.directions=['minimize']: give one direction per objective"),
    (["hydra.sweeper.directions=[minimize,maximize]", "lr=1,2"],
     "hydra.sweeper.directions=['minimize', 'maximize']: a run returns one value (its "
     "test_loss): give one direction"),
    (["hydra.sweeper.pruner=median", "lr=1,2"],
     "hydra.sweeper.pruner='median': pruning needs a persistent storage"),
    (["lr=1,2"], "hydra.sweeper.n_trials: required with sampler=tpe"),
    (["hydra.sweeper.sampler=cmaes", "lr=interval(1,2)"],
     "hydra.sweeper.sampler='cmaes': needs the cmaes package"),
    (["hydra.sweeper.objectives=[test_lossx]", "lr=1,2"],
     "hydra.sweeper.objectives=['test_lossx']: 'test_lossx' is not a metric of a run; choose "
     "from test_loss, test_acc, train_loss, clean_train_loss, train_acc, clean_train_acc, "
     "train_s, wall_s"),
    (["hydra.sweeper.storage=journal:/nonexistent/dir/j.log", "hydra.sweeper.study_name=s",
      "lr=1,2"], "hydra.sweeper.storage='journal:/nonexistent/dir/j.log': folder "
     "/nonexistent/dir does not exist; create it first"),
    (["hydra.sweeper.storage=sqlite:////nonexistent/dir/s.db", "hydra.sweeper.study_name=s",
      "lr=1,2"], "hydra.sweeper.storage='sqlite:////nonexistent/dir/s.db': folder "
     "/nonexistent/dir does not exist; create it first"),
    (["hydra.sweeper.storage=postgresql+psycopg2://u:pw@localhost/db",
      "hydra.sweeper.study_name=s", "lr=1,2"],
     "hydra.sweeper.storage='postgresql+psycopg2://u:***@localhost/db': needs the database "
     "driver psycopg2"),  # the test extra installs psycopg, not SQLAlchemy's psycopg2
]


@pytest.mark.parametrize("args, message", BAD_SWEEPERS,
                         ids=["sampler", "pruner", "empty_space", "storage", "directions",
                              "implied_objective", "pruning_in_memory", "n_trials", "cmaes_missing",
                              "unknown_objective", "journal_folder", "sqlite_folder",
                              "postgres_driver"])
def test_bad_sweeper_config_is_one_line(tmp_path, args, message):
    if "n_trials" not in " ".join(args) and "n_trials: required" not in message:
        args = args + ["hydra.sweeper.n_trials=2"]
    env = None
    if "cmaes" in message:  # a cmaes that cannot be imported, ahead of the installed one
        (tmp_path / "cmaes").mkdir()
        (tmp_path / "cmaes" / "__init__.py").write_text("raise ImportError('hidden')\n")
        env = {"PYTHONPATH": str(tmp_path)}
    proc = optuna_sweep(tmp_path / "sweep", *args, env=env)
    assert message in one_line_error(proc)
    assert not (tmp_path / "sweep").exists()  # nothing created: no run, no progress file
    assert not Path("/nonexistent").exists()


def test_presets_compose_and_the_quick_one_runs(tmp_path):
    hydra_cfg = run_cli("+sweep=optuna_lr_subset", "subset=0.25", "--cfg", "hydra")
    assert hydra_cfg.returncode == 0, hydra_cfg.stderr
    sweeper = yaml.safe_load(hydra_cfg.stdout)["hydra"]["sweeper"]
    assert sweeper["_target_"].endswith("OptunaStudySweeper")
    assert sweeper["params"] == {"lr": "tag(log, interval(0.25, 16))"}
    assert sweeper["pruner"] == "median" and sweeper["sampler"] == "tpe"
    job = run_cli("+sweep=quick_optuna_lr_subset", "--cfg", "job")
    assert job.returncode == 0, job.stderr
    assert yaml.safe_load(job.stdout)["model"]["width"] == 0.25
    unknown = run_cli("+sweep=nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith("error: +sweep='nope': choose one of ")
    assert "quick_optuna_lr_subset" in unknown.stderr
    folder = tmp_path / "quick"
    proc = run_cli("+sweep=quick_optuna_lr_subset", *TINY, "subset=1.0", "model.width=1",
                   "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["study"] == "quick_optuna_lr_subset_1.0" and results["n_trials"] == 3
    assert len(pd.read_parquet(folder / "results.parquet")) == 3
