"""How a config key is declared: `key(...)` and `section(...)` make dataclass fields whose
metadata (help, allowed values, hashed, table column) `declared_keys` turns into `Key` records.
The keys themselves are declared in forgetting/core/config.py.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from forgetting.core.errors import ConfigError

MISSING = "???"  # OmegaConf's mark of a value a config group fills in


@dataclass(frozen=True)
class Rule:
    """The values a key allows beyond its type: bounds and choices, and the one-line message."""
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple | None = None
    note: str = ""  # what a special value means, e.g. "0 = off"

    def allows(self, value: object) -> bool:
        if self.choices is not None:
            return value in self.choices
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))


def number_text(x: float) -> str:
    return f"{x:g}"


def describe(kind: type, rule: Rule | None) -> str:
    """What a key of `kind` under `rule` allows, as the end of an error line."""
    if rule is not None and rule.choices is not None:
        return f"choose one of {', '.join(map(str, rule.choices))}"
    if kind is bool:
        return "must be true or false"
    noun = "an integer" if kind is int else "a number"
    if rule is None:
        return f"must be {noun}"
    low = (f"({number_text(rule.gt)}" if rule.gt is not None else
           f"[{number_text(rule.ge)}" if rule.ge is not None else None)
    high = (f"{number_text(rule.lt)})" if rule.lt is not None else
            f"{number_text(rule.le)}]" if rule.le is not None else None)
    if low and high:
        text = f"must be in {low}, {high}"
    elif low:
        text = f"must be {noun} {'>' if rule.gt is not None else '>='} {low[1:]}"
    elif high:
        text = f"must be {noun} {'<' if rule.lt is not None else '<='} {high[:-1]}"
    else:
        text = f"must be {noun}"
    return f"{text} ({rule.note})" if rule.note else text


def key(default: Any = MISSING, help: str = "", *, rule: Rule | None = None,
        hashed: bool = True, column: str | bool = False, shown: str | None = None,
        factory=None):
    """Declare a key: a dataclass field whose metadata the rest of the package reads.

    `hashed`: part of the config hash (False only for keys that never change what a run
    computes); `column`: a column of the sweep table (True: named as the key's last part);
    `shown`: the default as the README shows it, where a config group sets it."""
    meta = {"help": help, "rule": rule, "hashed": hashed, "column": column, "shown": shown}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def section(cls, help: str = "", group: bool = False):
    """A nested section; `group`: filled in by a Hydra config group (conf/NAME/)."""
    meta = {"help": help, "section": True, "group": group}
    if group:
        return field(default=MISSING, metadata=meta)
    return field(default_factory=cls, metadata=meta)


@dataclass(frozen=True)
class Key:
    """One declared key, as the rest of the package sees it."""
    name: str  # dotted: "probe.epochs"
    kind: Any  # bool, int, float, str, list[float], Optional[...]
    default: Any
    help: str
    rule: Rule | None
    hashed: bool
    column: str | None  # the table column's name, or None
    shown: str | None

    @property
    def scalar(self) -> type | None:
        """bool, int, float or str where the key holds one (None allowed), else None."""
        kind = self.kind
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
            kind = args[0]
        return kind if kind in (bool, int, float, str) else None

    def check(self, value: object) -> None:
        """Raise ConfigError (one line: key, value, allowed) unless `value` fits."""
        if value is None and typing.get_origin(self.kind) is not None and \
                type(None) in typing.get_args(self.kind):
            return
        kind = self.scalar
        if kind is None:
            return
        fits = {bool: lambda v: isinstance(v, bool),
                int: lambda v: isinstance(v, int) and not isinstance(v, bool),
                float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and math.isfinite(v),
                str: lambda v: isinstance(v, str)}[kind]
        if not fits(value) or (self.rule is not None and not self.rule.allows(value)):
            raise ConfigError(self.name, value, describe(kind, self.rule))


def declared_keys(cls, prefix: str = "") -> list[Key]:
    """Every key of dataclass `cls` (sections walked), in declaration order."""
    hints = typing.get_type_hints(cls)
    out: list[Key] = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if f.metadata.get("section"):
            out += declared_keys(hints[f.name], name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        column = f.metadata.get("column")
        out.append(Key(name, hints[f.name], default, f.metadata.get("help", ""),
                       f.metadata.get("rule"), f.metadata.get("hashed", True),
                       f.name if column is True else (column or None),
                       f.metadata.get("shown")))
    return out
