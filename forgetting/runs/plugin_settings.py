"""The selected plugins' settings checked before Hydra starts (called by
forgetting/runs/points.py with the composed config), where the plugin itself would find them
only once the sweep runs, after Hydra's sweeper has written the sweep folder's multirun.yaml
(an existing sweep's record of its command) or after trials ran:

- hydra/launcher=array: the sweep folder (not the default outside a SLURM array) and the task's
  index (`hydra.launcher.index`, else the variable `index_env`) among the sweep's points; the
  launcher uses the same functions when it starts (hydra_plugins/forgetting_array_launcher/).
- hydra/launcher=joblib: the settings joblib would refuse (n_jobs 0, an unknown prefer or
  mmap_mode, ...).
- hydra/sweeper=optuna_study: each key of `hydra.sweeper.params` (a preset's, or given as
  `hydra.sweeper.params.KEY=...`) checked as a command-line override is: declared, its choices
  allowed, an interval's bounds inside the key's range (forgetting/runs/overrides.py).
Each problem is one line (UserError); nothing is created. Imported by the array launcher, so
light at the top (Hydra's plugin scan imports every plugin in any Hydra app).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from forgetting.core.errors import ConfigError, UserError

ARRAY_LOCAL_SWEEP_DIR = "outputs/multirun/array-local"  # the default outside a SLURM array
PARAMS = "hydra.sweeper.params"  # a search sweeper's space; null unless a preset gives it


def _target(hydra_cfg: DictConfig, node: str) -> str:
    return str(OmegaConf.select(hydra_cfg, f"hydra.{node}._target_", default="") or "")


def check_array_folder(sweep_dir: Path | str) -> None:
    """UserError for the default sweep folder outside a SLURM array (each task would have
    its own idea of the sweep)."""
    if "SLURM_ARRAY_JOB_ID" not in os.environ and Path(sweep_dir) == Path(
            ARRAY_LOCAL_SWEEP_DIR):
        raise UserError("hydra/launcher=array outside a SLURM array: set "
                        "hydra.sweep.dir=PATH, the same folder for every task")


def array_point(index: int | None, index_env: str, first_index: int, n: int | None) -> int:
    """The point an array task runs, in 0..n-1 (any when `n` is None: not known yet);
    UserError (one line) for an index that is missing, no integer, or outside the sweep."""
    if index is not None:
        name, raw = "hydra.launcher.index", str(index)
    else:
        name, raw = index_env, os.environ.get(index_env)
        if raw is None:
            raise UserError(f"hydra/launcher=array: {name} is not set; run inside a job "
                            "array, or set hydra.launcher.index=I (or "
                            "hydra.launcher.index_env=VARIABLE)")
    if not re.fullmatch(r"\s*[-+]?\d+\s*", raw):
        raise UserError(f"{name}={raw!r}: not an integer")
    point = int(raw) - first_index
    if n is not None and not 0 <= point < n:
        raise UserError(f"{name}={raw}: outside the sweep's {n} points (indices "
                        f"{first_index}..{first_index + n - 1})")
    return point


def check_array(hydra_cfg: DictConfig, points: int | None) -> None:
    """An array task's folder and index, as the launcher will judge them; `points`: the
    sweep's number of points (None: not known before Hydra expands it)."""
    if not _target(hydra_cfg, "launcher").endswith(".ArrayLauncher"):
        return
    launcher = hydra_cfg.hydra.launcher
    if launcher.get("count", False):  # prints the count, runs nothing
        return
    try:
        sweep_dir = str(OmegaConf.select(hydra_cfg, "hydra.sweep.dir"))
    except Exception:  # an interpolation only Hydra's run can resolve
        sweep_dir = None
    if sweep_dir is not None:
        check_array_folder(sweep_dir)
    array_point(launcher.get("index"), launcher.get("index_env", "SLURM_ARRAY_TASK_ID"),
                launcher.get("first_index", 0), points)


def check_joblib(hydra_cfg: DictConfig) -> None:
    """UserError for a setting of Hydra's joblib launcher that joblib refuses (it runs the
    loky backend)."""
    if not _target(hydra_cfg, "launcher").endswith(".JoblibLauncher"):
        return
    s = hydra_cfg.hydra.launcher
    key = "hydra.launcher."
    if s.n_jobs == 0:
        raise ConfigError(key + "n_jobs", s.n_jobs, "must be a nonzero integer (jobs at once; "
                          "-1 = all cores, -2 = all but one, as joblib)")
    if s.get("prefer") not in (None, "processes", "threads"):
        raise ConfigError(key + "prefer", s.prefer, "choose one of processes, threads, null")
    if s.get("require") is not None:
        raise ConfigError(key + "require", s.require, "must be null (Hydra's joblib launcher "
                          "runs joblib's loky backend, which shares no memory)")
    if s.get("mmap_mode") not in (None, "r+", "r", "w+", "c"):
        raise ConfigError(key + "mmap_mode", s.mmap_mode, "choose one of r+, r, w+, c, null")
    if s.get("timeout") is not None and not s.timeout > 0:
        raise ConfigError(key + "timeout", s.timeout, "must be a number > 0, or null")
    batch = str(s.get("batch_size", "auto")).strip()
    if batch != "auto" and not (batch.isdigit() and int(batch) >= 1):
        raise ConfigError(key + "batch_size", s.batch_size,
                          "must be an integer >= 1, or auto")
    dispatch = str(s.get("pre_dispatch", "all")).strip()
    if dispatch != "all" and not re.fullmatch(r"[\d\s.+\-*/()]+",
                                              dispatch.replace("n_jobs", "1")):
        raise ConfigError(key + "pre_dispatch", s.pre_dispatch,
                          "must be all, an integer, or an expression of n_jobs (2*n_jobs)")
    nbytes = s.get("max_nbytes")
    if nbytes is not None and not re.fullmatch(r"\d+|\d+(\.\d*)?[KMG]", str(nbytes).strip()):
        raise ConfigError(key + "max_nbytes", nbytes,
                          "must be a number of bytes (1000000, 50K, 500M, 1G), or null")


def check_search_space(hydra_cfg: DictConfig, overrides: list) -> None:
    """UserError (one line) for a key of a search sweeper's `hydra.sweeper.params` that is
    not declared, or whose choices, range or interval bounds the key does not allow. The
    command line's own sweeps are checked by preflight (and win over the params)."""
    if not _target(hydra_cfg, "sweeper").endswith(".OptunaStudySweeper"):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from forgetting.runs.overrides import check_override  # the schema: not for a plugin scan

    params = OmegaConf.select(hydra_cfg, PARAMS, default=None) or {}
    lines = {str(k): f"{k}={v}" for k, v in params.items()}
    for ov in overrides:  # hydra.sweeper.params.KEY='...' (replaces the preset's)
        key = ov.key_or_group
        if key.startswith(PARAMS + ".") and not ov.is_delete():
            value = ov.get_value_string() if ov.is_sweep_override() else ov.value()
            if not isinstance(value, str):
                value = ov.get_value_element_as_str()
            name = key[len(PARAMS) + 1:]
            lines[name] = f"{name}={value}"
    given = {ov.key_or_group for ov in overrides}
    parser = OverridesParser.create()
    for key, line in lines.items():
        if key in given:  # the command line wins
            continue
        try:
            ov = parser.parse_overrides([line])[0]
        except Exception as e:  # Hydra's OverrideParseException: its first line
            raise UserError(f"hydra.sweeper.params: cannot parse {line!r}: "
                            f"{str(e).splitlines()[0]}") from None
        check_override(ov, label="hydra.sweeper.params: ")
