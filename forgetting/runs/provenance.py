"""Provenance recorded with every result: versions, git commit, host."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path


@functools.cache
def describe() -> dict:
    import hydra
    import torch

    import forgetting

    return {"torch": torch.__version__, "hydra": hydra.__version__,
            "forgetting": forgetting.__version__, "python": platform.python_version(),
            "host": platform.node(), **git_state()}


def git_state() -> dict:
    """Commit of the checkout the code runs from (None for an installed package)."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return {"git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit or None, "git_dirty": bool(dirty) if commit else None}
