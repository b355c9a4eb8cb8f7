"""Check command-line overrides before Hydra starts, so bad input costs no run.

Every value of every swept key is checked (`lr=1,2,-1` fails before the first run starts), group
choices are checked against the files in conf/, and unknown keys are named with the allowed
ones, each as one line instead of Hydra's multi-line report. So are the launcher preset, a
SLURM launcher without `sbatch`, and an output folder that cannot be written
(forgetting/cluster.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from forgetting.cluster import check_launch
from forgetting.config import SECTIONS, CHECKED_KEYS, Config, validate_value
from forgetting.errors import ConfigError, UserError

PACKAGE_DIR = Path(__file__).resolve().parent
# An installed package carries conf/ and sweeps/ inside it; a checkout has them beside it.
_INSTALLED = PACKAGE_DIR / "conf"
CONFIG_DIR = _INSTALLED if _INSTALLED.is_dir() else PACKAGE_DIR.parent / "conf"
SWEEPS_DIR = CONFIG_DIR.parent / "sweeps"  # presets, selected with +sweep=NAME
GROUPS = ("model", "data", "recipe")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


# a value's check and its message, by the schema field's declared type
SCALAR_TYPES = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
ALLOWED = {"bool": "must be true or false", "int": "must be an integer",
           "float": "must be a number"}


def _field_type(root: str, rest: str) -> str | None:
    """The declared type (as written in the schema) of key root[.rest], or None."""
    if not rest:
        return next((f.type for f in dataclasses.fields(Config) if f.name == root), None)
    if root in SECTIONS and "." not in rest:
        return next((f.type for f in dataclasses.fields(SECTIONS[root]) if f.name == rest), None)
    return None


def _sweep_values(override) -> list[object]:
    """All values an override stands for (one for a plain value, each of a sweep)."""
    if override.is_sweep_override():
        if override.is_discrete_sweep():
            return list(override.sweep_iterator())
        return []  # interval sweeps: the sweeper samples; checked per run
    return [override.value()]


def preflight(argv: list[str]) -> None:
    """Raise UserError (one line) for the first bad command-line override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except OverrideParseException as e:
        raise UserError(str(e).splitlines()[0]) from None
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for ov in overrides:
        key = ov.key_or_group
        if key == "sweep" and ov.is_add() and not ov.is_sweep_override():
            presets = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
            if ov.value() not in presets:
                raise ConfigError("+sweep", ov.value(), f"choose one of {', '.join(presets)}")
        if key.startswith("hydra") or ov.is_delete() or ov.is_add() or ov.is_force_add():
            continue
        root, _, rest = key.partition(".")
        if key in GROUPS:
            options = group_options(key)
            for value in _sweep_values(ov):
                if value not in options:
                    raise ConfigError(key, value, f"choose one of {', '.join(options)}")
            continue
        if root not in fields:
            allowed = sorted(set(fields) | set(GROUPS))
            raise UserError(f"unknown key {key!r}; top-level keys are {', '.join(allowed)} "
                            f"(use +{key}=... to add a new one)")
        if rest and root in SECTIONS:
            sub = {f.name for f in dataclasses.fields(SECTIONS[root])}
            if rest.split(".")[0] not in sub:
                raise UserError(f"unknown key {key!r}; keys of {root} are "
                                f"{', '.join(sorted(sub))}")
        kind = _field_type(root, rest)
        for value in _sweep_values(ov):
            if key in CHECKED_KEYS:
                validate_value(key, value)
            elif kind in SCALAR_TYPES and not SCALAR_TYPES[kind](value) \
                    and not (isinstance(value, str) and value.startswith("${")):
                raise ConfigError(key, value, ALLOWED[kind])
    check_launch(overrides, CONFIG_DIR)  # hydra/launcher choice, sbatch, writable folders
