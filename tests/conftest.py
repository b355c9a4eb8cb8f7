"""Shared fixtures: configs composed by Hydra with tiny overrides, CPU only, no network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from forgetting.config import register_configs
from forgetting.preflight import CONFIG_DIR

REPO = Path(__file__).resolve().parent.parent
CIFAR_JPG = REPO.parent / "shared" / "data" / "cifar10-jpg"
TINY = ["data=synthetic", "model=tiny", "device=cpu", "precision=fp32", "batch_size=64",
        "epochs=2", "data.train_size=640", "data.test_size=200", "quiet=true"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FORGETTING_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def make_cfg():
    """Compose the project's config with overrides (tiny synthetic defaults first)."""
    register_configs()

    def make(*overrides: str, tiny: bool = True):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=(TINY if tiny else []) + list(overrides))
        return OmegaConf.to_object(cfg)

    return make


def run_cli(*args: str, cwd: Path | str = REPO, module: str | None = "forgetting.run",
            env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` (plain `python ARGS` without a module) in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable] + (["-m", module] if module else []) + list(args)
    return subprocess.run(command, cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
