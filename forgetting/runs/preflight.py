"""Check command-line overrides before Hydra starts, so bad input costs no run.

Every value of every swept key is checked against its declaration (forgetting/core/config.py:
type, range, choices), so `lr=1,2,-1` fails before the first run starts; group choices are
checked against the files in conf/, and unknown keys are named with the allowed ones, each as one
line instead of Hydra's multi-line report. So are the launcher preset, a SLURM launcher without
`sbatch`, and an output folder that cannot be written (forgetting/runs/cluster.py).
"""

from __future__ import annotations

from forgetting.core.config import KEYS, SECTIONS
from forgetting.core.errors import ConfigError, UserError
from forgetting.runs.cluster import check_launch
from forgetting.runs.configs import CONFIG_DIR, GROUPS, group_options, preset_names


def _sweep_values(override) -> list[object]:
    """All values an override stands for (one for a plain value, each of a sweep)."""
    if override.is_sweep_override():
        if override.is_discrete_sweep():
            return list(override.sweep_iterator())
        return []  # interval sweeps: the sweeper samples; checked per run
    return [override.value()]


def _interpolation(value: object) -> bool:
    return isinstance(value, str) and value.startswith("${")


def check_key(key: str) -> None:
    """Raise UserError naming the allowed keys when `key` is not declared."""
    root, _, rest = key.partition(".")
    top = sorted({k.split(".")[0] for k in KEYS} | set(GROUPS))
    if root not in top:
        raise UserError(f"unknown key {key!r}; top-level keys are {', '.join(top)} "
                        f"(use +{key}=... to add a new one)")
    if rest and root in SECTIONS and f"{root}.{rest.split('.')[0]}" not in KEYS:
        sub = sorted(k.split(".", 1)[1] for k in KEYS if k.startswith(root + "."))
        raise UserError(f"unknown key {key!r}; keys of {root} are {', '.join(sub)}")


def preflight(argv: list[str]) -> None:
    """Raise UserError (one line) for the first bad command-line override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except OverrideParseException as e:
        raise UserError(str(e).splitlines()[0]) from None
    for ov in overrides:
        key = ov.key_or_group
        if key == "sweep" and ov.is_add() and not ov.is_sweep_override():
            presets = preset_names()
            if ov.value() not in presets:
                raise ConfigError("+sweep", ov.value(), f"choose one of {', '.join(presets)}")
        if key.startswith("hydra") or ov.is_delete() or ov.is_add() or ov.is_force_add():
            continue
        if key in GROUPS:
            options = group_options(key)
            for value in _sweep_values(ov):
                if value not in options:
                    raise ConfigError(key, value, f"choose one of {', '.join(options)}")
            continue
        check_key(key)
        if key in KEYS:
            for value in _sweep_values(ov):
                if not _interpolation(value):
                    KEYS[key].check(value)
    check_launch(overrides, CONFIG_DIR)  # hydra/launcher choice, sbatch, writable folders
