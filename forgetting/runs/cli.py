"""The tools' command lines (collect, analyze, plot, bench): argparse, errors as one line."""

import argparse
from pathlib import Path


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (`error: ...`, exit code 2), like every
    other bad input, instead of the usage block followed by the message."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def missing_folder(dirs) -> str | None:
    """The one-line error for the first of `dirs` that is not a folder, or None."""
    for folder in dirs:
        if not folder.is_dir():
            return f"error: DIR={str(folder)!r}: no such folder"
    return None


NO_RUNS = "no run folders (metrics.json or .hydra/config.yaml) found"


def nothing_finished(dirs) -> str | None:
    """Why the runs under `dirs` give nothing to draw or judge (no run folders, or none of
    them finished), or None when some run finished (ok, diverged, pruned). Walks the folders
    and reads run folders' metrics.json only until the first finished one: one read in a sweep
    that has results."""
    from collections import Counter

    from forgetting.core.metrics import FAILED, FINISHED
    from forgetting.rundir.identity import read_metrics
    from forgetting.tables import walk

    statuses: Counter = Counter()
    for folder in dirs:
        for rel, _ in walk(Path(folder)):
            status = (read_metrics(Path(folder) / rel) or {}).get("status", FAILED)
            if status in FINISHED:
                return None
            statuses[status] += 1
    if not statuses:
        return NO_RUNS
    counts = ", ".join(f"{n} {status}" for status, n in statuses.items())
    return f"none of its {sum(statuses.values())} runs finished ({counts})"
