"""Where each run's rows are in a gathered table (its rows are contiguous, in the runs'
order), and gathered tables read back: several files as one, run_dir respelled under the
sweep folder as it is spelled now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


def runs_of(table: pa.Table) -> tuple[pa.Array, np.ndarray, np.ndarray] | None:
    """(run_dir, first row, end) of each run's rows in `table`, in its order; None when some
    run's rows are in two places."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    column, n = table["run_dir"], table.num_rows
    if not n:
        return pa.array([], pa.string()), np.zeros(0, np.int64), np.zeros(0, np.int64)
    changes = pc.not_equal(column.slice(1), column.slice(0, n - 1))
    starts = np.concatenate([[0], np.flatnonzero(changes.to_numpy(zero_copy_only=False)) + 1])
    names = column.take(starts).combine_chunks()
    if pc.count_distinct(names).as_py() != len(names):
        return None
    return names, starts, np.append(starts[1:], n)


def index_of(run_dirs: list[str], names: pa.Array) -> np.ndarray:
    """Each run's index in `names` (-1: not there)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.index_in(pa.array(run_dirs, pa.string()), value_set=names)
    return found.fill_null(-1).to_numpy(zero_copy_only=False)


def in_order(table: pa.Table, run_dirs: list[str]) -> pa.Table:
    """`table`'s rows in the runs' order (a stable sort: each run's rows keep theirs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = pa.array(run_dirs, pa.string())
    return table.take(pc.sort_indices(pc.index_in(table["run_dir"], value_set=order)))


def segments(table: pa.Table) -> dict[str, tuple[int, int]] | None:
    """run_dir -> (first row, end): runs_of() as a dict; None when a run's rows are not
    contiguous."""
    runs = runs_of(table)
    if runs is None:
        return None
    names, starts, ends = runs
    return dict(zip(names.to_pylist(), zip(starts.tolist(), ends.tolist())))


def respell(table: pa.Table, old_root: str, root: str) -> pa.Table:
    """`table` with its run_dir values under `root` instead of `old_root` (the sweep folder
    spelled otherwise, or moved)."""
    import pyarrow.compute as pc

    if old_root == root or "run_dir" not in table.column_names:
        return table
    rest = pc.utf8_slice_codeunits(table["run_dir"], len(old_root))
    run_dir = pc.binary_join_element_wise(root, rest, "")
    return table.set_column(table.column_names.index("run_dir"), "run_dir", run_dir)


def read_files(files: list[str]) -> pa.Table | None:
    """The parquet files as one table (their schemas promoted), or None when one is
    unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        tables = [pq.read_table(f).replace_schema_metadata(None) for f in files]
    except Exception:
        return None
    return pa.concat_tables(tables, promote_options="permissive") if tables else None
