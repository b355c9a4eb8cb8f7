"""The change feed of a sweep folder's tables: `.results.pending`, the run folders written
since the tables were.

Every run adds its folder to the feed of each folder above it that keeps tables (has a
manifest) (`announce`): an update reads the feed instead of a stat of every run folder
(forgetting/tables/survey.py). A writer takes the feed (`take_pending`: moved to
`.results.pending.taking` until its tables are written, `taken`), so a folder announced while
it writes stays in the feed for the next update, and one taken by a writer that crashed is
read by the next (`pending`). An array task's own update: forgetting/tables/deferred.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from forgetting.rundir import folders

TAKING = folders.PENDING + ".taking"  # taken by the writer; left by one that crashed


def add_pending(folder: Path, run_dir: Path) -> None:
    from filelock import FileLock

    rel = os.path.relpath(run_dir, folder)
    with FileLock(folder / (folders.PENDING + ".lock")):
        with open(folder / folders.PENDING, "a") as f:
            f.write(rel + "\n")


def announce(run_dir: Path) -> list[Path]:
    """Add `run_dir` to the change feed of every folder above it that keeps tables (has a
    manifest): a run calls this once it wrote its metrics.json, so that an update of those
    tables re-reads it without a stat of every run folder (forgetting/tables/manifest.py
    survey). Returns those folders."""
    run_dir = Path(os.path.abspath(run_dir))
    fed = [folder for folder in run_dir.parents if (folder / folders.MANIFEST).is_file()]
    for folder in fed:
        add_pending(folder, run_dir)
    return fed


def _folders(*paths: Path) -> list[str]:
    """The run folders listed in `paths` (missing files list none), each once, in order."""
    lines = []
    for path in paths:
        try:
            lines += path.read_text().splitlines()
        except FileNotFoundError:
            pass
    return list(dict.fromkeys(line for line in lines if line))


def pending(folder: Path) -> list[str]:
    """The run folders waiting to be merged (taken by a writer that crashed, then pending)."""
    return _folders(folder / TAKING, folder / folders.PENDING)


def take_pending(folder: Path) -> list[str]:
    """The pending run folders (moved to TAKING until the tables are written)."""
    from filelock import FileLock

    with FileLock(folder / (folders.PENDING + ".lock")):
        try:
            text = (folder / folders.PENDING).read_text()
        except FileNotFoundError:
            text = ""
        if text:
            with open(folder / TAKING, "a") as f:
                f.write(text)
            (folder / folders.PENDING).unlink()
    return _folders(folder / TAKING)


def taken(folder: Path) -> None:
    """The taken folders are in the tables just written."""
    (folder / TAKING).unlink(missing_ok=True)


