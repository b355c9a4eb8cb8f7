"""The optuna_study sweeper in-process: its pieces, and whole sweeps through Hydra's own
`hydra_sweep_runner` on Hydra's test app (task returns 100 unless a test gives a function).

Hydra's BatchedSweeperTestSuite runs here with sampler=grid: the sweeper keeps Hydra's order
(the last key varies fastest) and launches n_jobs trials per batch. Subprocess runs of the
forgetting CLI are in test_optuna_cli.py.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite
from optuna.trial import TrialState

from hydra_plugins.forgetting_optuna_sweeper import _workers as workers
from hydra_plugins.forgetting_optuna_sweeper._errors import SweeperError
from hydra_plugins.forgetting_optuna_sweeper._outcome import judge
from hydra_plugins.forgetting_optuna_sweeper._space import parse_space
from hydra_plugins.forgetting_optuna_sweeper._study import open_storage, resolve_storage
from hydra_plugins.forgetting_optuna_sweeper.sweeper import OptunaStudySweeper

SWEEPER = ["hydra/sweeper=optuna_study"]
# Hydra's test app predates version_base 1.2: Hydra warns that it changes the working directory
pytestmark = pytest.mark.filterwarnings("ignore:Future Hydra versions:UserWarning")


def test_discovered_by_hydra():
    found = [c.__name__ for c in Plugins.instance().discover(Sweeper)]
    assert OptunaStudySweeper.__name__ in found
    root = Path(__file__).resolve().parent.parent
    assert not (root / "hydra_plugins" / "__init__.py").exists()  # a namespace package


@pytest.mark.parametrize("launcher_name, overrides",
                         [("basic", SWEEPER + ["hydra.sweeper.sampler=grid",
                                               "hydra.sweeper.n_jobs=2"])])
class TestGridKeepsHydrasOrder(BatchedSweeperTestSuite):
    """Hydra's suite: 6 grid points in Hydra's order, 3 batches of 2, 6 folders."""


# --- the search space --------------------------------------------------------------------

def space(*args, params=None):
    return parse_space(params, list(args), OverridesParser.create())


def test_every_sweep_syntax_becomes_a_distribution():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    s = space("a=choice(x,'y z',[1,2])", "b=range(1,10,3)", "c=range(0.1,0.5,0.1)",
              "d=tag(log, interval(0.01, 10))", "e=tag(int, interval(1, 8))", "f=1,2",
              "+g=7", "h=tag(log, int, interval(1, 64))", params={"i": "interval(0, 1)"})
    d = s.distributions()
    assert d["a"] == CategoricalDistribution(["x", "y z", "[1,2]"])
    assert d["b"] == IntDistribution(1, 7, step=3)
    assert d["c"] == FloatDistribution(0.1, 0.4, step=0.1)
    assert d["d"] == FloatDistribution(0.01, 10, log=True)
    assert d["e"] == IntDistribution(1, 8)
    assert d["f"] == CategoricalDistribution([1, 2])
    assert d["h"] == IntDistribution(1, 64, log=True)
    assert d["i"] == FloatDistribution(0, 1)
    assert "g" not in d
    overrides = s.overrides({"a": "y z", "b": 4, "c": 0.30000000000000004, "d": 0.5, "e": 3,
                             "f": 2, "h": 16, "i": 0.25})
    assert overrides == ["i=0.25", "a=y\\ z", "b=4", "c=0.3", "d=0.5", "e=3", "f=2", "+g=7",
                         "h=16"]


def test_command_line_wins_over_params_and_grid_keeps_order():
    s = space("x=3,4", "y=a,b", params={"x": "1,2", "z": "5"})
    assert s.overrides({"x": 3, "y": "a"}) == ["x=3", "z=5", "y=a"]
    assert s.grid() == [{"x": 3, "y": "a"}, {"x": 3, "y": "b"}, {"x": 4, "y": "a"},
                        {"x": 4, "y": "b"}]


def test_bad_spaces_are_one_line_errors():
    with pytest.raises(SweeperError, match="empty search space"):
        space("x=1", "+y=2")
    with pytest.raises(SweeperError, match="continuous interval"):
        space("x=interval(0,1)").grid()
    with pytest.raises(SweeperError, match="x=interval\\(2,1\\)"):
        space("x=interval(2,1)")


# --- outcomes, storages ------------------------------------------------------------------

class FakeReturn:
    def __init__(self, value, run_dir: Path):
        self._value = value
        self.hydra_cfg = {"hydra": {"runtime": {"output_dir": str(run_dir)}}}
        from omegaconf import OmegaConf

        self.hydra_cfg = OmegaConf.create(self.hydra_cfg)

    @property
    def return_value(self):
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


def test_judge_maps_outcomes(tmp_path):
    def ret(value, metrics=None):
        run = tmp_path / str(len(list(tmp_path.iterdir())))
        run.mkdir()
        if metrics is not None:
            (run / "metrics.json").write_text(__import__("json").dumps(metrics))
        return FakeReturn(value, run)

    mini = ["minimize"]
    assert judge(ret(1.5), None, mini, "fail") == (TrialState.COMPLETE, [1.5], None)
    assert judge(ret(math.nan), None, mini, "fail")[0] == TrialState.FAIL
    assert judge(ret(math.nan, {"status": "diverged"}), None, mini, "worst") == \
        (TrialState.COMPLETE, [math.inf], "diverged: told the worst value")
    assert judge(ret(math.nan), None, ["maximize"], "worst")[1] == [-math.inf]
    assert judge(ret(2.0, {"status": "pruned"}), None, mini, "fail")[0] == TrialState.PRUNED
    assert judge(ret(math.nan, {"status": "failed", "error": "boom"}), None, mini, "fail") == \
        (TrialState.FAIL, None, "boom")
    assert judge(ret(RuntimeError("crash")), None, mini, "fail") == \
        (TrialState.FAIL, None, "RuntimeError: crash")
    assert judge(ret(None), None, mini, "fail")[2] == "objective is not a number: [None]"
    both = judge(ret(0, {"status": "ok", "test_loss": 1.0, "wall_s": 3.0}),
                 ["test_loss", "wall_s"], mini * 2, "fail")
    assert both == (TrialState.COMPLETE, [1.0, 3.0], None)
    assert judge(ret(0, {"status": "ok"}), ["wall_s"], mini, "fail")[2] == \
        "metrics.json has no wall_s"


def test_storage_urls_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage(None, None, Path("s")) == "memory"
    assert resolve_storage(None, "st", Path("s")) == f"journal:{tmp_path}/s/optuna_journal.log"
    assert resolve_storage("sqlite:///a.db", "st", Path("s")) == f"sqlite:///{tmp_path}/a.db"
    assert resolve_storage("journal:j.log", "st", Path("s")) == f"journal:{tmp_path}/j.log"
    assert resolve_storage("postgresql://u@h/db", "st", Path("s")) == "postgresql://u@h/db"
    with pytest.raises(SweeperError, match="hydra.sweeper.storage='nosuch://x': cannot open"):
        open_storage("nosuch://x")


# --- claims, surplus, abandoned trials ---------------------------------------------------

def journal_study(tmp_path: Path, name: str = "s"):
    storage = open_storage(f"journal:{tmp_path / 'j.log'}")
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True)


DIST = {"x": optuna.distributions.FloatDistribution(0, 1)}


def test_claims_stop_at_the_total_and_surplus_is_discarded(tmp_path):
    study = journal_study(tmp_path)
    lock = workers.claim_lock(tmp_path / "claim.lock")
    first = workers.claim(study, DIST, 3, 2, lock, lambda k: None)
    assert [t.number for t in first] == [0, 1]
    assert [t.number for t in workers.claim(study, DIST, 3, 5, lock, lambda k: None)] == [2]
    assert workers.claim(study, DIST, 3, 5, lock, lambda k: None) == []
    # a worker that could not take the lock asks past the total: its trial is surplus
    extra = study.ask(DIST)
    assert workers.is_surplus(study, extra.number, 3)
    assert workers.discard(study, extra.number, "surplus")
    assert len(workers.counted(study.get_trials())) == 3
    assert study.trials[3].user_attrs["discarded"] == "surplus"


def test_trials_of_a_dead_worker_are_failed_and_retried(tmp_path):
    study = journal_study(tmp_path)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead = {**workers.owner(), "pid": int(done.stdout)}
    orphan = study.ask(DIST)
    orphan.set_user_attr("worker", dead)
    alive = study.ask(DIST)
    alive.set_user_attr("worker", workers.owner())
    alive.set_user_attr("heartbeat", 0.0)  # an old heartbeat alone makes it stale too
    recovered = workers.recover_abandoned(journal_study(tmp_path), stale_after_s=60)
    assert recovered == [0, 1]
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL] * 2
    assert trials[2].state == TrialState.WAITING and trials[2].user_attrs["retry_of"] == 0
    assert trials[2].system_attrs["fixed_params"] == orphan.params
    assert len(workers.counted(trials)) == 0  # the retries wait to be claimed
    fresh = study.ask(DIST)
    fresh.set_user_attr("worker", workers.owner())
    assert workers.recover_abandoned(study, stale_after_s=60) == []  # alive, fresh heartbeat
    assert os.getpid() == fresh.user_attrs["worker"]["pid"]


# --- whole sweeps through Hydra ----------------------------------------------------------

def run_sweep(hydra_sweep_runner, tmp_path, *overrides, task=None, name="sweep"):
    """The JobReturns and optimization_results.yaml of a sweep (whose folder the runner
    deletes when it is done)."""
    sweep = hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module",
                               task_function=task, config_path="configs",
                               config_name="compose.yaml", overrides=SWEEPER + list(overrides),
                               temp_dir=tmp_path / name)
    with sweep:
        returns = [r for batch in sweep.returns for r in batch]
        results = yaml.safe_load((tmp_path / name / "optimization_results.yaml").read_text())
    return returns, results


def quadratic(cfg):
    return (cfg.x - 0.3) ** 2 + (cfg.get("y", 0.5) - 0.5) ** 2


@pytest.mark.parametrize("sampler", ["tpe", "random", "gp", "cmaes"])
def test_samplers_search_and_report_the_best(hydra_sweep_runner, tmp_path, sampler):
    returns, results = run_sweep(hydra_sweep_runner, tmp_path, f"hydra.sweeper.sampler={sampler}",
                                 "hydra.sweeper.n_trials=4", "+x=interval(0, 1)",
                                 "+y=interval(0, 1)", task=quadratic)
    assert [r.hydra_cfg.hydra.job.num for r in returns] == [0, 1, 2, 3]
    best = min(returns, key=lambda r: r.return_value)
    assert results["best"]["values"]["value"] == pytest.approx(best.return_value)
    assert results["states"] == {"COMPLETE": 4}


def test_same_seed_same_trials(hydra_sweep_runner, tmp_path):
    a, _ = run_sweep(hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=3",
                     "+x=interval(0, 1)", task=quadratic, name="a")
    b, _ = run_sweep(hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=3",
                     "+x=interval(0, 1)", task=quadratic, name="b")
    assert [r.overrides for r in a] == [r.overrides for r in b]


def test_multi_objective_pareto_front(hydra_sweep_runner, tmp_path):
    returns, results = run_sweep(
        hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=5", "+x=interval(0, 1)",
        "hydra.sweeper.directions=[minimize,maximize]", task=lambda c: [c.x, c.x ** 2])
    assert results["directions"] == ["minimize", "maximize"]
    assert results["pareto_front"] and all(set(t["values"]) == {"value_0", "value_1"}
                                           for t in results["pareto_front"])


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_persistent_study_resumes_to_its_total(hydra_sweep_runner, tmp_path, storage):
    url = f"sqlite:///{tmp_path}/s.db" if storage == "sqlite" else f"journal:{tmp_path}/j.log"
    common = ["hydra.sweeper.study_name=resume", "+x=interval(0, 1)",
              f"hydra.sweeper.storage={url}"]
    first, _ = run_sweep(hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=3", *common,
                         task=quadratic)
    second, results = run_sweep(hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=5",
                                *common, task=quadratic)
    third, _ = run_sweep(hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=5", *common,
                         task=quadratic)
    assert [r.hydra_cfg.hydra.job.num for r in first + second] == [0, 1, 2, 3, 4]
    assert third == []
    assert results["n_trials"] == 5 and results["storage"] == url


def test_nan_objective_fail_or_worst(hydra_sweep_runner, tmp_path):
    def half_nan(cfg):
        return math.nan if cfg.x == "bad" else 1.0

    args = ["+x=choice(ok,bad)", "hydra.sweeper.sampler=grid"]
    _, failed = run_sweep(hydra_sweep_runner, tmp_path, *args, task=half_nan, name="fail")
    assert failed["states"] == {"COMPLETE": 1, "FAIL": 1}
    _, worst = run_sweep(hydra_sweep_runner, tmp_path, *args, "hydra.sweeper.on_nan=worst",
                         task=half_nan, name="worst")
    assert worst["states"] == {"COMPLETE": 2} and worst["best"]["values"]["value"] == 1.0


def test_all_trials_failed_is_one_error(hydra_sweep_runner, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_sweep(hydra_sweep_runner, tmp_path, "hydra.sweeper.n_trials=2",
                  "+x=interval(0, 1)", task=lambda c: math.nan)
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: study ") and "none of its 2 trials completed" in last


def test_a_crashed_or_interrupted_worker_loses_no_trial(hydra_sweep_runner, tmp_path):
    url = f"journal:{tmp_path}/j.log"
    args = ["hydra.sweeper.sampler=grid", "hydra.sweeper.study_name=crash",
            f"hydra.sweeper.storage={url}", "+x=choice(1,2,3,4)"]
    # a worker that died (kill -9) left trial 0 RUNNING
    study = optuna.create_study(study_name="crash", storage=open_storage(url))
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    study.enqueue_trial({"x": 2})
    orphan = study.ask({"x": optuna.distributions.CategoricalDistribution([1, 2, 3, 4])})
    orphan.set_user_attr("worker", {**workers.owner(), "pid": int(done.stdout)})

    def interrupt_at_3(cfg):
        if cfg.x == 3:
            raise KeyboardInterrupt  # Ctrl-C while trial of x=3 runs
        return float(cfg.x)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(hydra_sweep_runner, tmp_path, *args, task=interrupt_at_3)
    returns, results = run_sweep(hydra_sweep_runner, tmp_path, *args, task=lambda c: float(c.x))
    trials = study.get_trials()
    kept = workers.counted(trials)
    assert sorted(t.params["x"] for t in kept) == [1, 2, 3, 4]  # each grid point once
    assert all(t.state == TrialState.COMPLETE for t in kept) and results["n_trials"] == 4
    dropped = [t for t in trials if "discarded" in t.user_attrs]
    # the dead worker's trial 0 (x=2) ran again as trial 1; grid points x=1,3,4 were queued as
    # trials 2-4; Ctrl-C during trial 3 (x=3) gave it back, and it ran as trial 5
    assert [(t.number, t.user_attrs["discarded"]) for t in dropped] == \
        [(0, "abandoned"), (3, "abandoned")]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == {"x": 2}
    assert trials[5].user_attrs["retry_of"] == 3 and trials[5].params == {"x": 3}
