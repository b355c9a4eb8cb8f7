"""Check command-line overrides before Hydra starts, so bad input costs no run.

Every value of every swept key is checked against its declaration (forgetting/core/config.py:
type, range, choices), so `lr=1,2,-1` fails before the first run starts; group choices are
checked against the files in conf/, and unknown keys are named with the allowed ones, each as one
line instead of Hydra's multi-line report. So are the launcher preset, a SLURM launcher without
`sbatch`, and an output folder that cannot be written (forgetting/runs/cluster.py). Then the
points the command runs are composed and checked across keys, against the data and against the
selected plugins' keys (forgetting/runs/points.py): nothing is created for bad input.
"""

from __future__ import annotations

import difflib
import re

from forgetting.core.config import KEYS, SECTIONS
from forgetting.core.errors import ConfigError, UserError
from forgetting.runs.cluster import check_launch
from forgetting.runs.configs import CONFIG_DIR, GROUPS, group_options, preset_names
from forgetting.runs.points import check_points

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def _sweep_values(override) -> list[object]:
    """All values an override stands for (one for a plain value, each of a sweep)."""
    if override.is_sweep_override():
        if override.is_discrete_sweep():
            return list(override.sweep_iterator())
        return []  # interval sweeps: the sweeper samples; checked per run
    return [override.value()]


def _choose(label: str, override, options: list[str]) -> None:
    """ConfigError naming the choices for the first value of a group override not in them."""
    for value in _sweep_values(override):
        if value not in options:
            raise ConfigError(label, value, f"choose one of {', '.join(options)}")


def _interpolation(value: object) -> bool:
    return isinstance(value, str) and value.startswith("${")


def check_key(key: str) -> None:
    """Raise UserError naming the allowed keys when `key` is not declared; a near miss of a
    declared key names that key (a `+KEY=` hint only for a name that is no typo of one)."""
    root, _, rest = key.partition(".")
    top = sorted({k.split(".")[0] for k in KEYS} | set(GROUPS))
    if root not in top:
        near = difflib.get_close_matches(root, top, n=1, cutoff=0.75)
        if near:
            raise UserError(f"unknown key {key!r}; did you mean {near[0] + key[len(root):]!r}? "
                            f"top-level keys are {', '.join(top)}")
        raise UserError(f"unknown key {key!r}; top-level keys are {', '.join(top)} "
                        f"(use +{key}=... to add a new one)")
    if rest and root in SECTIONS and f"{root}.{rest.split('.')[0]}" not in KEYS:
        sub = sorted(k.split(".", 1)[1] for k in KEYS if k.startswith(root + "."))
        near = difflib.get_close_matches(rest.split(".")[0], sub, n=1, cutoff=0.75)
        hint = f"did you mean {root + '.' + near[0]!r}? " if near else ""
        raise UserError(f"unknown key {key!r}; {hint}keys of {root} are {', '.join(sub)}")


def _parse(args: list[str]) -> list:
    """Hydra's parsed overrides; UserError naming the override that does not parse, and why."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    overrides = []
    for arg in args:
        try:
            overrides += parser.parse_overrides([arg])
        except OverrideParseException as e:
            lines = [ln for ln in str(e).splitlines()
                     if ln.strip() and not ln.startswith(("Error parsing override", "See http"))]
            reason = re.sub(r"^\w+ while evaluating ", "", lines[0]) if lines else "bad syntax"
            raise UserError(f"cannot parse {arg!r}: {reason} (Hydra's override grammar: "
                            f"{GRAMMAR})") from None
    return overrides


def preflight(argv: list[str]) -> None:
    """Raise UserError (one line) for the first bad command-line override."""
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    overrides = _parse(args)
    for ov in overrides:
        key = ov.key_or_group
        if key == "sweep" and ov.is_add():
            _choose("+sweep", ov, preset_names())
        elif (ov.is_add() or ov.is_force_add()) and key != "hydra" \
                and (CONFIG_DIR / key).is_dir():  # an optional group: +trainset=...
            _choose(f"+{key}", ov, group_options(key))
        if key.startswith("hydra") or ov.is_delete() or ov.is_add() or ov.is_force_add():
            continue
        if key in GROUPS:
            _choose(key, ov, group_options(key))
            continue
        check_key(key)
        if key in KEYS:
            for value in _sweep_values(ov):
                if not _interpolation(value):
                    KEYS[key].check(value)
    check_launch(overrides, CONFIG_DIR)  # hydra/launcher choice, sbatch, writable folders
    check_points(argv)  # each point composed: checks across keys, the data, plugin keys
