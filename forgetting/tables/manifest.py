"""The manifest of a sweep folder's tables: what each run folder's files were when the tables were
last written, so an update re-reads only the run folders that changed.

`.results.manifest.parquet` (beside results.parquet) holds one record per run folder under the
sweep folder, by path relative to it: the size, mtime and inode of its metrics.json and
history.parquet (and of `.hydra/config.yaml` while it has no metrics.json): its signature
(forgetting/tables/survey.py); its status, the keys its command line set, its config hash, whether
it finished, the mtime that ranks runs of one config (forgetting/runs/resume.py `latest_runs`),
and the columns of its row and per-run tables once read. Not its row: an unchanged run's row is
in `.results.rows.parquet`, and read again from its unchanged folder where that table cannot
give it. The file's metadata records the sweep folder as it was spelled, the signatures of the
tables written with it and that write's stamp (also in those parquet files' metadata), and the
layout of the per-run tables' parts (forgetting/tables/parts.py): the results table or the rows
removed or replaced since then make the manifest stale, and the tables are rebuilt from the run
folders alone. Everything is keyed by the run folder relative to the sweep folder (the tables'
run_dir values are read relative to the sweep folder as recorded, forgetting/tables/spans.py
respell), and a copy's tables (new inodes and mtimes) are known by their stamp: a copied, moved
or renamed sweep folder keeps its manifest, its last good rows and its parts as in place. An
update writes the records of unchanged run folders back as slices of the manifest it loaded.

A run folder is re-read when it is new, when its row is not finished (a claim may have been
taken or released since), or when it was looked at and its signature changed: an update looks at
the folders in the change feed (forgetting/tables/survey.py), a scan at every one. A finished row
is never replaced by the failed row of a damaged metrics.json (truncated, not JSON, a key of
the wrong type: forgetting/rundir/schema.py) unless
`replace`: the earlier row (and per-run tables) are kept from the tables written last time, and
one warning line names the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.core.files import atomic_path
from forgetting.core.metrics import FINISHED
from forgetting.rundir import folders
from forgetting.rundir.identity import folder_state
from forgetting.tables.entry import Entry, row_json
from forgetting.tables.rows import ROW_FORMAT, damaged, read_run
from forgetting.tables.survey import file_stat, insert_sorted, is_run, scan, signature, survey

if TYPE_CHECKING:  # pyarrow is imported where tables are built
    import pyarrow as pa

# the files whose sizes, mtimes and inodes are a run folder's signature (signature())
SIGNED = (folders.METRICS, folders.HISTORY)
ROWS = ".results.rows.parquet"  # the rows as read, before Optuna's trials are merged in
TABLES = (folders.RESULTS, ROWS)  # single files (the per-run tables: forgetting/tables/parts.py)


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
            only: list[str] | None = None, feed: list[str] | None = None
            ) -> tuple[dict[str, Entry], set[str]]:
    """(entries, re-read folders) of the run folders under `root`, re-reading those that changed
    since `old`: every one when `full`; with `feed` (an update: the change feed's folders),
    those survey() finds; without, those whose signature a scan finds changed; only the
    folders `only` (relative paths) without a scan, the other entries kept as they were (an
    array task's update)."""
    if feed is not None and old and not full and "." not in old:
        gone, look, new = survey(root, old, feed)
        entries = {rel: e for rel, e in old.items() if rel not in gone} if gone else dict(old)
        current = {rel: signature(str(root / rel)) for rel in look}
        current.update(new)
    elif only is not None:
        entries = dict(old)
        current = {rel: signature(str(root / rel)) for rel in only}
    else:
        current = scan(root)
        entries = {rel: old.get(rel) for rel in current}
    added = [rel for rel, sig in current.items() if rel not in entries and is_run(sig)]
    if added:  # in their places
        entries = {rel: entries.get(rel) for rel in insert_sorted(list(entries), added)}
    reread = set()
    for rel, sig in current.items():
        before = old.get(rel)
        if not is_run(sig):
            entries.pop(rel, None)  # gone, or no longer a run folder
            continue
        if before is not None and not full and only is None and before.sig == sig \
                and before.status in FINISHED:
            entries[rel] = before
            continue
        entries[rel], read = take(root, rel, sig, before, replace)
        if read:
            reread.add(rel)
    return entries, reread


def take(root: Path, rel: str, sig: str, before: Entry | None, replace: bool
         ) -> tuple[Entry, bool]:
    """(entry, whether it was read) of a run folder that changed: read again, unless its
    metrics.json is damaged where a finished row was (`before`): then the earlier entry is
    kept (its rows come from the last tables) with one warning line, unless `replace`."""
    entry = read_entry(root, rel, sig)
    if (not replace and before is not None and before.status in FINISHED
            and damaged(entry.row)):
        print(f"warning: {root / rel / folders.METRICS}: {entry.row['error']}; its earlier "
              f"{before.status} row kept (--replace takes the failed row)", file=sys.stderr)
        return before, False
    return entry, True


def chosen(entries: dict[str, Entry]) -> list[Entry]:
    """One entry per config hash: the newest finished, else the newest (latest_runs)."""
    from collections import Counter

    keys = [e.key for e in entries.values()]
    twice = {k for k, n in Counter(keys).items() if n > 1 and k is not None}
    if not twice:  # each config in one folder (most sweeps): every entry
        return list(entries.values())
    best: dict[str, tuple[tuple[bool, int], str]] = {}
    for rel, e in entries.items():
        if e.key in twice and (e.key not in best or (e.finished, e.mtime_ns) > best[e.key][0]):
            best[e.key] = ((e.finished, e.mtime_ns), rel)
    keep = {rel for _, rel in best.values()}
    return [e for rel, e in entries.items() if e.key not in twice or rel in keep]


def table_signatures(root: Path) -> dict[str, str]:
    return {name: file_stat(str(root / name)) for name in TABLES}


STAMP = b"forgetting.write"  # a parquet file's metadata key: the write it belongs to


def stamped(table: pa.Table, stamp: str | None) -> pa.Table:
    """`table` marked (in its schema's metadata) as written by the write `stamp`."""
    if stamp is None:
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}), STAMP: stamp})


def stamp_of(path: Path) -> str | None:
    """The write a parquet file belongs to (its footer only), None without."""
    import pyarrow.parquet as pq

    try:
        value = (pq.read_schema(path).metadata or {}).get(STAMP)
    except Exception:
        return None
    return value.decode() if value is not None else None


def unchanged(root: Path, meta: dict, names: tuple[str, ...] = (folders.RESULTS, ROWS),
              now: dict[str, str] | None = None) -> bool:
    """Whether the tables `names` in `root` are those written with the manifest (`meta`):
    the same signatures (in place), or the same write's stamp (a copy: new inodes and mtimes)."""
    now = now if now is not None else table_signatures(root)
    if all(meta.get("tables", {}).get(name) == now[name] for name in names):
        return True
    stamp = meta.get("stamp")
    return stamp is not None and all(stamp_of(root / name) == stamp for name in names)


SHARED = ("swept", "columns")  # JSON shared by most entries: dictionary-encoded, decoded once
LOADED = "loaded"  # load()'s metadata: the manifest's table as loaded (not written)


def load(root: Path) -> tuple[dict[str, Entry], dict]:
    """(entries, metadata) of the manifest in `root`; ({}, {}) when there is none, it is
    unreadable, or the results table or the rows changed since it was written (stale)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(root / folders.MANIFEST, read_dictionary=list(SHARED))
        meta = json.loads(table.schema.metadata[b"forgetting"])
    except Exception:
        return {}, {}
    if meta.get("rows") != ROW_FORMAT or not unchanged(root, meta):
        return {}, {}  # rows of another format, or tables changed since: every folder read
    try:
        c = [table[name].to_pylist() for name in ("rel", "sig", "status", "key", "finished",
                                                   "mtime_ns")]
        shared = {}
        for name in SHARED:  # one decoded object per distinct value (never changed in place)
            shared[name] = []
            for chunk in table[name].chunks:  # each row group its dictionary
                values = [json.loads(v) for v in chunk.dictionary.to_pylist()]
                shared[name] += [values[i] for i in chunk.indices.to_pylist()]
        where = str(root)
        entries = {rel: Entry(rel, sig, None, status, swept, key, finished, mtime, columns,
                              where, i, columns)
                   for i, (rel, sig, status, key, finished, mtime, swept, columns) in
                   enumerate(zip(*c, shared["swept"], shared["columns"]))}
    except (KeyError, TypeError, ValueError, AttributeError):  # another version's: rebuilt
        return {}, {}
    meta[LOADED] = table
    return entries, meta


def save(root: Path, entries: dict[str, Entry], layouts: dict, meta: dict,
         stamp: str | None = None) -> None:
    """Write the manifest (atomically) with the signatures of the tables just written and the
    per-run tables' layouts (forgetting/tables/parts.py): the records of entries unchanged since
    load() (`meta`: its metadata) as slices of the manifest loaded, the others new."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    loaded = meta.get(LOADED)
    pieces: list = []  # in the entries' order: ranges of `loaded` rows, lists of changed entries
    for e in entries.values():
        last = pieces[-1] if pieces else None
        if loaded is not None and e.clean:
            if isinstance(last, range) and last.stop == e.index:
                pieces[-1] = range(last.start, e.index + 1)
            else:
                pieces.append(range(e.index, e.index + 1))
        elif isinstance(last, list):
            last.append(e)
        else:
            pieces.append([e])
    pieces = [loaded.slice(p.start, len(p)) if isinstance(p, range) else records(p)
              for p in pieces] or [records([])]
    table = pa.concat_tables([p.replace_schema_metadata(None) for p in pieces])
    meta = {"root": str(root), "tables": table_signatures(root), "parts": layouts,
            "stamp": stamp, "rows": ROW_FORMAT}
    table = table.replace_schema_metadata({"forgetting": json.dumps(meta)})
    with atomic_path(root / folders.MANIFEST) as tmp:
        pq.write_table(table.unify_dictionaries(), tmp)


def records(values: list[Entry]) -> pa.Table:
    """The manifest's records of `values`."""
    import pyarrow as pa

    return pa.table({
        "rel": pa.array([e.rel for e in values], pa.string()),
        "sig": pa.array([e.sig for e in values], pa.string()),
        "status": pa.array([e.status for e in values], pa.string()),
        "swept": _dictionary([e.swept for e in values]),
        "key": pa.array([e.key for e in values], pa.string()),
        "finished": pa.array([e.finished for e in values], pa.bool_()),
        "mtime_ns": pa.array([e.mtime_ns for e in values], pa.int64()),
        "columns": _dictionary([e.columns for e in values]),
    })


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
