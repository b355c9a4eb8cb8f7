"""A sweep's per-run tables (history, recency) stored in parts, so that an update rewrites only
the parts whose runs changed.

`history.parquet` in a sweep folder is a folder of parquet files, `part-<position>.parquet`,
each holding the rows of a contiguous block of runs in the runs' order (about PART_RUNS runs;
a part that grows past twice that is split). `pandas.read_parquet(folder / "history.parquet")`
and `pyarrow.parquet.read_table` read it as one table, the parts in file-name order, which is
the runs' order; temporary files start with "." and are not read. Each part is replaced
atomically; a reader that lists the parts while an update splits one may see that part's runs
twice or not at all (read under the folder's `.results.lock` for a consistent view).

The layout, kept in the manifest's metadata (forgetting/tables/manifest.py), records per part
its position, the first run it covers, a digest of its runs and its file's signature, and the
table's schema. An update assigns the chosen runs to the parts by those first runs; a part is
rewritten when a run of it was re-read or its runs are not those it holds (added, removed,
another run of a config chosen). Anything else (no layout, a part changed or added by someone
else, a new column or type, the folder moved or copied) lays the table out again from scratch,
with the unchanged runs' rows taken from the parts as they were (each part known by its
signature, or in a copy by the stamp in its metadata).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.core.files import atomic_path
from forgetting.tables.columns import canonical_schema, conform
from forgetting.tables.entry import Entry
from forgetting.tables.gather import gather, read_table, run_dir_of
from forgetting.tables.manifest import stamp_of, stamped
from forgetting.tables.order import natural_key
from forgetting.tables.spans import read_files, respell, segments
from forgetting.tables.survey import file_stat

if TYPE_CHECKING:
    import pyarrow as pa

PART_RUNS = 1024  # runs per part when laid out
SPACING = 2 ** 24  # positions between parts when laid out (splits take positions between)
WIDTH = 12  # digits of a position in a part's file name (file-name order = runs' order)


def part_name(position: int) -> str:
    return f"part-{position:0{WIDTH}d}.parquet"


def digest(runs: list[Entry]) -> str:
    return hashlib.blake2b("\0".join(e.rel for e in runs).encode(), digest_size=12).hexdigest()


def valid(folder: Path, layout: dict | None, schema: pa.Schema) -> list[list] | None:
    """The layout's parts when the folder holds exactly them, unchanged, with `schema`."""
    if not layout or layout.get("schema") != schema.to_string() or not folder.is_dir():
        return None
    parts = layout["parts"]
    try:
        names = {n for n in os.listdir(folder) if not n.startswith((".", "_"))}
    except OSError:
        return None
    if names != {part_name(p[0]) for p in parts}:
        return None
    if any(file_stat(str(folder / part_name(p[0]))) != p[3] for p in parts):
        return None
    return parts


def assign(chosen: list[Entry], parts: list[list]) -> list[tuple[int, int]]:
    """(start, end) in `chosen` (in the runs' order) of each part's runs: a part covers the
    runs from its first (the first part: from the start) to the next part's first."""
    starts = [0] + [bisect.bisect_left(chosen, natural_key(p[1]), key=lambda e: natural_key(e.rel))
                    for p in parts[1:]]
    return list(zip(starts, starts[1:] + [len(chosen)]))


def update(root: Path, name: str, chosen: list[Entry], reread: set[str], layout: dict | None,
           old_root: str | None, keep_empty: bool) -> tuple[dict, int]:
    """Bring `name`.parquet up to date with the chosen runs; (its layout, its rows).
    `old_root`: the sweep folder as spelled when the layout was written; `keep_empty`: write
    the table when no run has rows (else there is none)."""
    folder = root / f"{name}.parquet"
    if not layout or old_root != str(root) or not layout["parts"] and folder.exists():
        return rebuild(root, name, chosen, reread, layout, old_root, keep_empty)
    fresh = {e.rel: read_table(root, e, name) for e in chosen  # their columns: the schema
             if e.rel in reread or name not in e.columns}
    if not layout["parts"]:  # no run had rows
        if all(table is None for table in fresh.values()):
            return layout, 0  # nor has any now
        return rebuild(root, name, chosen, reread, layout, old_root, keep_empty, fresh)
    schema = canonical_schema(chosen, name)
    parts = valid(folder, layout, schema)
    if parts is None:
        return rebuild(root, name, chosen, reread, layout, old_root, keep_empty, fresh)
    kept, rows = [], 0
    bounds = assign(chosen, parts)
    for i, (part, (start, end)) in enumerate(zip(parts, bounds)):
        runs = chosen[start:end]
        if digest(runs) == part[2] and not any(e.rel in fresh for e in runs):
            kept.append(part)
            rows += part[4]
            continue
        old = read_files([str(folder / part_name(part[0]))])
        limit = parts[i + 1][0] if i + 1 < len(parts) else None
        split = split_runs(runs, part, limit)
        if split is None:  # no free positions between this part and the next
            return rebuild(root, name, chosen, reread, layout, old_root, keep_empty, fresh)
        for position, block in reversed(split):  # the part's own file last
            table = gather(root, block, reread, name, old, schema, fresh)
            kept.append(write_part(folder, position, block, table, schema,
                                   part[1] if position == part[0] else block[0].rel))
            rows += table.num_rows
    kept.sort(key=lambda p: p[0])
    if not rows and not keep_empty:
        return none(folder, schema)
    return {"schema": schema.to_string(), "parts": kept}, rows


def rebuild(root: Path, name: str, chosen: list[Entry], reread: set[str], layout: dict | None,
            old_root: str | None, keep_empty: bool, fresh: dict | None = None
            ) -> tuple[dict, int]:
    """update() from scratch: the table gathered whole (the rows of runs in the layout's
    unchanged parts kept; `fresh`: runs' tables read already) and laid out again."""
    folder = root / f"{name}.parquet"
    table = gather(root, chosen, reread, name, cached(root, name, layout, old_root),
                   tables=fresh)
    if not table.num_rows and not keep_empty:
        return none(folder, table.schema)
    return lay_out(folder, chosen, table), table.num_rows


def none(folder: Path, schema: pa.Schema) -> tuple[dict, int]:
    """No table (no run has rows): the folder removed; its layout of no parts."""
    remove(folder)
    return {"schema": schema.to_string(), "parts": []}, 0


def split_runs(runs: list[Entry], part: list, limit: int | None
               ) -> list[tuple[int, list[Entry]]] | None:
    """[(position, runs)]: the part as it is, or split in blocks of PART_RUNS when it has more
    than twice that (positions between its own and `limit`, the next part's); None when there
    is no room."""
    if len(runs) <= 2 * PART_RUNS:
        return [(part[0], runs)]
    blocks = [runs[i:i + PART_RUNS] for i in range(0, len(runs), PART_RUNS)]
    step = SPACING if limit is None else (limit - part[0]) // len(blocks)
    if step < 1:
        return None
    return [(part[0] + k * step, block) for k, block in enumerate(blocks)]


def write_part(folder: Path, position: int, runs: list[Entry], table: pa.Table,
               schema: pa.Schema, first: str | None) -> list:
    """Write one part; its layout record [position, first run, digest, signature, rows,
    stamp] (the stamp in its metadata: the part found again in a copy of the folder)."""
    import pyarrow.parquet as pq

    path = folder / part_name(position)
    stamp = uuid.uuid4().hex
    with atomic_path(path) as tmp:
        pq.write_table(stamped(conform(table, schema), stamp), tmp)
    return [position, first, digest(runs), file_stat(str(path)), table.num_rows, stamp]


def lay_out(folder: Path, chosen: list[Entry], table: pa.Table) -> dict:
    """Write `table` (the chosen runs' rows in their order) as new parts of PART_RUNS runs,
    replacing the folder (or a file of the same name, the single table of older versions)."""
    spans = segments(table) if "run_dir" in table.column_names else {}
    assert spans is not None, "a gathered table has each run's rows together"
    staging = staging_folder(folder)
    parts = []
    blocks = [chosen[i:i + PART_RUNS] for i in range(0, len(chosen), PART_RUNS)] or [[]]
    root = folder.parent
    for k, block in enumerate(blocks):
        rows = [spans[d] for d in (run_dir_of(root, e) for e in block) if d in spans]
        start = rows[0][0] if rows else 0
        end = rows[-1][1] if rows else 0
        part = table.slice(start, end - start) if rows else table.slice(0, 0)
        parts.append(write_part(staging, k * SPACING, block, part, table.schema,
                                None if k == 0 else block[0].rel))
    replace_folder(staging, folder)
    for p in parts:  # the signatures where the parts now are
        p[3] = file_stat(str(folder / part_name(p[0])))
    return {"schema": table.schema.to_string(), "parts": parts}


def write_whole(folder: Path, table: pa.Table) -> None:
    """Write `table` as the only part of `folder` (a merged table: collect --out)."""
    staging = staging_folder(folder)
    write_part(staging, 0, [], table, table.schema, None)
    replace_folder(staging, folder)


def staging_folder(folder: Path) -> Path:
    """An empty hidden folder beside `folder`, where its new parts are written first."""
    staging = folder.with_name(f".{folder.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def replace_folder(new: Path, folder: Path) -> None:
    """Put `new` where `folder` (or a file) was: renamed aside, then removed."""
    aside = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    if folder.is_dir():
        os.rename(folder, aside)
    elif folder.exists():
        folder.unlink()
    os.rename(new, folder)
    shutil.rmtree(aside, ignore_errors=True)


def remove(folder: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()


def cached(root: Path, name: str, layout: dict | None, old_root: str | None
           ) -> pa.Table | None:
    """The rows the layout's parts hold (those unchanged since; run_dir under `root`), for
    gather(): an empty table when no run had rows, None when nothing is known."""
    import pyarrow as pa

    folder = root / f"{name}.parquet"
    if not layout or not old_root:
        return None
    if not layout["parts"]:  # no run had rows: only the re-read runs can have them now
        return None if folder.exists() else pa.table({"run_dir": pa.array([], pa.string())})
    files = [str(folder / part_name(p[0])) for p in layout["parts"]  # in place, or copied
             if file_stat(str(folder / part_name(p[0]))) == p[3]
             or len(p) > 5 and stamp_of(folder / part_name(p[0])) == p[5]]
    table = read_files(files) if files else None
    return respell(table, old_root, str(root)) if table is not None else None
