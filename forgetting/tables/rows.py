"""One table row per run folder: find the run folders under a root, read each one's
metrics.json (or, when the run did not finish, its `.hydra/config.yaml` and the group choices in
`.hydra/hydra.yaml`) into a row of config columns, metric columns and the keys its command line
set. forgetting/tables/results.py builds the sweep's tables from these rows.

Columns: each config key once, under its table name (`width`, never `model.width` beside it);
a swept key without a declared column under its dotted name; the command line's overrides as
one string (`overrides`); keys that only say how a run is executed or shown (`quiet`,
`data.root`, ... RUN_TIME_ONLY) are in `overrides` only.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from forgetting.core.config import COLUMNS, UNHASHED
from forgetting.core.metrics import (
    DIAG_FINAL,
    FAILED,
    FINAL,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    TARGET_FINAL,
    TIMINGS,
)
from forgetting.rundir import folders, schema
from forgetting.rundir.claims import holder
from forgetting.rundir.schema import value_at
from forgetting.tables.order import natural_key

# config values every table carries (declared `column=` in the schema): column -> dotted key
CONFIG_COLUMNS = COLUMNS
METRIC_COLUMNS = ["status", *FINAL, *TIMINGS, "device", "error", "study", "storage", "trial",
                  "resumes", "config_hash", "steps", *DIAG_FINAL, *TARGET_FINAL,
                  "launcher", "pack_id", "pack_size"]  # the last three: packed runs only
# what a run trained in, beside what was asked (the config's `precision`: auto, and `threads`:
# 0 = all cores): column -> metrics.json's key
USED_COLUMNS = {"precision_used": "precision", "threads_used": "threads",
                "device_name": "device_name"}
KEY_COLUMNS = ["lr", "subset", "batch_size", "seed"]
# what read_run makes of a run folder; a manifest of another format is not used (every folder
# is read again once), so a column added here reaches the rows of unchanged run folders too.
# 2: what a run trained in (USED_COLUMNS); interrupted for a folder without metrics.json;
# 3: the steps to a target (TARGET_FINAL) and the targets' columns
ROW_FORMAT = 3
COLUMN_OF = {dotted: column for column, dotted in CONFIG_COLUMNS.items()}  # model.width -> width
# how a run is executed or shown, not what it computes: never a column (diag.* says what is
# measured, so a swept diag key stays one)
RUN_TIME_ONLY = {k for k in UNHASHED if not k.startswith("diag.")} | {"data.root"}
UNREADABLE = "unreadable metrics.json"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster


def find_runs(root: Path) -> list[Path]:
    found = {p.parent for p in root.rglob(folders.METRICS)}
    found |= {p.parent.parent for p in root.rglob(folders.HYDRA_CONFIG)}
    return sorted(found, key=lambda path: natural_key(str(path)))


def _load_yaml(path: Path):
    try:
        return yaml.load(path.read_text(), Loader=_LOADER)
    except (OSError, yaml.YAMLError):
        return None


def _overrides(run_dir: Path) -> list[str]:
    overrides = _load_yaml(run_dir / folders.HYDRA_OVERRIDES)
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def swept_keys(overrides: list[str]) -> list[str]:
    """The table columns of the keys a command line set: a declared column's name for its
    dotted key (model.width -> width), without run-time-only keys, Hydra's and the trial's."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides
            if "=" in o and not o.startswith("hydra")]
    keys = [COLUMN_OF.get(k, k) for k in keys if not k.startswith("optuna.")  # the trial:
            and k not in RUN_TIME_ONLY]                                      # study/trial
    return list(dict.fromkeys(keys))


def hydra_choices(run_dir: Path) -> dict:
    """The group choices Hydra recorded for the run (`hydra.runtime.choices`), {} without."""
    saved = _load_yaml(run_dir / folders.HYDRA_YAML)
    choices = value_at(saved, "hydra.runtime.choices") if isinstance(saved, dict) else None
    return {k: v for k, v in choices.items() if not k.startswith("hydra/")} \
        if isinstance(choices, dict) else {}


def _interpolated(node) -> bool:
    if isinstance(node, str):
        return "${" in node
    if isinstance(node, dict):
        return any(_interpolated(v) for v in node.values())
    if isinstance(node, list):
        return any(_interpolated(v) for v in node)
    return False


def resolved(config: dict) -> dict:
    """`config` with its interpolations resolved (`subset_seed: ${seed}`, as Hydra saves an
    unfinished run's config and a failed run records it), as OmegaConf resolves them; one that
    cannot be resolved (`${hydra:...}` outside Hydra, a missing key) is null, never the
    literal: a column holds values of its key's type."""
    if not _interpolated(config):
        return config
    from omegaconf import DictConfig, ListConfig, OmegaConf

    def walk(node: DictConfig) -> dict:
        out = {}
        for key in node.keys():
            try:
                value = node[key]  # resolved here
                if isinstance(value, ListConfig):
                    value = OmegaConf.to_container(value, resolve=True)
            except Exception:  # unresolvable, or missing (???)
                value = None
            out[key] = walk(value) if isinstance(value, DictConfig) else value
        return out

    try:
        return walk(OmegaConf.create(config))
    except Exception:  # not a config OmegaConf takes: interpolations dropped
        return {k: v for k, v in config.items() if not _interpolated(v)}


def damaged(row: dict) -> bool:
    """The row of a run folder whose metrics.json exists but cannot be read (truncated,
    not JSON, no status) or holds a value of the wrong type (forgetting/rundir/schema.py)."""
    return str(row.get("error") or "").startswith(UNREADABLE)


def read_run(run_dir: Path) -> tuple[dict, list[str]]:
    """One table row for a run folder, and the keys its command line set."""
    row: dict = {}
    metrics_path = run_dir / folders.METRICS
    try:
        metrics = schema.read(metrics_path)  # the declared keys of their declared types
    except FileNotFoundError:  # Hydra's files, no result: stopped (a signal, SIGKILL, a
        # node lost) before it finished; a rerun resumes it from its checkpoint, or trains
        # it from the start without one (forgetting/runs/job.py): never a failure
        metrics = {"status": INTERRUPTED, "error": None}
    except (OSError, ValueError) as e:
        metrics = {"status": FAILED, "error": f"{UNREADABLE} ({e})"}
    if metrics.get("status") not in FINISHED and holder(run_dir) is not None:
        metrics = {**metrics, "status": RUNNING, "error": None}  # claimed by a live process
    config = metrics.get("config")
    if not isinstance(config, dict):  # did not finish: the config Hydra saved
        config = _load_yaml(run_dir / folders.HYDRA_CONFIG)
        config = config if isinstance(config, dict) else {}
    config = resolved(config)
    for column, dotted in CONFIG_COLUMNS.items():
        row[column] = value_at(config, dotted)
    choices = metrics.get("choices")
    if not isinstance(choices, dict) or not choices:  # did not finish: Hydra's record
        choices = hydra_choices(run_dir)
    row["recipe"] = choices.get("recipe")
    overrides = _overrides(run_dir)
    row["overrides"] = " ".join(overrides)
    swept = swept_keys(overrides)
    for key in swept:
        if key not in row:  # a config value, or a group choice (+sweep=..., +trainset=...)
            value = value_at(config, key)
            # a group choice whose section is a mapping (logger=all): the choice's name
            row[key] = choices.get(key) if value is None or isinstance(value, dict) else value
    for column in METRIC_COLUMNS:
        if column in metrics:
            row[column] = metrics[column]
    for column, key in USED_COLUMNS.items():
        if key in metrics:
            row[column] = metrics[key]
    if "trial" not in row and value_at(config, "optuna.trial") is not None:  # did not finish
        row["study"], row["trial"] = value_at(config, "optuna.study"), value_at(config,
                                                                              "optuna.trial")
    row["run_dir"] = str(run_dir)
    return row, swept
