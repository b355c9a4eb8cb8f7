"""Per-run tables (history.parquet, recency.parquet, steps.parquet) gathered into one table per
sweep folder, through pyarrow: the chosen runs' rows in the runs' order, with each run's key
columns (lr, subset, batch_size, seed, its swept keys, Optuna's trial) in front and `run_dir`
last.

An update takes the rows of unchanged runs from the table written last time (slices of it, not
copies) and reads only the runs that changed (forgetting/tables/manifest.py); the per-run tables
are gathered a part at a time (forgetting/tables/parts.py). Column order and types are a function
of the runs alone (first appearance in the runs' order; each column's types promoted as pyarrow
does, a column whose types pyarrow cannot unify is text), so an update and a full rebuild give
the same table. Where the table written last time holds a value the new column type cannot
take (the row of a run re-read since, e.g. an unfinished run's literal `${seed}` stored by an
older version), only the rows kept from it are cast: an update never fails on a type. Tables
too large to gather (a run's examples.parquet, one row per training example) are read lazily:
`run_files` lists the files for `pyarrow.dataset.dataset(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.tables.columns import (
    CAST_ERRORS,
    canonical_schema,
    conform,
    row_fields,
    shared,
)
from forgetting.tables.entry import Entry
from forgetting.tables.manifest import ROWS, SIGNED
from forgetting.tables.rows import KEY_COLUMNS
from forgetting.tables.spans import in_order, index_of, respell, runs_of

if TYPE_CHECKING:
    import pyarrow as pa

PER_RUN_TABLES = ("history", "recency", "steps")
CHUNK = 256  # tables (or rows) joined at a time


def run_dir_of(root: Path, entry: Entry) -> str:
    return str(root) if entry.rel == "." else f"{root}/{entry.rel}"


def run_table(root: Path, entry: Entry, name: str) -> pa.Table | None:
    """The run's table `name` with its key columns and run_dir; None when the run has none or
    it is unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filename = f"{name}.parquet"
    if filename in SIGNED and entry.sig.split("|")[SIGNED.index(filename)] == "-":
        return None
    run_dir = run_dir_of(root, entry)
    try:
        table = pq.ParquetFile(f"{run_dir}/{filename}").read()
    except Exception:
        return None
    row = entry.row
    extra = ["trial"] if row.get("trial") is not None else []  # Optuna's
    for column in KEY_COLUMNS + [k for k in entry.swept if k not in KEY_COLUMNS] + extra:
        if column not in table.column_names:
            table = table.add_column(0, column, _repeat(row.get(column), table.num_rows))
    if "run_dir" in table.column_names:
        table = table.drop_columns(["run_dir"])
    column = pa.array([run_dir] * table.num_rows, pa.string())
    return table.append_column("run_dir", column).replace_schema_metadata(None)


def row_table(root: Path, entry: Entry) -> pa.Table:
    """The run's row of the results table (one row; run_dir last)."""
    import pyarrow as pa

    row = {**entry.row, "run_dir": run_dir_of(root, entry)}
    try:
        return pa.Table.from_pylist([row])
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.Table.from_pylist([{k: v if isinstance(v, (int, float, str, bool))
                                      or v is None else str(v) for k, v in row.items()}])


def read_table(root: Path, entry: Entry, name: str) -> pa.Table | None:
    """The run's table `name` ("rows": its row), its columns recorded in the entry."""
    table = row_table(root, entry) if name == "rows" else run_table(root, entry, name)
    fields = [] if table is None else [[f.name, str(f.type)] for f in table.schema]
    entry.columns = {**entry.columns, name: shared(fields)}  # a new dict: others may share
    return table


def _repeat(value, n: int) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array([value] * n)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([str(value)] * n, pa.string())


def gather(root: Path, chosen: list[Entry], reread: set[str], name: str,
           old: pa.Table | None, schema: pa.Schema | None = None,
           tables: dict[str, pa.Table | None] | None = None) -> pa.Table:
    """The gathered table `name` of the chosen runs ("rows": their rows), with `schema` (by
    default theirs, canonical_schema): unchanged runs' rows from `old` (the table written last
    time, or None), the others read from their folders (`tables`: those read already, by
    relative path). The unchanged runs' rows are slices of `old`, not copies: the work is
    vectorized over the runs, and Python's only over the runs read."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if old is not None and "run_dir" not in old.column_names:  # a table of no runs' columns
        old = None if old.num_rows else pa.table({"run_dir": pa.array([], pa.string())})
    run_dirs = [run_dir_of(root, e) for e in chosen]
    if old is None:
        cached = np.zeros(len(chosen), bool)
        read = np.ones(len(chosen), bool)
    else:  # 0: read it; 1: its rows are in `old` if it is there; 2: it had no such table
        state = np.fromiter((0 if e.rel in reread or name not in e.columns else
                             1 if e.columns[name] else 2 for e in chosen), np.int8, len(chosen))
        old_runs = runs_of(old)
        if old_runs is None:  # a run's rows in two places (not written here): grouped
            old = old.take(pc.sort_indices(old["run_dir"]))
            old_runs = runs_of(old)
        seg = index_of(run_dirs, old_runs[0])
        cached = (state == 1) & (seg >= 0)
        read = (state == 0) | ((state == 1) & (seg < 0))
    to_read = np.flatnonzero(read).tolist()
    new = read_runs(root, [chosen[i] for i in to_read], [run_dirs[i] for i in to_read], name,
                    tables)
    schema = schema if schema is not None else canonical_schema(chosen, name)
    if not cached.any():
        return conform(new, schema) if new is not None else schema.empty_table()
    try:  # the old rows in the runs' schema at once; where some cannot be cast (an
        # unfinished run's row of another type, re-read since), only the rows kept are cast
        tables_ = {1: conform(old, schema, strict=True),
                   2: conform(new, schema, strict=True) if new is not None else None}
        conformed = True
    except CAST_ERRORS:
        tables_, conformed = {1: old, 2: new}, False
    source = np.where(cached, 1, 0).astype(np.int8)
    where = np.where(cached, seg, -1)
    if new is not None:  # the read runs with rows: their segments of `new`
        new_runs = runs_of(new)
        at = index_of(run_dirs, new_runs[0])
        source[at >= 0] = 2
        where = np.where(at >= 0, at, where)
    spans = {1: old_runs[1:], 2: new_runs[1:] if new is not None else None}
    keep = source > 0
    source, where = source[keep], where[keep]
    if not len(source):
        return schema.empty_table()
    breaks = np.flatnonzero((source[1:] != source[:-1]) | (where[1:] != where[:-1] + 1)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.append(breaks, len(source))
    parts = []
    for b, e in zip(starts.tolist(), ends.tolist()):  # O(changed runs) slices
        src = int(source[b])
        first, last = spans[src][0][where[b]], spans[src][1][where[e - 1]]
        part = tables_[src].slice(first, last - first)
        parts.append(part if conformed else conform(part, schema))
    return pa.concat_tables(parts)


def read_runs(root: Path, chosen: list[Entry], run_dirs: list[str], name: str,
              tables: dict[str, pa.Table | None] | None) -> pa.Table | None:
    """The table `name` of the runs read from their folders, in their order (None: no rows);
    their columns recorded in their entries."""
    import pyarrow as pa

    fresh, rows = {}, []
    for d, e in zip(run_dirs, chosen):
        fields = row_fields({**e.row, "run_dir": d}) if name == "rows" else None
        if fields is not None:  # plain scalars: converted together below
            e.columns = {**e.columns, name: shared(fields)}  # a new dict: others may share
            rows.append((d, e))
            continue
        table = tables[e.rel] if tables and e.rel in tables else read_table(root, e, name)
        if table is not None:  # tables of one schema are conformed together, and joined
            group = fresh.setdefault(tuple(map(tuple, e.columns[name])), [])
            group.append(table)  # in chunks: thousands of small tables cost 10x the memory
            if len(group) % CHUNK == 0:
                group[-CHUNK:] = [pa.concat_tables(group[-CHUNK:]).combine_chunks()]
    schema = canonical_schema(chosen, name)
    pieces = []
    for start in range(0, len(rows), CHUNK):  # rows decoded a chunk at a time
        chunk = [{**e.row, "run_dir": d} for d, e in rows[start:start + CHUNK]]
        try:
            pieces.append(pa.Table.from_pylist(chunk, schema=schema))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pieces += [conform(pa.Table.from_pylist([r]), schema) for r in chunk]
    pieces += [conform(pa.concat_tables(group), schema) for group in fresh.values()]
    if not pieces:
        return None
    new = pa.concat_tables(pieces).combine_chunks()
    return in_order(new, run_dirs) if len(pieces) > 1 else new  # one piece: in order


def read_old(root: Path, meta: dict) -> pa.Table | None:
    """The rows written with the manifest (`.results.rows.parquet`) when unchanged since, else
    None; its run_dir values say the sweep folder as `root` does (spelled otherwise then, or
    moved)."""
    import pyarrow.parquet as pq

    from forgetting.tables.manifest import unchanged

    if not unchanged(root, meta, (ROWS,)):
        return None
    try:
        table = pq.read_table(root / ROWS).replace_schema_metadata(None)
    except Exception:
        return None
    if "run_dir" not in table.column_names or not isinstance(meta.get("root"), str):
        return None
    return respell(table, meta["root"], str(root))


def run_files(root: Path, chosen: list[Entry], name: str) -> list[str]:
    """The chosen runs' files `name`.parquet that exist, for pyarrow.dataset.dataset(files)."""
    paths = [f"{run_dir_of(root, e)}/{name}.parquet" for e in chosen]
    return [p for p in paths if Path(p).is_file()]
