"""Per-run tables (history.parquet, recency.parquet) gathered into one table per sweep folder,
through pyarrow: the chosen runs' rows in the runs' order, with each run's key columns
(lr, subset, batch_size, seed, its swept keys, Optuna's trial) in front and `run_dir` last.

An update takes the rows of unchanged runs from the table written last time and reads only the
runs that changed (forgetting/runs/manifest.py). Column order and types are a function of the
runs alone (first appearance in the runs' order; each column's types promoted as pyarrow does),
so an update and a full rebuild give the same table. Tables too large to gather (a run's
examples.parquet, one row per training example) are read lazily: `run_files` lists the files
for `pyarrow.dataset.dataset(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.runs.manifest import ROWS, SIGNED, Entry
from forgetting.runs.rows import KEY_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

PER_RUN_TABLES = ("history", "recency")
CHUNK = 256  # tables (or rows) joined at a time
SCALARS = {type(None): "null", bool: "bool", int: "int64", float: "double", str: "string"}


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


def canonical_schema(chosen: list[Entry], name: str) -> pa.Schema:
    """Columns by first appearance over the runs; each column's types promoted."""
    import pyarrow as pa

    types: dict[str, list[str]] = {}
    seen, seen_ids = set(), set()
    for e in chosen:
        fields = e.columns.get(name)
        if id(fields) in seen_ids:  # shared lists (shared(), the manifest): one look each
            continue
        seen_ids.add(id(fields))
        key = tuple(map(tuple, fields or ()))
        if key in seen:
            continue
        seen.add(key)
        for column, typ in fields or ():
            if typ not in types.setdefault(column, []):
                types[column].append(typ)
    return pa.schema([pa.field(column, _promote(column, typs)) for column, typs in
                      types.items()])


def _promote(column: str, typs: list[str]) -> pa.DataType:
    import pyarrow as pa

    try:
        parsed = [pa.type_for_alias(t) for t in typs]
    except (ValueError, KeyError):
        return pa.string()
    if len(parsed) == 1:
        return parsed[0]
    try:
        return pa.unify_schemas([pa.schema([pa.field(column, t)]) for t in parsed],
                                promote_options="permissive").field(column).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with `schema`'s columns in its order and types (missing ones null)."""
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    arrays = []
    for f in schema:
        if f.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, f.type))
            continue
        column = table[f.name]
        if column.type != f.type:
            try:
                column = column.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                column = pa.array([None if v is None else str(v) for v in column.to_pylist()],
                                  pa.string()).cast(f.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


_SHARED: dict[tuple, list] = {}


def shared(fields: list) -> list:
    """One list object for equal column lists (most runs have the same columns: 100,000
    entries then hold one list, not 100,000)."""
    return _SHARED.setdefault(tuple(map(tuple, fields)), fields)


def row_fields(row: dict) -> list | None:
    """[column, arrow type] of a row of plain scalars, as pyarrow infers them; None otherwise."""
    fields = []
    for column, value in row.items():
        typ = SCALARS.get(type(value))
        if typ is None or typ == "int64" and not -2 ** 63 <= value < 2 ** 63:
            return None
        fields.append([column, typ])
    return fields


def gather(root: Path, chosen: list[Entry], reread: set[str], name: str,
           old: pa.Table | None) -> pa.Table:
    """The gathered table `name` of the chosen runs ("rows": their rows): unchanged runs' rows
    from `old` (the table written last time, or None), the others read from their folders."""
    import pyarrow as pa
    import pyarrow.compute as pc

    old_spans = segments(old) if old is not None else {}
    in_old = set(pc.unique(old["run_dir"]).to_pylist()) if old_spans is None else set(old_spans)
    run_dirs = [run_dir_of(root, e) for e in chosen]
    cached, fresh, rows = set(), {}, []
    for d, e in zip(run_dirs, chosen):
        if old is not None and e.rel not in reread and name in e.columns:
            if not e.columns[name]:
                continue  # it had no such table, and nothing it wrote changed since
            if d in in_old:
                cached.add(d)
                continue
        fields = row_fields({**e.row, "run_dir": d}) if name == "rows" else None
        if fields is not None:  # plain scalars: converted together below
            e.columns = {**e.columns, name: shared(fields)}  # a new dict: others may share
            rows.append((d, e))
            continue
        table = read_table(root, e, name)
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
    new = pa.concat_tables(pieces).combine_chunks() if pieces else None
    if len(pieces) > 1:  # one piece: read in the runs' order
        new = in_order(new, run_dirs)
    if not cached:
        return new if new is not None else pa.table({})
    if old_spans is None:  # not in runs' order (not written here): filtered and sorted
        keep = old.filter(pc.is_in(old["run_dir"], value_set=pa.array(list(cached), pa.string())))
        return in_order(pa.concat_tables([conform(keep, schema), *[new] * (new is not None)]),
                        run_dirs)
    return splice(conform(old, schema), old_spans, new, run_dirs, cached)


def in_order(table: pa.Table, run_dirs: list[str]) -> pa.Table:
    """`table`'s rows in the runs' order (a stable sort: each run's rows keep theirs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pa.array(run_dirs, pa.string())
    return table.take(pc.sort_indices(pc.index_in(table["run_dir"], value_set=order)))


def segments(table: pa.Table) -> dict[str, tuple[int, int]] | None:
    """run_dir -> (first row, end) of a table whose runs' rows are contiguous; None when a
    run's rows are not."""
    import numpy as np
    import pyarrow.compute as pc

    column, n = table["run_dir"], table.num_rows
    if not n:
        return {}
    changes = pc.not_equal(column.slice(1), column.slice(0, n - 1))
    starts = np.concatenate([[0], np.flatnonzero(changes.to_numpy(zero_copy_only=False)) + 1])
    ends = np.append(starts[1:], n)
    names = column.take(starts).to_pylist()
    if len(set(names)) != len(names):
        return None  # some run's rows are in two places
    return dict(zip(names, zip(starts.tolist(), ends.tolist())))


def splice(old: pa.Table, old_spans: dict[str, tuple[int, int]], new: pa.Table | None,
           run_dirs: list[str], cached: set[str]) -> pa.Table:
    """The runs' rows in their order: the `cached` runs' as slices of `old` (`old_spans`: its
    segments; neighbours in both one slice), the others' from `new` (in the runs' order).
    O(changed runs) slices; the unchanged rows are not copied."""
    import pyarrow as pa

    spans = {"old": old_spans, "new": segments(new) if new is not None else {}}
    slices: list[list] = []  # [source, first row, end]
    for d in run_dirs:
        source = "old" if d in cached else "new"
        span = spans[source].get(d)
        if span is None:
            continue  # no rows (it has no such table)
        if slices and slices[-1][0] == source and slices[-1][2] == span[0]:
            slices[-1][2] = span[1]
        else:
            slices.append([source, *span])
    tables = {"old": old, "new": new}
    parts = [tables[source].slice(start, end - start) for source, start, end in slices]
    return pa.concat_tables(parts) if parts else old.slice(0, 0)


def read_old(root: Path, name: str, meta: dict) -> pa.Table | None:
    """The gathered table written with the manifest when it is unchanged since, else None; its
    run_dir values say the sweep folder as `root` does (spelled otherwise then, or moved)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from forgetting.runs.manifest import table_signatures

    filename = ROWS if name == "rows" else f"{name}.parquet"
    if meta.get("tables", {}).get(filename) != table_signatures(root).get(filename):
        return None
    if meta["tables"][filename] == "-":  # not written: no run had one
        return pa.table({"run_dir": pa.array([], pa.string())})
    try:
        table = pq.read_table(root / filename).replace_schema_metadata(None)
    except Exception:
        return None
    if "run_dir" not in table.column_names or not isinstance(meta.get("root"), str):
        return None
    if meta["root"] != str(root):
        rest = pc.utf8_slice_codeunits(table["run_dir"], len(meta["root"]))
        run_dir = pc.binary_join_element_wise(str(root), rest, "")
        table = table.set_column(table.column_names.index("run_dir"), "run_dir", run_dir)
    return table


def run_files(root: Path, chosen: list[Entry], name: str) -> list[str]:
    """The chosen runs' files `name`.parquet that exist, for pyarrow.dataset.dataset(files)."""
    paths = [f"{run_dir_of(root, e)}/{name}.parquet" for e in chosen]
    return [p for p in paths if Path(p).is_file()]
