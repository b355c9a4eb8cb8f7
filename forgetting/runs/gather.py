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

from forgetting.runs.manifest import SIGNED, Entry
from forgetting.runs.rows import KEY_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

PER_RUN_TABLES = ("history", "recency")


def run_table(root: Path, entry: Entry, name: str) -> pa.Table | None:
    """The run's table `name` with its key columns and run_dir; records its columns in the
    entry. None when the run has none or it is unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    entry.columns[name] = []
    filename = f"{name}.parquet"
    if entry.sig.split("|")[SIGNED.index(filename)] == "-":
        return None
    try:
        table = pq.read_table(root / entry.rel / filename)
    except Exception:
        return None
    row = entry.row
    extra = ["trial"] if row.get("trial") is not None else []  # Optuna's
    for column in KEY_COLUMNS + [k for k in entry.swept if k not in KEY_COLUMNS] + extra:
        if column not in table.column_names:
            table = table.add_column(0, column, _repeat(row.get(column), table.num_rows))
    run_dir = pa.array([str(root / entry.rel)] * table.num_rows, pa.string())
    if "run_dir" in table.column_names:
        table = table.drop_columns(["run_dir"])
    table = table.append_column("run_dir", run_dir).replace_schema_metadata(None)
    entry.columns[name] = [[f.name, str(f.type)] for f in table.schema]
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
    seen = set()
    for e in chosen:
        fields = e.columns.get(name)
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


def gather(root: Path, chosen: list[Entry], reread: set[str], name: str,
           old: pa.Table | None) -> pa.Table:
    """The gathered table `name` of the chosen runs: unchanged runs' rows from `old` (the table
    written last time, or None), the others read from their folders."""
    import pyarrow as pa
    import pyarrow.compute as pc

    in_old = set(pc.unique(old["run_dir"]).to_pylist()) if old is not None else set()
    cached = {str(root / e.rel) for e in chosen if e.rel not in reread and name in e.columns
              and str(root / e.rel) in in_old}
    fresh = [t for e in chosen if str(root / e.rel) not in cached
             for t in [run_table(root, e, name)] if t is not None]
    schema = canonical_schema(chosen, name)
    pieces = []
    if cached:
        keep = pc.is_in(old["run_dir"], value_set=pa.array(sorted(cached), pa.string()))
        pieces.append(conform(old.filter(keep), schema))
    pieces += [conform(t, schema) for t in fresh]
    if not pieces:
        return pa.table({})
    table = pa.concat_tables(pieces).combine_chunks()
    if cached and fresh:  # rows in the runs' order (the sort is stable)
        order = pa.array([str(root / e.rel) for e in chosen], pa.string())
        table = table.take(pc.sort_indices(pc.index_in(table["run_dir"], value_set=order)))
    return table


def read_old(root: Path, name: str, meta: dict) -> pa.Table | None:
    """The gathered table written with the manifest, when it is unchanged since and the sweep
    folder is spelled as then (its run_dir values); else None."""
    import pyarrow.parquet as pq

    from forgetting.runs.manifest import table_signatures

    filename = f"{name}.parquet"
    if meta.get("root") != str(root):
        return None
    if meta.get("tables", {}).get(filename) != table_signatures(root).get(filename):
        return None
    try:
        table = pq.read_table(root / filename)
    except Exception:
        return None
    return table if "run_dir" in table.column_names else None


def run_files(root: Path, chosen: list[Entry], name: str) -> list[str]:
    """The chosen runs' files `name`.parquet that exist, for pyarrow.dataset.dataset(files)."""
    paths = [root / e.rel / f"{name}.parquet" for e in chosen]
    return [str(p) for p in paths if p.is_file()]
