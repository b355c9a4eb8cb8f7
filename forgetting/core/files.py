"""Atomic file writes: a temporary file in the same folder, then a rename.

Readers (the collector, concurrent sweeps) see either the old file or the whole new one, never a
half-written file. The file gets the mode a plain `open()` would give it (0666 less the umask):
`mkstemp` makes its files 0600, which on a shared file system hides metrics, tables and the
tensor cache from collaborators.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files `atomic_path` left in `folder` when its process was killed
    mid-write (SIGKILL runs no cleanup). Call it only while no other process can be writing
    there (a claimed run folder). Returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (/proc/self/status),
    else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_cache(path) -> dict:
    """A JSON cache file's contents; {} when it is missing or unreadable."""
    try:
        known = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def write_cache(path, known: dict) -> None:
    """Write a JSON cache file; an unwritable cache only means measuring again next time."""
    try:
        atomic_write_json(path, known)
    except OSError:
        pass


def atomic_write_parquet(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def atomic_write_rows(path, rows: list[dict]) -> None:
    """Rows of plain values as a parquet table, through pyarrow alone: a run's own files are
    written without importing pandas (a third of a second of every run's start-up)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def atomic_write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def atomic_torch_save(obj, path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
