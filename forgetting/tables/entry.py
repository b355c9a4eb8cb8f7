"""One run folder as a sweep's tables saw it: the manifest's record of it
(forgetting/tables/manifest.py), made by the update's survey (forgetting/tables/survey.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from forgetting.tables.rows import read_run


@dataclass(slots=True)
class Entry:
    """One run folder as the tables saw it."""
    rel: str  # the run folder relative to the sweep folder ("." for the folder itself)
    sig: str  # sizes, mtimes and inodes of its files (signature())
    row_json: str | None  # forgetting/tables/rows.py's row without run_dir, as JSON; None: not
    status: str | None    # read yet (an unchanged run from the manifest: read on demand)
    swept: list[str]
    key: str | None  # config hash; None: not identifiable (kept as its own row)
    finished: bool
    mtime_ns: int
    columns: dict = field(default_factory=dict)  # table -> [[column, arrow type]] once built
    root: str | None = None  # the sweep folder, where row_json is read from on demand
    index: int | None = None  # its record in the manifest as loaded (None: read since)
    loaded: dict | None = None  # its columns as loaded (changed since: not the same object)

    @property
    def clean(self) -> bool:
        """Whether its record in the loaded manifest still says all of it."""
        return self.index is not None and self.columns is self.loaded

    @property
    def row(self) -> dict:
        if self.row_json is None:  # unchanged since the manifest: its folder gives the same row
            self.row_json = row_json(read_run(Path(self.root) / self.rel)[0])
        return json.loads(self.row_json)


def row_json(row: dict) -> str:
    return json.dumps({k: v for k, v in row.items() if k != "run_dir"}, default=str)
