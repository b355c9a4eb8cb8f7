"""The order of run folders: Hydra's job numbers as numbers (2 < 10 < 10-HASH), so that a
sweep's rows, parts and listings follow its points."""

from __future__ import annotations

import re


def natural_key(rel: str) -> list:
    """2 < 10 < 10-HASH: digit runs compare as numbers, part by part of a path (a run folder's
    relative path, or any path: forgetting/tables/rows.py find_runs sorts with it too)."""
    if rel.isdigit():  # most run folders (Hydra's job numbers): re.split's parts, at once
        return [["", int(rel), ""]]
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)]
            for part in rel.split("/") if part != "."]
