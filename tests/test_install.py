"""`python -m forgetting.run` from a non-editable install, run from another folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO, TINY, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(site, elsewhere): the wheel installed into `site`, and an empty folder to run from."""
    tmp_path = tmp_path_factory.mktemp("install")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    site = tmp_path / "site"
    (wheel,) = wheels.glob("forgetting-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return site, elsewhere


def test_installed_wheel_runs_from_another_folder(installed):
    site, elsewhere = installed
    assert (site / "forgetting" / "conf" / "config.yaml").is_file()
    assert (site / "forgetting" / "conf" / "recipe" / "part1.yaml").is_file()

    env = {"PYTHONPATH": str(site)}
    where = run_cli("-c", "import forgetting; print(forgetting.__file__)", cwd=elsewhere,
                    env=env, module=None)
    assert where.returncode == 0 and where.stdout.strip().startswith(str(site))
    proc = run_cli("-m", *TINY, "lr=1,2", cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr
    (table,) = (elsewhere / "outputs" / "multirun").glob("*/*/results.parquet")
    assert len(pd.read_parquet(table)) == 2
    metrics = json.loads(next(table.parent.glob("0/metrics.json")).read_text())
    assert metrics["status"] == "ok" and metrics["git_commit"] is None


def test_installed_wheel_carries_the_optuna_sweeper_and_presets(installed):
    site, elsewhere = installed
    plugin = site / "hydra_plugins" / "forgetting_optuna_sweeper"
    assert (plugin / "sweeper.py").is_file() and (plugin / "config.py").is_file()
    assert not (site / "hydra_plugins" / "__init__.py").exists()  # namespace package
    assert (site / "forgetting" / "sweeps" / "quick_optuna_lr_subset.yaml").is_file()
    env = {"PYTHONPATH": str(site)}
    job = run_cli("+sweep=quick_forgetting_probe", "+trainset=half_plain", "--cfg", "job",
                  cwd=elsewhere, env=env)
    assert job.returncode == 0, job.stderr
    assert "subset: 0.5" in job.stdout and "every: 4" in job.stdout
    found = run_cli("-c", DISCOVER, cwd=elsewhere, env=env, module=None)
    assert found.returncode == 0, found.stderr
    where, names = found.stdout.strip().splitlines()
    assert where.startswith(str(plugin)) and "OptunaStudySweeper" in names.split(",")
    folder = elsewhere / "quick"
    proc = run_cli("+sweep=quick_optuna_lr_subset", *TINY, "subset=1.0",
                   "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={folder}", cwd=elsewhere,
                   env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(pd.read_parquet(folder / "results.parquet")) == 2
    assert (folder / "optimization_results.yaml").is_file()


# Hydra's own plugin scan (no import of forgetting first)
DISCOVER = """
import hydra_plugins.forgetting_optuna_sweeper as p
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
print(p.__file__)
print(",".join(c.__name__ for c in Plugins.instance().discover(Sweeper)))
"""


# ------------------------------------------------- the editable install of the test environment

PLAIN_APP = """
import hydra


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg) -> float:
    print("job", cfg.x, flush=True)
    return float(cfg.x)


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("overrides, jobs", [
    (["hydra/launcher=packed", "+x=1,2"], 2),
    (["hydra/launcher=array", "hydra.launcher.index=1", "+x=1,2"], 1),
    (["hydra/sweeper=optuna_study", "hydra.sweeper.n_trials=2", "+x=interval(0,1)"], 2),
])
def test_our_plugins_serve_any_hydra_app(tmp_path, overrides, jobs):
    """The environment's editable install (`make install`, `pip install -e .`) leaves our
    plugins visible to Hydra's scan for a plain app in another folder, with no PYTHONPATH and
    nothing of ours imported by the app."""
    (tmp_path / "app.py").write_text(PLAIN_APP)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "app.py", "-m", *overrides], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("job ") == jobs, proc.stdout
