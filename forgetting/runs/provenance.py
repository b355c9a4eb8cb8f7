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


def repository_root() -> Path | None:
    """The git checkout this package runs from, found by walking up to a `.git` (a folder, or
    a file in a worktree) whose tree holds this very file; None for an installed package (a
    copy in site-packages, even one inside a checkout's virtualenv)."""
    here = Path(__file__).resolve()
    package = here.parent.parent  # forgetting/
    for folder in here.parents:
        if (folder / ".git").exists():
            return folder if package.parent == folder else None
    return None


def git_state() -> dict:
    """Commit of the checkout the code runs from (None for an installed package)."""
    here = repository_root()
    if here is None:
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
