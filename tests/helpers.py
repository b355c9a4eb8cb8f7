"""Helpers shared by the tests: paths, the tiny config, subprocess runs, one-line error checks,
constructed run folders, a folder's files hashed (to show a command left it as it was)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CIFAR_JPG = REPO.parent / "shared" / "data" / "cifar10-jpg"
# report=false: a sweep's report.html costs more than its tiny training (3-6 s a sweep);
# tests/test_report.py and the tests that check the report pass report=true after TINY
TINY = ["data=synthetic", "model=tiny", "device=cpu", "precision=fp32", "batch_size=64",
        "epochs=2", "data.train_size=640", "data.test_size=200", "quiet=true", "report=false"]


def run_cli(*args: str, cwd: Path | str = REPO, module: str | None = "forgetting.run",
            env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` (plain `python ARGS` without a module) in a subprocess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable] + (["-m", module] if module else []) + list(args)
    return subprocess.run(command, cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def head_commit() -> str:
    """The commit checked out in the repository the tests run from."""
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def one_line_error(proc: subprocess.CompletedProcess, code: int | None = 2) -> str:
    """The single `error: ...` line a failed command printed (asserted: one line, no
    traceback, exit code `code` unless None); returned for the caller's own checks."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stderr)
    return lines[0]


def write_run(folder: Path, status: str = "ok", config: dict | None = None,
              **metrics) -> Path:
    """A run folder holding only a metrics.json with `status`, `config` and `metrics`."""
    folder.mkdir(parents=True)
    record = {"status": status, **metrics}
    if config is not None:
        record["config"] = config
    (folder / "metrics.json").write_text(json.dumps(record))
    return folder


def tree_hash(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` by relative path, sorted: a file's sha256 of its
    bytes, a folder `dir`. Equal before and after a command: it changed, added and removed
    nothing there."""
    return {str(p.relative_to(folder)): "dir" if p.is_dir()
            else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*"))}
