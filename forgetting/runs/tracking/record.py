"""What a run is to a tracker (`Tracked`), and the flattening both trackers use: shared by
the entry points (forgetting/runs/tracking/__init__.py) and the two trackers
(mlflow_runs.py, tensorboard_events.py), which import it from here, not from each other."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tracked:
    """One run as the trackers see it: where it is, what it is called, what it recorded."""
    run_dir: Path
    sweep_dir: Path | None  # None for a single run
    experiment: str
    name: str  # the point's own overrides (`lr=2 subset=0.5`)
    metrics: dict  # metrics.json
    history: list[dict] = field(default_factory=list)  # history.parquet's rows
    hparams: dict = field(default_factory=dict)  # swept keys and table columns -> value
    end_time: float = 0.0  # unix seconds when metrics.json was written

    @property
    def key(self) -> str | None:
        return self.metrics.get("config_hash")

    def epoch_time(self, row: dict) -> float:
        """Unix seconds at the end of a history row's epoch (the last one ends the run)."""
        train_s = self.metrics.get("train_s") or self.history[-1].get("wall_s", 0.0)
        return self.end_time - (train_s - row.get("wall_s", train_s))


def flatten(config: dict, prefix: str = "") -> dict:
    """A nested config as {dotted key: value}; lists stay lists."""
    flat = {}
    for k, v in config.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def numbers(record: dict, skip: tuple = ()) -> dict:
    """The fields of `record` that are numbers (not bools, not NaN), as floats."""
    return {k: float(v) for k, v in record.items() if k not in skip
            and isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)}
