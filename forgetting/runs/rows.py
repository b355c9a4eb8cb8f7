"""One table row per run folder: find the run folders under a root, read each one's
metrics.json (or, when the run did not finish, its `.hydra/config.yaml`) into a row of config
columns, metric columns and the keys its command line set. forgetting/runs/results.py builds the
sweep's tables from these rows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from forgetting.core.config import COLUMNS
from forgetting.core.metrics import DIAG_FINAL, FAILED, FINAL, FINISHED, RUNNING, TIMINGS
from forgetting.runs import folders
from forgetting.runs.claims import holder

# config values every table carries (declared `column=` in the schema): column -> dotted key
CONFIG_COLUMNS = COLUMNS
METRIC_COLUMNS = ["status", *FINAL, *TIMINGS, "device", "error", "study", "storage", "trial",
                  "resumes", "config_hash", "steps", *DIAG_FINAL,
                  "launcher", "pack_id", "pack_size"]  # the last three: packed runs only
KEY_COLUMNS = ["lr", "subset", "batch_size", "seed"]


def find_runs(root: Path) -> list[Path]:
    found = {p.parent for p in root.rglob(folders.METRICS)}
    found |= {p.parent.parent for p in root.rglob(folders.HYDRA_CONFIG)}
    return sorted(found, key=_natural_key)


def _natural_key(path: Path) -> list:
    """2 < 10 < 10-HASH: digit runs compare as numbers (a folder name splits into alternating
    text and digit runs, so the types line up)."""
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)]
            for part in path.parts]


def _lookup(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _swept_keys(run_dir: Path) -> list[str]:
    path = run_dir / folders.HYDRA_OVERRIDES
    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError):
        return []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides
            if "=" in o and not o.startswith("hydra")]
    return [k for k in keys if not k.startswith("optuna.")]  # the trial: study/trial columns


def read_run(run_dir: Path) -> tuple[dict, list[str]]:
    """One table row for a run folder, and the keys its command line set."""
    row: dict = {}
    metrics_path = run_dir / folders.METRICS
    try:
        metrics = json.loads(metrics_path.read_text())
        if not isinstance(metrics, dict) or "status" not in metrics:
            raise ValueError("no status field")
    except FileNotFoundError:
        metrics = {"status": FAILED, "error": "no metrics.json (the run did not finish)"}
    except (OSError, ValueError) as e:
        metrics = {"status": FAILED, "error": f"unreadable metrics.json ({e})"}
    if metrics.get("status") not in FINISHED and holder(run_dir) is not None:
        metrics = {**metrics, "status": RUNNING, "error": None}  # claimed by a live process
    config = metrics.get("config")
    if not isinstance(config, dict):
        try:
            config = yaml.safe_load((run_dir / folders.HYDRA_CONFIG).read_text()) or {}
        except (OSError, yaml.YAMLError):
            config = {}
    for column, dotted in CONFIG_COLUMNS.items():
        row[column] = _lookup(config, dotted)
    row["recipe"] = (metrics.get("choices") or {}).get("recipe")
    swept = _swept_keys(run_dir)
    choices = metrics.get("choices") or {}
    for key in swept:
        if key not in row:  # a config value, or a group choice (+sweep=..., +trainset=...)
            value = _lookup(config, key)
            # a group choice whose section is a mapping (logger=all): the choice's name
            row[key] = choices.get(key) if value is None or isinstance(value, dict) else value
    for column in METRIC_COLUMNS:
        if column in metrics:
            row[column] = metrics[column]
    if "trial" not in row and _lookup(config, "optuna.trial") is not None:  # did not finish
        row["study"], row["trial"] = _lookup(config, "optuna.study"), _lookup(config,
                                                                              "optuna.trial")
    row["run_dir"] = str(run_dir)
    return row, swept
