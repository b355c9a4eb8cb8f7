"""Checks, before Hydra starts, of where a run or sweep will go (called by
forgetting/runs/preflight.py).

- `hydra/launcher=NAME`: a preset in conf/hydra/launcher/ (slurm_cpu, slurm_gpu) or an installed
  launcher (basic, joblib, submitit_local, submitit_slurm, array).
- A SLURM launcher needs `sbatch` on the PATH.
- The output folder (`hydra.sweep.dir` / `hydra.run.dir` when given, else the working folder,
  where outputs/ goes) must be creatable and writable: probed with a temporary file in its
  nearest existing ancestor, which also catches read-only file systems (and works as root).
Each problem is one line (UserError); nothing is created.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from forgetting.core.errors import ConfigError, UserError

INSTALLED_LAUNCHERS = ("basic", "joblib", "submitit_local", "submitit_slurm", "array")
SLURM_LAUNCHERS = ("submitit_slurm", "slurm_cpu", "slurm_gpu")


def launcher_options(config_dir: Path) -> list[str]:
    presets = {p.stem for p in (config_dir / "hydra" / "launcher").glob("*.yaml")}
    return sorted(presets | set(INSTALLED_LAUNCHERS))


def check_launcher(name: str, config_dir: Path) -> None:
    options = launcher_options(config_dir)
    if name not in options:
        raise ConfigError("hydra/launcher", name, f"choose one of {', '.join(options)}")
    if name in SLURM_LAUNCHERS and shutil.which("sbatch") is None:
        raise UserError(f"hydra/launcher={name}: SLURM's sbatch is not on the PATH (load "
                        "SLURM's module, or run on a login node); on a machine without SLURM "
                        "use hydra/launcher=joblib or basic")


def check_writable(key: str, folder: str) -> None:
    """Raise UserError unless `folder` exists as a writable folder or can be created."""
    path = Path(folder).expanduser().absolute()
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{key}={folder}: cannot create it, {ancestor} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as e:
        raise UserError(f"{key}={folder}: not writable ({ancestor}: "
                        f"{e.strerror or type(e).__name__})") from None


def check_launch(overrides: list, config_dir: Path) -> None:
    """Check the launcher choice and the output folders among parsed command-line overrides."""
    folders = {}
    for ov in overrides:
        key = ov.key_or_group
        if key == "hydra/launcher" and not ov.is_sweep_override():
            check_launcher(str(ov.value()), config_dir)
        elif key in ("hydra.sweep.dir", "hydra.run.dir") and not ov.is_sweep_override():
            value = ov.value()
            if isinstance(value, str) and "${" not in value:
                folders[key] = value
    if not folders:
        folders = {"working folder": os.getcwd()}
    for key, folder in folders.items():
        check_writable(key, folder)
