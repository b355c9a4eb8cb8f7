"""The manifest of a sweep folder's tables: what each run folder's files were when the tables
were last written, so an update re-reads only the run folders that changed.

`.results.manifest.parquet` (beside results.parquet) holds one record per run folder under the
sweep folder, by path relative to it: the size, mtime and inode of its metrics.json and
history.parquet (and of `.hydra/config.yaml` while it has no metrics.json): its signature; its
status, the keys its command line set, its config hash, whether it finished, the mtime that
ranks runs of one config (forgetting/runs/resume.py `latest_runs`), and the columns of its
row and per-run tables once read. Not its row: an unchanged run's row is in
`.results.rows.parquet`, and read again from its unchanged folder where that table cannot give
it. The file's metadata records the sweep folder as it was spelled and the signatures of the
tables written with it: the results table or the rows removed or replaced since then make the
manifest stale, and the tables are rebuilt from the run folders alone.

A run folder is re-read when its signature changed, when it is new, or when its row is not
finished (a claim may have been taken or released since). A finished row is never replaced by
the failed row of a damaged metrics.json (truncated, not JSON) unless `replace`: the earlier row
(and per-run tables) are kept from the tables written last time, and one warning line names the
file.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.core.files import atomic_path
from forgetting.core.metrics import FINISHED
from forgetting.runs import folders
from forgetting.runs.resume import folder_state
from forgetting.runs.rows import damaged, read_run

if TYPE_CHECKING:  # pyarrow is imported where tables are built
    import pyarrow as pa

# the files whose sizes, mtimes and inodes are a run folder's signature (signature())
SIGNED = (folders.METRICS, folders.HISTORY)
ROWS = ".results.rows.parquet"  # the rows as read, before Optuna's trials are merged in
TABLES = (folders.RESULTS, ROWS, folders.HISTORY, folders.RECENCY)


@dataclass
class Entry:
    """One run folder as the tables saw it."""
    rel: str  # the run folder relative to the sweep folder ("." for the folder itself)
    sig: str  # sizes, mtimes and inodes of its files (signature())
    row_json: str | None  # forgetting/runs/rows.py's row without run_dir, as JSON; None: not
    status: str | None    # read yet (an unchanged run from the manifest: read on demand)
    swept: list[str]
    key: str | None  # config hash; None: not identifiable (kept as its own row)
    finished: bool
    mtime_ns: int
    columns: dict = field(default_factory=dict)  # table -> [[column, arrow type]] once built
    root: str | None = None  # the sweep folder, where row_json is read from on demand

    @property
    def row(self) -> dict:
        if self.row_json is None:  # unchanged since the manifest: its folder gives the same row
            self.row_json = row_json(read_run(Path(self.root) / self.rel)[0])
        return json.loads(self.row_json)


def row_json(row: dict) -> str:
    return json.dumps({k: v for k, v in row.items() if k != "run_dir"}, default=str)


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"  # a rewrite by rename: a new inode


def signature(run_dir: str) -> str:
    """metrics.json's and history.parquet's stats (a run writes metrics.json last, so a run
    that wrote anything has a new one); without metrics.json, also .hydra/config.yaml's."""
    sig = f"{_stat(run_dir + '/' + folders.METRICS)}|{_stat(run_dir + '/' + folders.HISTORY)}"
    if sig.startswith("-"):
        sig += "|" + _stat(run_dir + "/" + folders.HYDRA_CONFIG)
    return sig


def scan(root: Path) -> dict[str, str]:
    """Every run folder under `root` (a folder holding metrics.json or .hydra/config.yaml),
    relative path -> signature: a listing of each folder that is not a run folder, two stats
    per finished run folder. Run folders and hidden folders (the config index, progress files)
    are not entered."""
    found: dict[str, str] = {}
    stack = [(str(root), ".")]
    while stack:
        path, rel = stack.pop()
        sig = signature(path)
        if not sig.startswith("-") or not sig.endswith("|-"):
            found[rel] = sig
            continue
        try:
            with os.scandir(path) as entries:
                stack += [(e.path, e.name if rel == "." else f"{rel}/{e.name}") for e in entries
                          if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return dict(sorted(found.items(), key=lambda item: natural_key(item[0])))


def natural_key(rel: str) -> list:
    """2 < 10 < 10-HASH: digit runs compare as numbers (forgetting/runs/rows.py find_runs)."""
    if rel.isdigit():  # most run folders (Hydra's job numbers): re.split's parts, at once
        return [["", int(rel), ""]]
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)]
            for part in rel.split("/") if part != "."]


def mtime_of(sig: str) -> int:
    """The mtime that ranks runs of one config: metrics.json's, else .hydra/config.yaml's."""
    parts = sig.split("|")
    for part in (parts[0], parts[-1]):
        if part != "-":
            return int(part.split(":")[1])
    return 0


def read_entry(root: Path, rel: str, sig: str) -> Entry:
    """Read one run folder (its metrics.json, else its Hydra files)."""
    run_dir = root / rel
    row, swept = read_run(run_dir)
    if isinstance(row.get("config_hash"), str):
        key, finished = row["config_hash"], row.get("status") in FINISHED
    else:
        key, finished = folder_state(run_dir)
    return Entry(rel, sig, row_json(row), row.get("status"), swept, key, finished, mtime_of(sig),
                 root=str(root))


def refresh(root: Path, old: dict[str, Entry], full: bool = False, replace: bool = False,
            only: list[str] | None = None) -> tuple[dict[str, Entry], set[str]]:
    """(entries, re-read folders) of the run folders under `root`, re-reading those that changed
    since `old`: every one when `full`; only the folders `only` (relative paths) without a scan,
    the other entries kept as they were (an array task's update). A finished entry kept over a
    damaged metrics.json is not among the re-read: its rows come from the last tables."""
    if only is None:
        current = scan(root)
    else:
        current = {rel: e.sig for rel, e in old.items()}
        for rel in only:
            sig = signature(str(root / rel))
            if not sig.startswith("-") or not sig.endswith("|-"):
                current[rel] = sig
            else:
                current.pop(rel, None)  # gone
        current = dict(sorted(current.items(), key=lambda item: natural_key(item[0])))
    entries, reread = {}, set()
    for rel, sig in current.items():
        before = old.get(rel)
        if before is not None and not full and (
                rel not in only if only is not None
                else before.sig == sig and before.status in FINISHED):
            entries[rel] = before
            continue
        entry = read_entry(root, rel, sig)
        if (not replace and before is not None and before.status in FINISHED
                and damaged(entry.row)):
            print(f"warning: {root / rel / folders.METRICS}: {entry.row['error']}; its earlier "
                  f"{before.status} row kept (--replace takes the failed row)",
                  file=sys.stderr)
            entries[rel] = before
            continue
        entries[rel] = entry
        reread.add(rel)
    return entries, reread


def chosen(entries: dict[str, Entry]) -> list[Entry]:
    """One entry per config hash: the newest finished, else the newest (latest_runs)."""
    best: dict[str, tuple[tuple[bool, int], str]] = {}
    keep = set()
    for rel, e in entries.items():
        if e.key is None:
            keep.add(rel)
        elif e.key not in best or (e.finished, e.mtime_ns) > best[e.key][0]:
            best[e.key] = ((e.finished, e.mtime_ns), rel)
    keep |= {rel for _, rel in best.values()}
    return [e for rel, e in entries.items() if rel in keep]


def table_signatures(root: Path) -> dict[str, str]:
    return {name: _stat(str(root / name)) for name in TABLES}


SHARED = ("swept", "columns")  # JSON shared by most entries: dictionary-encoded, decoded once


def load(root: Path) -> tuple[dict[str, Entry], dict]:
    """(entries, metadata) of the manifest in `root`; ({}, {}) when there is none, it is
    unreadable, or the results table or the rows changed since it was written (stale)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(root / folders.MANIFEST, read_dictionary=list(SHARED))
        meta = json.loads(table.schema.metadata[b"forgetting"])
    except Exception:
        return {}, {}
    now = table_signatures(root)
    if any(meta.get("tables", {}).get(name) != now[name] for name in (folders.RESULTS, ROWS)):
        return {}, {}
    try:
        c = {name: table[name].to_pylist() for name in table.column_names if name not in SHARED}
        shared = {}
        for name in SHARED:  # one decoded object per distinct value (never changed in place)
            shared[name] = []
            for chunk in table[name].chunks:  # each row group its dictionary
                values = [json.loads(v) for v in chunk.dictionary.to_pylist()]
                shared[name] += [values[i] for i in chunk.indices.to_pylist()]
        entries = {rel: Entry(rel, c["sig"][i], None, c["status"][i], shared["swept"][i],
                              c["key"][i], c["finished"][i], c["mtime_ns"][i],
                              shared["columns"][i], str(root))
                   for i, rel in enumerate(c["rel"])}
    except (KeyError, TypeError, ValueError, AttributeError):  # another version's: rebuilt
        return {}, {}
    return entries, meta


def save(root: Path, entries: dict[str, Entry]) -> None:
    """Write the manifest (atomically) with the signatures of the tables just written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = list(entries.values())
    table = pa.table({
        "rel": pa.array([e.rel for e in values], pa.string()),
        "sig": pa.array([e.sig for e in values], pa.string()),
        "status": pa.array([e.status for e in values], pa.string()),
        "swept": _dictionary([e.swept for e in values]),
        "key": pa.array([e.key for e in values], pa.string()),
        "finished": pa.array([e.finished for e in values], pa.bool_()),
        "mtime_ns": pa.array([e.mtime_ns for e in values], pa.int64()),
        "columns": _dictionary([e.columns for e in values]),
    })
    meta = {"root": str(root), "tables": table_signatures(root)}
    table = table.replace_schema_metadata({"forgetting": json.dumps(meta)})
    with atomic_path(root / folders.MANIFEST) as tmp:
        pq.write_table(table, tmp)


def _dictionary(objects: list) -> pa.DictionaryArray:
    """The JSON of `objects` as a dictionary array: each distinct value encoded once (most
    entries share one object: shared(), load()), so 100,000 entries cost no 100,000 strings."""
    import pyarrow as pa

    by_id: dict[int, int] = {}  # object id -> its JSON's index (the objects stay alive)
    index: dict[str, int] = {}  # JSON -> index (equal values of different objects)
    indices = []
    for value in objects:
        i = by_id.get(id(value))
        if i is None:
            i = by_id[id(value)] = index.setdefault(json.dumps(value), len(index))
        indices.append(i)
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()),
                                          pa.array(list(index), pa.string()))


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
