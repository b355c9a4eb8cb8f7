"""Resume and skip: which run folder of a sweep belongs to which config, and which are finished.

A run is identified by its **config hash** (forgetting/rundir/identity.py), which every
metrics.json records.

Rerunning a sweep into the same sweep folder:
- `hydra.sweep.subdir` is `${forgetting.job_folder:${hydra.job.num}}` (conf/config.yaml), so
  each job picks its folder by config, not by number (`job_folder`): folder N when it holds
  this config, else the folder of an earlier run of its config (finished, else unfinished: it
  then resumes from its checkpoint, or restarts), else folder N when N is free, else `N-HASH`
  (folder N belongs to another config: its files are never touched). Earlier runs are found
  through the sweep's config index, `.configs/HASH` holding the folder's name (written
  atomically by the job that chose the folder; built once by scanning a sweep folder that
  predates it), so choosing costs the same in a sweep of 10 or 10,000 runs.
- In that folder forgetting.run skips the job when its run finished (status ok, diverged or
  pruned), unless `force=true`.
- The table keeps one row per config hash and sweep folder (`latest_runs`), in case two jobs of
  one config ran at the same time (a sweep that lists the same point twice, run in parallel).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from forgetting.core.files import atomic_write_text, umask
from forgetting.core.metrics import FINISHED
from forgetting.rundir.folders import CONFIG_INDEX, HYDRA_CONFIG, METRICS
from forgetting.rundir.identity import config_hash, folder_state, read_metrics


def job_folder(num: object, *, _root_: DictConfig) -> str:
    """The OmegaConf resolver `forgetting.job_folder`: the sweep sub-folder of job `num`.

    Evaluated by Hydra in the job's process, right before it creates the folder (see the
    module docstring for the rule). It reads at most two run folders and one index entry, so
    its cost does not grow with the sweep (docs/benchmarks.md)."""
    sweep_dir = Path(str(OmegaConf.select(_root_, "hydra.sweep.dir")))
    own = str(num)
    job_cfg = copy.deepcopy(_root_)
    with read_write(job_cfg), open_dict(job_cfg):
        del job_cfg["hydra"]
    try:
        key = config_hash(job_cfg)
    except Exception:  # an unresolvable config: the run records why, as a failed row
        return own
    own_key, _ = folder_state(sweep_dir / own, wait=True)
    if own_key == key:
        chosen = own
    else:
        known = indexed_folder(sweep_dir, key)
        if known is not None:
            return known
        chosen = own if own_key is None else f"{own}-{key[:8]}"
    remember_folder(sweep_dir, key, chosen)
    return chosen


def indexed_folder(sweep_dir: Path, key: str) -> str | None:
    """The folder the sweep's config index names for `key`, if it still holds that config.
    A sweep folder written before the index existed is indexed once, here."""
    index = sweep_dir / CONFIG_INDEX
    if not index.is_dir():
        build_index(sweep_dir)
    try:
        name = (index / key).read_text().strip()
    except OSError:
        return None
    return name if name and folder_state(sweep_dir / name, wait=True)[0] == key else None


def remember_folder(sweep_dir: Path, key: str, name: str) -> None:
    """Record in the sweep's config index that `name` is the folder of config `key` (unless
    the index already names a folder that holds it)."""
    entry = sweep_dir / CONFIG_INDEX / key
    try:
        if entry.read_text().strip() == name:
            return
    except OSError:
        pass
    try:
        atomic_write_text(entry, name + "\n")
    except OSError:  # an unwritable sweep folder fails later, where the run writes
        pass


def build_index(sweep_dir: Path) -> None:
    """Index the run folders of a sweep folder (one file per config hash naming its folder: a
    finished run's first, else the first unfinished one's), written to a temporary folder and
    renamed into place, so a reader sees no index or a whole one."""
    chosen: dict[str, tuple[bool, str]] = {}
    folders = sorted(p for p in sweep_dir.iterdir()
                     if p.is_dir() and not p.name.startswith(".")) if sweep_dir.is_dir() else []
    for folder in folders:
        key, finished = folder_state(folder)
        if key is not None and (key not in chosen or finished and not chosen[key][0]):
            chosen[key] = (finished, folder.name)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=sweep_dir, prefix=f"{CONFIG_INDEX}.", suffix=".tmp"))
    except OSError:
        return
    try:
        for key, (_, name) in chosen.items():
            atomic_write_text(tmp / key, name + "\n")
        os.chmod(tmp, 0o777 & ~umask())
        os.rename(tmp, sweep_dir / CONFIG_INDEX)
    except OSError:  # another job built it meanwhile
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    chosen = set(keep) | {rank[2] for rank in best.values()}
    return [d for d in run_dirs if d in chosen]


def _mtime_ns(run_dir: Path) -> int:
    for name in (METRICS, HYDRA_CONFIG):
        try:
            return (run_dir / name).stat().st_mtime_ns
        except OSError:
            continue
    return 0
