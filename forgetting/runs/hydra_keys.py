"""Hydra's own overrides checked before Hydra starts (called by forgetting/runs/preflight.py),
so that a typo is one `error:` line instead of Hydra's report, and creates nothing:

- `hydra.X.Y=V`: the key walked down Hydra's config schema (its HydraConf dataclass), an unknown
  key named with the nearest one and the keys of its node (`hydra.sweep.dri` -> did you mean
  'hydra.sweep.dir'?), a value of the wrong type named with what the key takes
  (`hydra.job.chdir=maybe`). `hydra.launcher.*` and `hydra.sweeper.*` belong to the selected
  plugin (forgetting/runs/points.py `check_plugin_key`); free mappings (job_logging,
  callbacks, job.env_set, ...) take any key.
- `hydra/GROUP=NAME`: GROUP one of Hydra's groups, NAME one of the configs Hydra finds for it
  (its own, installed plugins', ours). `hydra/launcher` is checked with its presets and sbatch
  (forgetting/runs/cluster.py).
"""

from __future__ import annotations

import copy
import difflib
import functools

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError
from omegaconf.nodes import BooleanNode, EnumNode, FloatNode, IntegerNode, ValueNode

from forgetting.core.errors import ConfigError, UserError
from forgetting.core.keys import describe
from forgetting.runs.overrides import choice_error, interpolation, sweep_values


@functools.cache
def _schema() -> DictConfig:
    """Hydra's config schema: the `hydra` node."""
    from hydra.conf import HydraConf

    return OmegaConf.structured(HydraConf)


def _keys(node: DictConfig) -> list[str]:
    return sorted(str(k) for k in node.keys() if k != "defaults")


def _free(node) -> bool:
    """A node that takes any key (or a plugin's, checked elsewhere): not a dataclass's."""
    return not isinstance(node, DictConfig) or OmegaConf.get_type(node) in (None, dict)


def check_hydra_key(ov) -> None:
    """Raise UserError (one line) for a `hydra.` key that is not in Hydra's schema, or a value
    of the wrong type for it."""
    key = ov.key_or_group
    node, path = _schema(), "hydra"
    parts = key.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if _free(node):
            return
        options = _keys(node)
        if part not in options:
            near = difflib.get_close_matches(part, options, n=1, cutoff=0.6)
            meant = ".".join([path, *near[:1], *parts[i + 1:]])
            hint = f"did you mean {meant!r}? " if near else ""
            raise UserError(f"unknown key {key!r}; {hint}keys of {path} are "
                            f"{', '.join(options)}")
        node, path = node._get_node(part), f"{path}.{part}"
    if isinstance(node, ValueNode) and not ov.is_delete():
        for value in sweep_values(ov):
            _check_value(key, node, value)


def check_node_value(cfg: DictConfig, ov) -> None:
    """ConfigError when the plain value of `ov` does not fit the type of the node it sets in
    the composed `cfg` (a plugin's `hydra.launcher.n_jobs=abc`)."""
    if ov.is_sweep_override() or ov.is_delete():
        return
    parent_key, _, name = ov.key_or_group.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None)
    if isinstance(parent, DictConfig) and name in parent:
        node = parent._get_node(name)
        if isinstance(node, ValueNode):
            _check_value(ov.key_or_group, node, ov.value())


def _check_value(key: str, node: ValueNode, value: object) -> None:
    if interpolation(value) or type(node) is ValueNode:
        return
    probe = copy.deepcopy(node)
    try:
        probe._set_value(value)
    except ValidationError:
        raise ConfigError(key, value, _allowed(node)) from None


def _allowed(node: ValueNode) -> str:
    if isinstance(node, EnumNode):
        return f"choose one of {', '.join(m.name for m in node._metadata.ref_type)}"
    for kind, cls in ((bool, BooleanNode), (int, IntegerNode), (float, FloatNode)):
        if isinstance(node, cls):
            return describe(kind, None)
    return "must be a string"


@functools.cache
def hydra_groups() -> dict[str, tuple[str, ...]]:
    """Hydra's config groups (hydra/NAME) and the configs it finds for each."""
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    from forgetting.runs.configs import CONFIG_DIR, register_configs

    if "schema.yaml" not in ConfigStore.instance().repo:  # forgetting.run registered them
        register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return {f"hydra/{name}": tuple(loader.get_group_options(f"hydra/{name}"))
                for name in loader.list_groups("hydra")}


def check_hydra_group(ov) -> None:
    """Raise UserError (one line) for `hydra/GROUP=NAME` where GROUP is none of Hydra's groups
    or NAME none of its configs (hydra/launcher: forgetting/runs/cluster.py)."""
    group = ov.key_or_group
    if group == "hydra/launcher" or ov.is_delete():
        return
    groups = hydra_groups()
    if group not in groups:
        names = sorted(groups)
        near = difflib.get_close_matches(group, names, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UserError(f"unknown config group {group!r}; {hint}Hydra's groups are "
                        f"{', '.join(names)}")
    for value in sweep_values(ov):
        if value not in groups[group]:
            raise choice_error(group, value, list(groups[group]))
