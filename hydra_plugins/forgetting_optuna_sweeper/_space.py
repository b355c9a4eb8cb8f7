"""Hydra's sweep syntax -> Optuna distributions, and sampled values -> a job's overrides.

    choice(a, b) | a,b          categorical (Optuna keeps the value; lists become their text)
    range(start, stop, step)    integers (or floats) from start up to, not including, stop
    interval(lo, hi)            float in [lo, hi]
    tag(log, interval(lo, hi))  float on a log scale
    tag(int, interval(lo, hi))  integer in [lo, hi]  (tags combine: tag(log, int, interval(...)))

Any other override (a plain value, `+key=...`, `~key`) is passed to every job as written.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.types import Override

from hydra_plugins.forgetting_optuna_sweeper._errors import SweeperError


@dataclass
class Param:
    name: str  # Optuna's name for it: the key without +/++ (lr, model, data.noise)
    key: str  # the override's key as the job gets it (lr, +foo, model)
    distribution: Any  # an optuna.distributions.BaseDistribution
    labels: dict = field(default_factory=dict)  # categorical: Optuna's choice -> override text


@dataclass
class SearchSpace:
    entries: list  # in command-line order: a Param, or a fixed override's text

    @property
    def params(self) -> list[Param]:
        return [e for e in self.entries if isinstance(e, Param)]

    def distributions(self) -> dict:
        return {p.name: p.distribution for p in self.params}

    def overrides(self, values: dict) -> list[str]:
        """A job's overrides: each Param with its sampled value, fixed ones as written."""
        out = []
        for entry in self.entries:
            if isinstance(entry, Param):
                out.append(f"{entry.key}={format_value(entry, values[entry.name])}")
            else:
                out.append(entry)
        return out

    def grid(self) -> list[dict]:
        """Every point of a discrete space, the last key varying fastest (Hydra's order)."""
        axes = []
        for p in self.params:
            values = discrete_values(p.distribution)
            if values is None:
                raise SweeperError(f"hydra.sweeper.sampler='grid': {p.key} is a continuous "
                                   "interval; give it as choice(...) or range(...)")
            axes.append(values)
        names = [p.name for p in self.params]
        return [dict(zip(names, point)) for point in itertools.product(*axes)]


def parse_space(params: dict | None, arguments: list[str], parser) -> SearchSpace:
    """The search space of `hydra.sweeper.params` then the command line (which wins per key)."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    try:
        overrides = parser.parse_overrides(lines)
    except Exception as e:  # Hydra's OverrideParseException and friends: one line
        raise SweeperError(str(e).splitlines()[0]) from None
    by_key: dict[str, Any] = {}
    for ov in overrides:
        by_key[ov.key_or_group] = to_entry(ov)  # a later override of a key replaces it in place
    space = SearchSpace(list(by_key.values()))
    if not space.params:
        raise SweeperError("hydra.sweeper.params: empty search space; give at least one key "
                           "choice(...), range(...) or interval(...) (in hydra.sweeper.params "
                           "or on the command line)")
    return space


def to_entry(ov: Override):
    """A Param for a sweep override, its text for anything else."""
    if not ov.is_sweep_override():
        return ov.input_line if ov.input_line else \
            f"{ov.get_key_element()}={ov.get_value_element_as_str()}"
    try:
        return make_param(ov)
    except ValueError as e:  # Optuna's check of the bounds
        raise SweeperError(f"{ov.key_or_group}={ov.get_value_string()}: {e}") from None


def make_param(ov: Override) -> Param:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    name, key, value = ov.key_or_group, ov.get_key_element(), ov.value()
    if ov.is_interval_sweep():
        log, is_int = "log" in value.tags, "int" in value.tags
        if is_int:
            return Param(name, key, IntDistribution(int(value.start), int(value.end), log=log))
        return Param(name, key, FloatDistribution(float(value.start), float(value.end), log=log))
    values = list(ov.sweep_iterator())
    if not values:
        raise SweeperError(f"{key}={ov.get_value_string()}: has no values")
    if ov.is_range_sweep():
        values = sorted(values)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            step = values[1] - values[0] if len(values) > 1 else 1
            return Param(name, key, IntDistribution(values[0], values[-1], step=step))
        step = _round(abs(value.step))
        return Param(name, key, FloatDistribution(_round(values[0]), _round(values[-1]),
                                                  step=step))
    labels = {}
    for v in values:
        text = Override._get_value_element_as_str(v)
        choice = v if isinstance(v, (int, float, str, bool)) else text  # lists, dicts: text
        labels[choice] = text
    return Param(name, key, CategoricalDistribution(list(labels)), labels)


def discrete_values(distribution) -> list | None:
    """All values of a discrete distribution in order; None for a continuous one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        n = round((distribution.high - distribution.low) / distribution.step)
        return [_round(distribution.low + i * distribution.step) for i in range(n + 1)]
    return None


def format_value(param: Param, value) -> str:
    """The override text of a sampled value."""
    if param.labels:
        return param.labels[value]
    if isinstance(value, float):
        return repr(_round(value) if param.distribution.step is not None else value)
    return str(value)


def _round(x: float) -> float:
    """Undo float noise of range arithmetic (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}")
