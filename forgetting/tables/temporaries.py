"""What a killed writer of a sweep folder's tables leaves behind, removed by the next collect.

Every table file is written atomically (forgetting/core/files.py atomic_path: a temporary
`.NAME.XXXXXXXX.tmp` beside it, then a rename), and the per-run tables' parts are laid out in a
staging folder (forgetting/tables/parts.py). A process killed mid-write (SIGKILL runs no
cleanup) leaves those; `forgetting.collect` removes them, holding the table lock (so no live
writer of these files), before it writes: only the temporaries of the tables' own files, never
another file (a run folder's, the config index's, a user's).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from forgetting.rundir import folders
from forgetting.tables.gather import PER_RUN_TABLES
from forgetting.tables.manifest import ROWS

TEMPORARY = r"[a-z0-9_]{8}\.tmp"  # tempfile.mkstemp's 8 random characters (atomic_path)


def remove_temporaries(folder: Path) -> list[str]:
    """Remove what a killed writer of this folder's tables left (SIGKILL runs no cleanup):
    atomic_path's temporaries of the tables' own files (`.results.csv.XXXXXXXX.tmp`,
    `..results.rows.parquet.XXXXXXXX.tmp`, the parts' `.part-N.parquet.XXXXXXXX.tmp`) and the
    parts' staging folders (`.history.parquet.new`, `.old`); no other file. Call it holding
    the table lock (no other writer of these files is alive). Returns the names removed."""
    own = [folders.RESULTS, folders.RESULTS_CSV, ROWS, folders.MANIFEST]
    pattern = re.compile(f"(?:{'|'.join(re.escape(f'.{name}.') for name in own)}){TEMPORARY}")
    staging = {f".{name}.parquet.{end}" for name in PER_RUN_TABLES for end in ("new", "old")}
    removed = []
    for name in listing(folder):
        path = folder / name
        if pattern.fullmatch(name) and path.is_file():
            path.unlink(missing_ok=True)
        elif name in staging and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            continue
        removed.append(name)
    part = re.compile(r"\.part-\d+\.parquet\." + TEMPORARY)
    for table in PER_RUN_TABLES:
        parts_folder = folder / f"{table}.parquet"
        for name in listing(parts_folder) if parts_folder.is_dir() else ():
            if part.fullmatch(name):
                (parts_folder / name).unlink(missing_ok=True)
                removed.append(f"{table}.parquet/{name}")
    return removed


def listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
