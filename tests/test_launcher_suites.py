"""Hydra's own launcher test suites, run against `hydra/launcher=array` (issue 12, item 14) and
`hydra/launcher=packed` (every case: another app's jobs run one after another there).

The array launcher runs one point per process (the point the index names), so only the cases
whose checks hold for one job's return fit: `test_sweep_1_job`, `test_sweep_1_job_strict`,
`test_sweep_1_job_strict_and_bad_key`, `test_not_sweeping_hydra_overrides`,
`test_sweep_with_custom_resolver` (LauncherTestSuite) and IntegrationTestSuite's one-job
cases. These do not fit, by design: every case that expects the returns of 2 or more jobs from
one process (`test_sweep_2_jobs`, `test_sweep_2_optimizers`,
`test_sweep_over_unspecified_mandatory_default`, `test_sweep_and_override`,
BatchedSweeperTestSuite's `test_sweep_2_jobs_2_batches`): each array task returns its own
point's JobReturn, and the other points are other processes'.

The integration suites run plain Hydra apps in subprocesses without PYTHONPATH: they find our
plugins through the environment's install alone (`make install`: an editable install Hydra's
plugin scan sees, backend/forgetting_build.py).
"""

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

pytestmark = pytest.mark.slow

ONE_JOB = ["hydra.launcher.index=0"]
ONE_JOB_CASES = ("test_sweep_1_job", "test_sweep_1_job_strict",
                 "test_sweep_1_job_strict_and_bad_key", "test_not_sweeping_hydra_overrides",
                 "test_sweep_with_custom_resolver")


@pytest.fixture
def installed_plugins_only(monkeypatch):
    """Subprocesses see our plugins through the install, not through PYTHONPATH."""
    monkeypatch.delenv("PYTHONPATH", raising=False)


@pytest.mark.parametrize("launcher_name, overrides", [("array", ONE_JOB)])
class TestArrayLauncherOneJob(LauncherTestSuite):
    """The one-job cases of Hydra's LauncherTestSuite (the others are skipped: see above)."""

    @pytest.fixture(autouse=True)
    def _one_job_cases_only(self, request):
        if request.function.__name__ not in ONE_JOB_CASES:
            pytest.skip("needs several jobs in one process; an array task runs one point")


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({"defaults": [{"override hydra/launcher": "array"}]}, ["-m", *ONE_JOB]),
])
@pytest.mark.usefixtures("installed_plugins_only")
class TestArrayLauncherIntegration(IntegrationTestSuite):
    """Hydra's IntegrationTestSuite: plain Hydra apps (not forgetting's), one job each, in
    subprocesses that find our plugin through the install."""


@pytest.mark.parametrize("launcher_name, overrides", [("packed", [])])
class TestPackedLauncher(LauncherTestSuite):
    """Every case of Hydra's LauncherTestSuite: another app's jobs run one after another."""


@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    ({"defaults": [{"override hydra/launcher": "packed"}]}, ["-m"]),
])
@pytest.mark.usefixtures("installed_plugins_only")
class TestPackedLauncherIntegration(IntegrationTestSuite):
    """Hydra's IntegrationTestSuite against `hydra/launcher=packed` (plain Hydra apps)."""
