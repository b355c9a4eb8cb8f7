"""Which run folders a sweep folder holds, and which changed: a run folder's signature (the
stats of its files), a scan of every run folder (a stat of each), and an update's survey (a
listing of the folders that hold run folders, the change feed and the unfinished ones: no stat
of every run folder). Paths are relative to the sweep folder, in natural order (2 < 10 <
10-rerun).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.core.metrics import FINISHED
from forgetting.rundir import folders
from forgetting.tables.order import natural_key

if TYPE_CHECKING:
    from forgetting.tables.entry import Entry

TABLE_SUFFIX = ".parquet"  # a sweep's table (a file, or a folder of parts): never a run folder


def file_stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"  # a rewrite by rename: a new inode


def signature(run_dir: str) -> str:
    """metrics.json's and history.parquet's stats (a run writes metrics.json last, so a run
    that wrote anything has a new one); without metrics.json, also .hydra/config.yaml's."""
    sig = f"{file_stat(f'{run_dir}/{folders.METRICS}')}|{file_stat(f'{run_dir}/{folders.HISTORY}')}"
    if sig.startswith("-"):
        sig += "|" + file_stat(run_dir + "/" + folders.HYDRA_CONFIG)
    return sig


def scan(root: Path, start: str = ".") -> dict[str, str]:
    """Every run folder under `root` (a folder holding metrics.json or .hydra/config.yaml),
    relative path -> signature, in natural order: walk()'s."""
    return dict(sorted(walk(root, start), key=lambda item: natural_key(item[0])))


def walk(root: Path, start: str = ".") -> Iterator[tuple[str, str]]:
    """(relative path, signature) of each run folder under `root`, as found: a listing of each
    folder that is not a run folder, two stats per finished run folder. Run folders, hidden
    folders (the config index, progress files) and tables are not entered. `start`: only under
    this folder (relative to `root`)."""
    stack = [(str(root) if start == "." else f"{root}/{start}", start)]
    while stack:
        path, rel = stack.pop()
        sig = signature(path)
        if is_run(sig):
            yield rel, sig
            continue
        try:
            with os.scandir(path) as entries:
                stack += [(e.path, e.name if rel == "." else f"{rel}/{e.name}") for e in entries
                          if not e.name.startswith(".") and not e.name.endswith(TABLE_SUFFIX)
                          and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue


def is_run(sig: str) -> bool:
    return not sig.startswith("-") or not sig.endswith("|-")


def survey(root: Path, old: dict[str, Entry], feed: list[str]
           ) -> tuple[set[str], set[str], dict[str, str]]:
    """(gone, to look at, new: relative path -> signature): the run folders under `root` as
    an update sees them, without a stat of every run folder. A listing of each folder that
    holds run folders finds the new ones (scanned) and those gone; the change feed (`feed`:
    forgetting/tables/feed.py) and the unfinished ones are looked at (a stat each). A
    finished run folder rewritten by other means than a run is seen by a scan only
    (`collect --scan`)."""
    parents = {"."}
    for rel in old:
        if "/" in rel:
            steps = rel.split("/")
            parents.update("/".join(steps[:k]) for k in range(1, len(steps)))
    listed, new = set(), {}
    for parent in parents:
        try:  # names only (a known run folder is a folder; a new name is looked at)
            names = os.listdir(root if parent == "." else root / parent)
        except OSError:
            continue  # gone, with its run folders
        listed.update(names if parent == "." else (f"{parent}/{name}" for name in names))
    for rel in listed - old.keys() - parents:
        name = rel.rsplit("/", 1)[-1]
        if not name.startswith(".") and not name.endswith(TABLE_SUFFIX) \
                and os.path.isdir(root / rel) and not os.path.islink(root / rel):
            new.update(scan(root, rel))
    gone = old.keys() - listed
    look = {rel for rel in feed if rel in old and rel not in gone}
    look.update(rel for rel, e in old.items() if e.status not in FINISHED and rel not in gone)
    return gone, look, new


def insert_sorted(rels: list[str], more: list[str]) -> list[str]:
    """`rels` (in natural order) with `more` in their places."""
    if len(more) > len(rels) // 16:
        return sorted(rels + more, key=natural_key)
    rels = list(rels)
    for rel in more:
        bisect.insort(rels, rel, key=natural_key)
    return rels


def any_run(root: Path) -> bool:
    """Whether `root` holds a run folder (stops at the first)."""
    if (root / folders.METRICS).is_file() or (root / folders.HYDRA_CONFIG).is_file():
        return True
    try:
        with os.scandir(root) as entries:
            for e in entries:
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False) \
                        and any_run(Path(e.path)):
                    return True
    except OSError:
        pass
    return False
