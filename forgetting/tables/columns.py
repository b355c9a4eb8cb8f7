"""A sweep table's columns and their types: one schema promoted from the types every run
recorded (`canonical_schema`), and tables conformed to it (`conform`), value by value where a
whole column does not cast, so that an update never fails on a value of another type."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is imported where tables are built
    import pyarrow as pa

    from forgetting.tables.entry import Entry

SCALARS = {type(None): "null", bool: "bool", int: "int64", float: "double", str: "string"}
# pyarrow's ArrowInvalid, ArrowTypeError, ArrowNotImplementedError: a cast that fails
CAST_ERRORS = (ValueError, TypeError, NotImplementedError)


def canonical_schema(chosen: list[Entry], name: str) -> pa.Schema:
    """Columns by first appearance over the runs; each column's types promoted."""
    import pyarrow as pa

    types: dict[str, list[str]] = {}
    seen = set()
    columns = {id(e.columns): e.columns for e in chosen}  # most entries share one dict
    lists = {id(c.get(name)): c.get(name) for c in columns.values()}  # in first appearance
    for fields in lists.values():
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


def conform(table: pa.Table, schema: pa.Schema, strict: bool = False) -> pa.Table:
    """`table` with `schema`'s columns in its order and types (missing ones null); `strict`:
    raise (CAST_ERRORS) where a value is no value of its column's type, else it is null."""
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
            except CAST_ERRORS:
                column = _cast_values(column, f.type, strict)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast_values(column: pa.ChunkedArray, typ: pa.DataType, strict: bool) -> pa.Array:
    """`column` as `typ` through its values' text, value by value; a value that is no `typ`
    (only in a table edited by hand: the schema is promoted from every run's recorded types,
    gather() casts only the rows it keeps) is null: an update never fails on it."""
    import pyarrow as pa

    text = pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())
    try:
        return text.cast(typ)
    except CAST_ERRORS:
        if strict:
            raise
    values = []
    for value in text:
        try:
            values.append(pa.array([value], pa.string()).cast(typ)[0].as_py())
        except CAST_ERRORS:
            values.append(None)
    return pa.array(values, typ)


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
