"""The points a command line will run, composed and checked before Hydra creates anything.

forgetting/runs/preflight.py checks each override on its own (declared keys, types, ranges,
choices). This module composes the job config of the points the command will run and checks
what spans keys or needs the data, so that bad input stops with one line and no folder:
- forgetting/core/config.py's `validate` (schedule knots and values, cutout against the image
  side, the sharpness sample against a batch, ...);
- the data: where it is (forgetting/core/source.py) and whether a batch (and the sharpness
  sample) fits in the training subset (forgetting/core/setup.py's `check_fits`);
- `hydra.launcher.*` and `hydra.sweeper.*` keys against the selected plugin's config (one line
  with the nearest key instead of Hydra's report), and the plugins' settings: an array task's
  index among the points, joblib's settings, a search's params
  (forgetting/runs/plugin_settings.py).

Which points: a single run's one; the basic sweeper's grid (a preset's `hydra.sweeper.params`,
then the command line, each key's last value winning, as Hydra does), all of it up to
MAX_POINTS and beyond that every swept value at least once; a search sweeper's (optuna_study)
first value of each choice (its ranges are sampled later, and checked per run); an array
task's (hydra/launcher=array: every task of the array runs this) the grid's first point only,
so that a task's start costs the same in an array of any size. Each distinct
combination of config groups is composed once; plain values are set on a copy of its object.
"""

from __future__ import annotations

import copy
import difflib
import functools

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from forgetting.core.config import Config, validate
from forgetting.core.errors import UserError
from forgetting.core.source import (
    DOWNLOAD,
    check_download,
    check_fits,
    class_sizes,
    locate,
    subset_size,
)
from forgetting.runs.configs import CONFIG_DIR, register_configs
from forgetting.runs.hydra_keys import check_node_value
from forgetting.runs.plugin_settings import (
    PARAMS,
    check_array,
    check_joblib,
    check_search_space,
)

MAX_POINTS = 64  # a larger grid: every swept value at least once
# Hydra's modes, long and short flag: a command takes at most one (preflight.check_modes)
MODES = (("--run", "-r"), ("--multirun", "-m"), ("--cfg", "-c"), ("--info", "-i"),
         ("--shell-completion", "-sc"))
RUN_FLAGS = MODES[1]  # any other flag (--cfg, --help, -cn, ...) is Hydra's to handle
PLUGIN_NODES = ("hydra.launcher.", "hydra.sweeper.")


def check_points(argv: list[str]) -> None:
    """Raise UserError (one line) for the first point of the command that cannot run."""
    if any(a.startswith("-") and a not in RUN_FLAGS for a in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from hydra.types import RunMode

    args = [a for a in argv if not a.startswith("-")]
    parser = OverridesParser.create()
    overrides = parser.parse_overrides(args)  # preflight parsed each one already
    if "schema.yaml" not in ConfigStore.instance().repo:  # forgetting.run registered them
        register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        plugin_keys = [ov for ov in overrides if ov.key_or_group.startswith(PLUGIN_NODES)]
        plain = [first_value(ov) for ov in overrides if ov not in plugin_keys]
        plain = [a for a in plain if a is not None]
        try:
            hydra_cfg = compose("config", overrides=plain, return_hydra_config=True)
        except HydraException:
            return  # Hydra's own report follows; preflight names what it can foresee
        for ov in plugin_keys:
            check_plugin_key(hydra_cfg, ov.key_or_group, sweep=ov.is_sweep_override())
            check_node_value(hydra_cfg, ov)  # hydra.launcher.n_jobs=abc
        check_search_space(hydra_cfg, overrides)  # hydra.sweeper.params of a search
        if plugin_keys:  # with them (hydra.sweeper.params.lr=...: the grid is theirs)
            try:
                hydra_cfg = compose("config", return_hydra_config=True,
                                    overrides=plain + [ov.input_line for ov in plugin_keys])
            except HydraException:
                return
        multirun = any(a in RUN_FLAGS for a in argv) or \
            OmegaConf.select(hydra_cfg, "hydra.mode", default=None) == RunMode.MULTIRUN
        points = sweep_points(hydra_cfg, args, parser) if multirun else None
        if multirun:  # an array task's index among the points; joblib's settings
            check_array(hydra_cfg, None if points is None else len(points))
            check_joblib(hydra_cfg)
        if points is None:
            points = [plain]
        launcher = str(OmegaConf.select(hydra_cfg, "hydra.launcher._target_", default=""))
        if launcher.endswith(".ArrayLauncher"):  # every task starts this way: O(1) each
            points = points[:1]
        job_cfg = hydra_cfg.copy()  # the job config of the command's own groups: composed
        with open_dict(job_cfg):
            del job_cfg["hydra"]
        cache = {structure(parser.parse_overrides(plain)): config_object(job_cfg)}

        def composed(groups: tuple[str, ...]) -> Config | None:
            """The config object of a combination of groups, composed once."""
            if groups not in cache:
                cache[groups] = config_object(compose("config", overrides=list(groups)))
            return cache[groups]

        for point in chosen(points):
            check_point(point, parser, composed)


def config_object(cfg: DictConfig) -> Config | None:
    """The schema's object of a composed job config; None when a value is missing or
    mistyped (the run reports which)."""
    try:
        return OmegaConf.to_object(cfg)
    except Exception:
        return None


def first_value(ov) -> str | None:
    """An override as one value: a choice sweep's first; None for a range the sweeper
    samples (interval)."""
    if not ov.is_sweep_override():
        return ov.input_line
    if not ov.is_discrete_sweep():
        return None
    return f"{ov.get_key_element()}={next(iter(ov.sweep_string_iterator()))}"


def sweep_points(hydra_cfg: DictConfig, args: list[str],
                 parser=None) -> list[list[str]] | None:
    """The basic sweeper's points (lists of overrides; its params, then `args`, each key's
    last value winning, as it does); None for another sweeper, or a sweep that needs Hydra's
    config loader to expand (glob over a group). Also the progress line's N."""
    target = str(OmegaConf.select(hydra_cfg, "hydra.sweeper._target_", default=""))
    if not target.endswith(".BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = parser or OverridesParser.create()

    params = OmegaConf.select(hydra_cfg, "hydra.sweeper.params", default=None) or {}
    try:
        parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + args)
        return [point for batch in BasicSweeper.split_arguments(parsed, None)
                for point in batch]
    except Exception:
        return None


def chosen(points: list[list[str]]) -> list[list[str]]:
    """The first MAX_POINTS points, then each point that brings a value not seen yet."""
    picked, seen = [], set()
    for point in points:
        if len(picked) < MAX_POINTS or not seen.issuperset(point):
            picked.append(point)
            seen.update(point)
    return picked


def structure(parsed: list) -> tuple[str, ...]:
    """The overrides of a point that shape its job config (see `is_structural`; Hydra's
    own `hydra...` ones do not)."""
    return tuple(ov.input_line for ov in parsed
                 if is_structural(ov) and not ov.key_or_group.startswith("hydra"))


def check_point(point: list[str], parser, composed) -> None:
    """Check one point as a run would be checked before it trains: the config object of its
    groups (through `composed`), copied, with its values set."""
    parsed = parser.parse_overrides(point)
    base = composed(structure(parsed))
    if base is None:  # a missing or mistyped value: the run says which, as before
        return
    conf = copy.deepcopy(base)
    interpolated = {}  # `subset_seed='${seed}'`: resolved by OmegaConf, below
    for ov in parsed:
        if is_structural(ov) or ov.key_or_group.startswith("hydra"):  # not the job's values
            continue
        *path, name = ov.key_or_group.split(".")
        node = conf
        try:
            for part in path:
                node = getattr(node, part)
            getattr(node, name)
        except AttributeError:  # not a field of the schema (preflight said so already)
            return
        value = ov.value()
        if isinstance(value, str) and "${" in value:
            interpolated[ov.key_or_group] = value
        else:
            setattr(node, name, value)
    if interpolated:
        cfg = OmegaConf.structured(conf)
        for key, value in interpolated.items():
            OmegaConf.update(cfg, key, value, merge=False)
        conf = config_object(cfg)
        if conf is None:
            return
    validate(conf)
    sizes = data_sizes(conf.data)
    check_fits(conf, subset_size(sizes, conf.subset), sum(sizes))


def is_structural(ov) -> bool:
    """Overrides that change the shape of the config: group choices, additions, deletions
    (composed by Hydra, not set on a copy)."""
    return (ov.is_add() or ov.is_force_add() or ov.is_delete() or "/" in ov.key_or_group
            or (CONFIG_DIR / ov.key_or_group).is_dir())


@functools.cache
def _sizes(name: str, root: str, download: bool, train_size: int, num_classes: int,
           cache_dir: str) -> tuple[int, ...]:
    from types import SimpleNamespace

    data = SimpleNamespace(name=name, root=root, download=download, train_size=train_size,
                           num_classes=num_classes, cache_dir=cache_dir)
    what, where = locate(data)
    if what == DOWNLOAD:  # nothing there: the runs would download, so it must be reachable
        check_download(where)
    return tuple(class_sizes(data))


def data_sizes(data) -> list[int]:
    """Training images per class of a run's data (counted once per source)."""
    return list(_sizes(data.name, str(data.root), bool(data.download), data.train_size,
                       data.num_classes, str(data.cache_dir)))


def check_plugin_key(hydra_cfg: DictConfig, key: str, sweep: bool = False) -> None:
    """UserError naming the nearest key when `key` (hydra.launcher.X or hydra.sweeper.X) is
    not a key of the selected plugin's config, or lies under a null node (optuna_study's
    params), where Hydra can set no key (OmegaConf fails with a traceback; a `sweep` value
    Hydra refuses in its own words)."""
    parts = key.split(".")
    for end in range(2, len(parts)):
        node = ".".join(parts[:end])
        if OmegaConf.select(hydra_cfg, node, default="") is None:
            if sweep:
                return
            inner = ".".join(parts[end:])
            hint = f"; give {inner}=... on the command line" if node == PARAMS else ""
            raise UserError(f"{key}: {node} is null here, so it has no key {inner!r} to "
                            f"set{hint}")
    probe = OmegaConf.masked_copy(hydra_cfg, ["hydra"])
    OmegaConf.set_struct(probe, True)
    try:
        OmegaConf.update(probe, key, None, merge=True)
        return
    except (ConfigAttributeError, ConfigKeyError):
        pass
    except ValidationError:  # a known key (its value is checked by the plugin)
        return
    node_key, _, rest = key.rpartition(".")
    while node_key and OmegaConf.select(hydra_cfg, node_key, default=None) is None:
        node_key, _, rest = node_key.rpartition(".")  # the deepest node that exists
    node = OmegaConf.select(hydra_cfg, node_key)
    if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is dict:
        return  # a free mapping (pruner_kwargs, params): any key, the plugin judges it
    options = sorted(str(k) for k in node.keys())
    name = key[len(node_key) + 1:].split(".")[0]
    near = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    hint = f"did you mean {node_key + '.' + near[0]!r}? " if near else ""
    target = OmegaConf.select(hydra_cfg, node_key + "._target_", default=None)
    which = f" ({str(target).rsplit('.', 1)[-1]})" if target else ""
    raise UserError(f"unknown key {key!r}; {hint}keys of {node_key}{which} are "
                    f"{', '.join(k for k in options if not k.startswith('_'))}")

