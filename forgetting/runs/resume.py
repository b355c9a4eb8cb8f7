"""Resume and skip: which run folder of a sweep belongs to which config, and which are finished.

A run is identified by its **config hash**: sha256 of the composed job config (resolved, Hydra's
own `hydra` node left out) minus the keys declared `hashed=False` in forgetting/core/config.py
(how a run is shown, forced, executed on a GPU, where its data cache lives), which never change
what it computes.
Every metrics.json records it (`config_hash`); a folder without one (killed before it
finished, or written before hashes existed) is hashed from its `.hydra/config.yaml`.

Rerunning a sweep into the same sweep folder:
- `hydra.sweep.subdir` is `${forgetting.job_folder:${hydra.job.num}}` (conf/config.yaml), so
  each job picks its folder by config, not by number (`job_folder`): the folder of a finished
  run of its config, else one of an unfinished run of its config (which then resumes from its
  checkpoint, or restarts), else folder N when N is free, else `N-HASH` (folder N belongs to
  another config: its files are never touched).
- In that folder forgetting.run skips the job when its run finished (status ok, diverged or
  pruned), unless `force=true`.
- The table keeps one row per config hash and sweep folder (`latest_runs`), in case two jobs of
  one config ran at the same time (a sweep that lists the same point twice, run in parallel).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from forgetting.core.config import UNHASHED
from forgetting.core.metrics import FINISHED
from forgetting.runs.folders import HYDRA_CONFIG, METRICS


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
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_metrics(run_dir: Path) -> dict | None:
    """The run's metrics.json as a dict, or None when absent or unreadable."""
    try:
        metrics = json.loads((run_dir / METRICS).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def run_key(metrics: dict) -> str | None:
    """The config hash of a run from its metrics: recorded, or (older runs) computed from the
    resolved config a finished run records."""
    if isinstance(metrics.get("config_hash"), str):
        return metrics["config_hash"]
    if metrics.get("status") in FINISHED and isinstance(metrics.get("config"), dict):
        return config_hash(metrics["config"])
    return None


def folder_state(run_dir: Path) -> tuple[str | None, bool]:
    """(config hash, finished) of a run folder; (None, False) when it holds no config."""
    metrics = read_metrics(run_dir)
    finished = metrics is not None and metrics.get("status") in FINISHED
    key = run_key(metrics) if metrics is not None else None
    if key is not None:
        return key, finished
    try:
        saved = OmegaConf.load(run_dir / HYDRA_CONFIG)
        return config_hash(saved), finished
    except Exception:  # absent, unreadable or unresolvable: not identifiable
        return None, False


def job_folder(num: object, *, _root_: DictConfig) -> str:
    """The OmegaConf resolver `forgetting.job_folder`: the sweep sub-folder of job `num`.

    Evaluated by Hydra in the job's process, right before it creates the folder (see the
    module docstring for the rule)."""
    sweep_dir = Path(str(OmegaConf.select(_root_, "hydra.sweep.dir")))
    own = str(num)
    job_cfg = copy.deepcopy(_root_)
    with read_write(job_cfg), open_dict(job_cfg):
        del job_cfg["hydra"]
    try:
        key = config_hash(job_cfg)
    except Exception:  # an unresolvable config: the run records why, as a failed row
        return own
    own_key, _ = folder_state(sweep_dir / own)
    if own_key == key:
        return own
    unfinished = None
    if sweep_dir.is_dir():
        for folder in sorted(p for p in sweep_dir.iterdir()
                             if p.is_dir() and not p.name.startswith(".")):
            folder_key, finished = folder_state(folder)
            if folder_key == key and finished:
                return folder.name
            if folder_key == key and unfinished is None:
                unfinished = folder.name
    if unfinished is not None:
        return unfinished
    if own_key is None:
        return own
    return f"{own}-{key[:8]}"


def register_resolver() -> None:
    OmegaConf.register_new_resolver("forgetting.job_folder", job_folder, replace=True)


def finished_run(run_dir: Path) -> dict | None:
    """The metrics of the finished run in `run_dir`, or None."""
    metrics = read_metrics(run_dir)
    if metrics is not None and metrics.get("status") in FINISHED:
        return metrics
    return None


def latest_runs(run_dirs: list[Path]) -> list[Path]:
    """`run_dirs` with one folder per config hash: the newest finished one, else the newest.
    Folders whose config cannot be read are all kept (they are `failed` rows)."""
    best: dict[str, tuple[bool, int, Path]] = {}
    keep: list[Path] = []
    for run_dir in run_dirs:
        key, finished = folder_state(run_dir)
        if key is None:
            keep.append(run_dir)
            continue
        rank = (finished, _mtime_ns(run_dir), run_dir)
        if key not in best or rank[:2] > best[key][:2]:
            best[key] = rank
    chosen = keep + [rank[2] for rank in best.values()]
    return [d for d in run_dirs if d in chosen]


def _mtime_ns(run_dir: Path) -> int:
    for name in (METRICS, HYDRA_CONFIG):
        try:
            return (run_dir / name).stat().st_mtime_ns
        except OSError:
            continue
    return 0
