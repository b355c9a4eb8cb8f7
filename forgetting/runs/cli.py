"""The tools' command lines (collect, analyze, plot, bench): argparse, errors as one line."""

import argparse


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
