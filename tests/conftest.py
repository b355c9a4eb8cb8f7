"""Shared fixtures: configs composed by Hydra with tiny overrides, CPU only, no network.
Helpers shared by several test files live in tests/helpers.py."""

from __future__ import annotations

import os

# Under pytest-xdist (make test: one worker per core) each worker and the runs it starts use one
# torch thread: two workers' trainings on two cores would otherwise fight over both (set before
# torch is imported; subprocesses inherit it).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from forgetting.runs.configs import CONFIG_DIR, register_configs
from helpers import TINY


def pytest_collection_modifyitems(config, items):
    """The local SLURM cluster's tests first (the 200-task array is the longest test), all in
    one xdist group: they share the cluster's CPUs, so one worker runs them one after another
    while the others run the rest."""
    slurm = [item for item in items if item.get_closest_marker("slurm")]
    for item in slurm:
        item.add_marker(pytest.mark.xdist_group("slurm"))
    items[:] = slurm + [item for item in items if not item.get_closest_marker("slurm")]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FORGETTING_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """train(threads=N) sets torch's thread count for the process: restore it after a test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _hydra_version_base_kept():
    """Composing a config (version_base="1.3") sets Hydra's global version base; Hydra's own
    test suites (tests/test_optuna_sweeper.py, tests/test_launcher_suites.py) expect it as the
    session started (unset: then a job changes into its folder). Put it back after each test."""
    from hydra.version import VersionBase

    base = VersionBase.instance().version_base
    yield
    VersionBase.instance().version_base = base


@pytest.fixture
def make_cfg():
    """Compose the project's config with overrides (tiny synthetic defaults first)."""
    register_configs()

    def make(*overrides: str, tiny: bool = True):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=(TINY if tiny else []) + list(overrides))
        return OmegaConf.to_object(cfg)

    return make
