"""Pivots of a results table that never average over runs of different configs.

`pivot_table(results, index, columns)` is pandas' pivot_table of the ok runs' mean, but refuses
(MixedCells, one line naming the columns) when the runs of one cell differ in a config column
other than the seeds: a folder mixing models or presets would otherwise be averaged silently.
`pivot(results, swept)` is the text printed at a sweep's end and by collect: it splits such
cells into rows instead. Both show a missing value (a group not chosen) as `-`, never a NaN
level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from forgetting.core.errors import UserError
from forgetting.core.metrics import OK
from forgetting.tables.rows import CONFIG_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

SEEDS = ("seed", "subset_seed")  # what a cell averages over


class MixedCells(UserError):
    """A cell of a pivot would average runs of different configs."""


def config_columns(results: pd.DataFrame) -> list[str]:
    """The columns that say what a run computed: declared config columns, the recipe, and every
    key a command line set (dotted keys, group choices such as `sweep`), seeds excepted."""
    keys = set(CONFIG_COLUMNS) | {"recipe"}
    if "overrides" in results:
        for text in results["overrides"].dropna().unique():
            keys |= {o.split("=", 1)[0].lstrip("+~") for o in str(text).split() if "=" in o}
    return [c for c in results.columns if (c in keys or "." in c) and c not in SEEDS
            and c != "run_dir"]


def differing(results: pd.DataFrame, by: list[str]) -> list[str]:
    """Config columns that take more than one value within some group of `by`."""
    columns = [c for c in config_columns(results) if c not in by]
    if results.empty or not columns:
        return []
    frame = results[by + columns].astype({c: str for c in columns})
    counts = frame.groupby(by, dropna=False)[columns].nunique(dropna=False).max()
    return [c for c in columns if counts[c] > 1]


def pivot_table(results: pd.DataFrame, index, columns, values: str = "test_loss"):
    """Mean of `values` over the ok runs of each (index, columns) cell, as pandas' pivot_table;
    MixedCells when a cell's runs differ in a config column other than the seeds."""
    index = [index] if isinstance(index, str) else list(index)
    columns = [columns] if isinstance(columns, str) else list(columns)
    mixed = differing(results, index + columns)
    if mixed:
        raise MixedCells(f"pivot of {values} by {' x '.join(index + columns)}: cells mix runs "
                         f"that differ in {', '.join(mixed)}; add them to index= or select "
                         "one value first")
    ok = results[results["status"] == OK].copy()
    for key in index + columns:  # a missing value (a group not chosen) is a level, not dropped
        if ok[key].isna().any():
            ok[key] = ok[key].astype(object).where(ok[key].notna(), "-")
    return ok.pivot_table(index=index, columns=columns, values=values, aggfunc="mean")


def pivot(results: pd.DataFrame, swept: list[str], value: str = "test_loss") -> str:
    """Text pivot of `value` (subset x lr; other swept keys, and config columns that differ
    within a cell, join the rows); non-ok runs by their status. Several runs in one cell
    (seeds) show the mean of the ok ones."""
    if results.empty or "lr" not in results or "subset" not in results:
        return "(no runs)"
    rows = ["subset"] + [k for k in swept if k not in ("lr", "subset", *SEEDS)
                         and k in results and results[k].nunique(dropna=False) > 1]
    rows += differing(results, rows + ["lr"])

    def cell(group: pd.DataFrame) -> str:
        ok = group[group["status"] == OK][value].dropna()
        if len(ok):
            return f"{ok.mean():.4f}" + ("*" if len(ok) < len(group) else "")
        return "/".join(sorted(set(group["status"])))

    frame = results.copy()
    for key in rows + ["lr"]:
        if frame[key].isna().any() or frame[key].dtype == object:  # never a NaN level
            frame[key] = [("-" if v is None or v != v else str(v)) for v in frame[key]]
    table = frame.groupby(rows + ["lr"], dropna=False).apply(cell, include_groups=False)
    table = table.unstack("lr")
    note = "  (* some runs in the cell were not ok)" if table.map(
        lambda s: isinstance(s, str) and s.endswith("*")).any().any() else ""
    return f"{value} by {' x '.join(rows)} (rows) and lr (columns){note}\n{table.to_string()}"
