"""Hydra's own launcher test suites, run against `hydra/launcher=array` (issue 12, item 14) and
`hydra/launcher=packed` (every case: another app's jobs run one after another there).

The array launcher runs one point per process (the point the index names), so only the cases
of a one-job sweep fit: `test_sweep_1_job`, `test_sweep_1_job_strict`,
`test_sweep_1_job_strict_and_bad_key` (LauncherTestSuite) and IntegrationTestSuite's one-job
cases. These do not fit, by design: every case that expects the returns of 2 or more jobs from
one process (`test_sweep_2_jobs`, `test_not_sweeping_hydra_overrides`,
`test_sweep_2_optimizers`, `test_sweep_over_unspecified_mandatory_default`,
`test_sweep_and_override`, `test_sweep_with_custom_resolver`, BatchedSweeperTestSuite's
`test_sweep_2_jobs_2_batches`): each array task returns its own point's JobReturn, and the
other points are other processes'.
"""

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from helpers import REPO

pytestmark = pytest.mark.slow

ONE_JOB = ["hydra.launcher.index=0"]


@pytest.mark.parametrize("launcher_name, overrides", [("array", ONE_JOB)])
class TestArrayLauncherOneJob(LauncherTestSuite):
    """The one-job cases of Hydra's LauncherTestSuite (the others are skipped: see above)."""

    @pytest.fixture(autouse=True)
    def _one_job_cases_only(self, request):
        if request.function.__name__ not in ("test_sweep_1_job", "test_sweep_1_job_strict",
                                             "test_sweep_1_job_strict_and_bad_key"):
            pytest.skip("needs several jobs in one process; an array task runs one point")


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({"defaults": [{"override hydra/launcher": "array"}]}, ["-m", *ONE_JOB]),
])
class TestArrayLauncherIntegration(IntegrationTestSuite):
    """Hydra's IntegrationTestSuite: plain Hydra apps (not forgetting's), one job each, in
    subprocesses that find our plugin through PYTHONPATH."""

    @pytest.fixture(autouse=True)
    def _plugin_on_the_path(self, monkeypatch):
        monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.mark.parametrize("launcher_name, overrides", [("packed", [])])
class TestPackedLauncher(LauncherTestSuite):
    """Every case of Hydra's LauncherTestSuite: another app's jobs run one after another."""


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({"defaults": [{"override hydra/launcher": "packed"}]}, ["-m"]),
])
class TestPackedLauncherIntegration(IntegrationTestSuite):
    """Hydra's IntegrationTestSuite against `hydra/launcher=packed` (plain Hydra apps)."""

    @pytest.fixture(autouse=True)
    def _plugin_on_the_path(self, monkeypatch):
        monkeypatch.setenv("PYTHONPATH", str(REPO))
