"""Checks, before Hydra starts, of where a run or sweep will go (called by
forgetting/runs/preflight.py).

- `hydra/launcher=NAME`: a preset in conf/hydra/launcher/ (slurm_cpu, slurm_gpu) or an installed
  launcher (basic, joblib, submitit_local, submitit_slurm, array, packed).
- `hydra.launcher.pack`: a whole number >= 1, or auto (forgetting/runs/packs.py).
- A SLURM launcher needs `sbatch` on the PATH.
- The output folder (`hydra.sweep.dir` / `hydra.run.dir` when given, else the working folder,
  where outputs/ goes) must be creatable and writable: probed with a temporary file in its
  nearest existing ancestor, which also catches read-only file systems (and works as root).
Each problem is one line (UserError); nothing is created.

`forgetting_app(config)`: whether a Hydra config is forgetting's app (our plugins serve any Hydra
app, but write forgetting's files and check forgetting's metric names only for ours).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

from forgetting.core.errors import UserError
from forgetting.runs.overrides import choice_error

INSTALLED_LAUNCHERS = ("basic", "joblib", "submitit_local", "submitit_slurm", "array",
                       "packed")
SLURM_LAUNCHERS = ("submitit_slurm", "slurm_cpu", "slurm_gpu")


RESULTS_CALLBACK = "forgetting.runs.sweep_end.ResultsTable"


def forgetting_app(config) -> bool:
    """Whether a composed Hydra config is forgetting's app: the one whose sweeps end with our
    results table (conf/config.yaml installs the callback)."""
    from omegaconf import OmegaConf

    callbacks = OmegaConf.select(config, "hydra.callbacks", default=None) or {}
    return any(OmegaConf.select(c, "_target_", default=None) == RESULTS_CALLBACK
               for c in callbacks.values() if c is not None)


def launcher_options(config_dir: Path) -> list[str]:
    presets = {p.stem for p in (config_dir / "hydra" / "launcher").glob("*.yaml")}
    return sorted(presets | set(INSTALLED_LAUNCHERS))


def check_launcher(name: str, config_dir: Path) -> None:
    options = launcher_options(config_dir)
    if name not in options:
        raise choice_error("hydra/launcher", name, options)
    if name in SLURM_LAUNCHERS and shutil.which("sbatch") is None:
        raise UserError(f"hydra/launcher={name}: SLURM's sbatch is not on the PATH (load "
                        "SLURM's module, or run on a login node); on a machine without SLURM "
                        "use hydra/launcher=joblib or basic")


def check_writable(key: str, folder: str) -> None:
    """Raise UserError unless `folder` exists as a writable folder or can be created: a
    temporary folder is made (and removed) in its nearest existing ancestor, and the message
    names the folder that cannot be created and why."""
    path = Path(folder).expanduser().absolute()
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{key}={folder}: cannot create it, {ancestor} is not a folder")
    missing = path.relative_to(ancestor).parts
    target = ancestor / missing[0] if missing else ancestor
    try:
        os.rmdir(tempfile.mkdtemp(dir=ancestor, prefix=".write-test-"))
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why = f"{ancestor} is not writable ({reason})"
        elif e.errno == errno.ENOENT:  # the folder exists: its file system takes no new ones
            why = f"{ancestor} accepts no new folders ({reason})"
        else:
            why = f"{reason} in {ancestor}"
        what = f"cannot create {target}" if missing else "cannot write into it"
        raise UserError(f"{key}={folder}: {what}: {why}") from None


def check_launch(overrides: list, config_dir: Path) -> None:
    """Check the launcher choice and the output folders among parsed command-line overrides."""
    folders = {}
    for ov in overrides:
        key = ov.key_or_group
        if key == "hydra/launcher" and not ov.is_sweep_override():
            check_launcher(str(ov.value()), config_dir)
        elif key == "hydra.launcher.pack":
            from forgetting.runs.packs import pack_setting  # torch: only for this key

            pack_setting(ov.value())
        elif key in ("hydra.sweep.dir", "hydra.run.dir") and not ov.is_sweep_override():
            value = ov.value()
            if isinstance(value, str) and "${" not in value:
                folders[key] = value
    if not folders:
        folders = {"working folder": os.getcwd()}
    for key, folder in folders.items():
        check_writable(key, folder)


def guard_sbatch() -> None:
    """Make a SLURM submission that sbatch refuses (unknown partition, too much memory, ...)
    one `error:` line with sbatch's own message and exit code 2, instead of submitit's
    traceback. Hydra's submitit launcher has no hook for it, so its `launch` is wrapped once;
    only errors whose message comes from sbatch are translated."""
    try:
        from submitit.core.utils import FailedJobError

        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import (
            BaseSubmititLauncher,
        )
    except ImportError:  # the launcher is not installed: nothing to guard
        return
    launch = BaseSubmititLauncher.launch
    if getattr(launch, "guarded", False):
        return

    def guarded(self, job_overrides, initial_job_idx):
        try:
            with contextlib.redirect_stderr(_WithoutSbatch(sys.stderr)):  # submitit echoes it
                return launch(self, job_overrides, initial_job_idx)
        except FailedJobError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if "sbatch" in ln]
            if not lines:
                raise
            said = "; ".join(dict.fromkeys(ln.replace("sbatch: error: ", "") for ln in lines))
            print(f"error: hydra/launcher: sbatch refused the jobs: {said}", file=sys.stderr)
            raise SystemExit(2) from None

    guarded.guarded = True
    BaseSubmititLauncher.launch = guarded


class _WithoutSbatch(io.TextIOBase):
    """A stderr that passes everything on except what submitit echoes of a failed sbatch (its
    message becomes our one line)."""

    def __init__(self, stream):
        self.stream = stream
        self.dropped = False

    def write(self, text: str) -> int:
        if text.startswith("sbatch: ") or (self.dropped and text == "\n"):
            self.dropped = not self.dropped if text == "\n" else True
            return len(text)
        self.dropped = False
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()
