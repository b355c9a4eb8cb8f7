"""Which config a run folder holds, and whether it finished: read from its files alone.

A run is identified by its **config hash**: sha256 of the composed job config (resolved, Hydra's
own `hydra` node left out) minus the keys declared `hashed=False` in forgetting/core/config.py
(how a run is shown, forced, executed on a GPU, where its data cache lives), which never change
what it computes. Every metrics.json records it (`config_hash`); a folder without one (killed
before it finished, or written before hashes existed) is hashed from its `.hydra/config.yaml`.
The runner (forgetting/runs/resume.py: which folder a job takes, whether it is skipped) and the
sweep store (forgetting/tables/: one row per config) both read a folder this way.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from forgetting.core.config import UNHASHED
from forgetting.core.metrics import FINISHED
from forgetting.rundir import schema
from forgetting.rundir.folders import HYDRA_CONFIG, HYDRA_OVERRIDES, METRICS


def config_hash(cfg: DictConfig | dict) -> str:
    """16 hex digits identifying a composed job config (without its `hydra` node)."""
    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = copy.deepcopy(dict(cfg))
    for key in ("hydra", *UNHASHED):
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
            if not node and parents:  # a section of unhashed keys only (diag): gone too,
                _drop(data, parents)  # so runs from before it existed keep their hash
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _drop(data: dict, path: list[str]) -> None:
    """Remove the (empty) section at `path` from `data`."""
    node = data
    for part in path[:-1]:
        node = node.get(part, {})
    node.pop(path[-1], None)


def read_metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json as a dict, or None when absent, unreadable or holding a value
    of the wrong type (forgetting/rundir/schema.py: a damaged run, trained again)."""
    try:
        return schema.read(run_dir / METRICS)
    except (OSError, ValueError):  # absent, unreadable, or damaged (schema.wrong_key)
        return None


def run_key(metrics: dict) -> str | None:
    """The config hash of a run from its metrics: recorded, or (older runs) computed from the
    resolved config a finished run records."""
    if isinstance(metrics.get("config_hash"), str):
        return metrics["config_hash"]
    if metrics.get("status") in FINISHED and isinstance(metrics.get("config"), dict):
        return config_hash(metrics["config"])
    return None


# How long a job choosing its folder waits for another process to finish writing a run
# folder's `.hydra` files before it takes what is there (an empty file: a dead writer's).
WRITE_WAIT_S = 10.0


def saved_config(run_dir: Path, wait: bool = False) -> DictConfig | None:
    """The job config Hydra saved in `run_dir`, or None: absent, empty or unparseable.

    Hydra writes `.hydra/config.yaml`, then `hydra.yaml`, then `overrides.yaml`; a folder with
    the first but not the last is being written by another process (whose config.yaml may
    still be empty or cut short). With `wait`, wait for it (at most WRITE_WAIT_S): a job
    choosing its folder must never read a half-written file as another config."""
    config = run_dir / HYDRA_CONFIG
    if wait and config.exists():
        deadline = time.monotonic() + WRITE_WAIT_S
        while not (run_dir / HYDRA_OVERRIDES).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    try:
        saved = OmegaConf.load(config)
    except Exception:  # absent or unreadable
        return None
    return saved if isinstance(saved, DictConfig) and len(saved) > 0 else None


def folder_state(run_dir: Path, wait: bool = False) -> tuple[str | None, bool]:
    """(config hash, finished) of a run folder; (None, False) when it holds no config (or an
    empty one). `wait`: for `.hydra` files another process is writing (`saved_config`)."""
    metrics = read_metrics(run_dir)
    finished = metrics is not None and metrics.get("status") in FINISHED
    key = run_key(metrics) if metrics is not None else None
    if key is not None:
        return key, finished
    saved = saved_config(run_dir, wait=wait)
    if saved is None:
        return None, False
    try:
        return config_hash(saved), finished
    except Exception:  # unresolvable: not identifiable
        return None, False
