"""`python -m forgetting.run` from a non-editable install, run from another folder."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, TINY, run_cli

pytestmark = pytest.mark.slow


def test_installed_wheel_runs_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    site = tmp_path / "site"
    (wheel,) = wheels.glob("forgetting-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    assert (site / "forgetting" / "conf" / "config.yaml").is_file()
    assert (site / "forgetting" / "conf" / "recipe" / "part1.yaml").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
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
