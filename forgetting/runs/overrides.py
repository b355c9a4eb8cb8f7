"""One override checked against the schema, before Hydra starts: the key declared
(forgetting/core/config.py KEYS, conf/'s groups), each value it stands for allowed (every value
of a choice or range sweep; both bounds of an interval a search sweeper samples), a group's
choice one of its files. Used for the command line (forgetting/runs/preflight.py) and for a
search sweeper's `hydra.sweeper.params` (forgetting/runs/plugin_settings.py).
"""

from __future__ import annotations

import difflib

from forgetting.core.config import KEYS, SECTIONS
from forgetting.core.errors import ConfigError, UserError
from forgetting.core.keys import describe, number_text
from forgetting.runs.configs import CONFIG_DIR, GROUPS, group_options, preset_names


def near_hint(value: object, options: list[str], cutoff: float = 0.75) -> str:
    """' (did you mean 'X'?)' for the option closest to `value`, else ''."""
    near = difflib.get_close_matches(str(value), [str(o) for o in options], n=1,
                                     cutoff=cutoff)
    return f" (did you mean {near[0]!r}?)" if near else ""


def choice_error(label: str, value: object, options: list[str]) -> ConfigError:
    """`label='value': choose one of a, b, c` (with the near miss, if any)."""
    return ConfigError(label, value, f"choose one of {', '.join(options)}"
                       + near_hint(value, options))


def sweep_values(override) -> list[object]:
    """All values an override stands for (one for a plain value, each of a choice or range
    sweep); none for an interval (see `check_interval`)."""
    if override.is_sweep_override():
        if override.is_discrete_sweep():
            return list(override.sweep_iterator())
        return []
    return [override.value()]


def choose(label: str, override, options: list[str]) -> None:
    """ConfigError naming the choices for the first value of a group override not in them."""
    for value in sweep_values(override):
        if value not in options:
            raise choice_error(label, value, options)


def interpolation(value: object) -> bool:
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


def check_interval(override) -> None:
    """ConfigError unless every value of `interval(lo, hi)` (tag(int, ...): integers) is one
    the key allows: both bounds checked (a sampler may draw either), and a key that takes
    integers needs tag(int, ...)."""
    key = KEYS[override.key_or_group]
    interval = override.value()
    text = f"{override.key_or_group}={override.get_value_string()}"
    whole = "int" in interval.tags
    if key.scalar is int and not whole:
        raise UserError(f"{text}: samples fractions, but {key.name} takes an integer; use "
                        f"tag(int, interval(...)) ({describe(int, key.rule)})")
    for bound in (interval.start, interval.end):
        value = int(bound) if whole else float(bound)
        try:
            key.check(value)
        except ConfigError:
            allowed = describe(key.scalar, key.rule) if key.scalar else "cannot be sampled"
            raise UserError(f"{text}: the bound {number_text(value)} is not allowed: "
                            f"{key.name} {allowed}") from None


def check_override(ov, label: str = "") -> None:
    """Raise UserError (one line) when an override of ours (not `hydra...`) names an unknown
    key, a group choice without a file, or a value its key does not allow. `label` prefixes
    the message (where the override came from, e.g. `hydra.sweeper.params: `)."""
    key = ov.key_or_group
    try:
        if key == "sweep" and ov.is_add():
            choose("+sweep", ov, preset_names())
        elif (ov.is_add() or ov.is_force_add()) and key != "hydra" \
                and (CONFIG_DIR / key).is_dir():  # an optional group: +trainset=...
            choose(f"+{key}", ov, group_options(key))
        if key.startswith("hydra") or ov.is_delete() or ov.is_add() or ov.is_force_add():
            return
        if key in GROUPS:
            choose(key, ov, group_options(key))
            return
        check_key(key)
        if key not in KEYS:
            return
        if ov.is_interval_sweep():
            check_interval(ov)
        for value in sweep_values(ov):
            if not interpolation(value):
                KEYS[key].check(value)
    except UserError as e:
        if not label:
            raise
        raise UserError(f"{label}{e}") from None
