"""Shared fixtures: configs composed by Hydra with tiny overrides, CPU only, no network.
Helpers shared by several test files live in tests/helpers.py."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from forgetting.runs.configs import CONFIG_DIR, register_configs
from helpers import TINY


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
