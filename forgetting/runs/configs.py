"""Where the configs live and how Hydra learns of them.

An installed package carries conf/ and sweeps/ inside itself (forgetting/conf,
forgetting/sweeps); a checkout has them beside the package. `register_configs` stores the schema
(forgetting/core/config.py) in Hydra's ConfigStore as `schema`, and each preset
`sweeps/NAME.yaml` as a member of group `sweep` (package _global_), selected with `+sweep=NAME`.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from forgetting.core.config import Config

PACKAGE_DIR = Path(__file__).resolve().parent.parent
_INSTALLED = PACKAGE_DIR / "conf"
CONFIG_DIR = _INSTALLED if _INSTALLED.is_dir() else PACKAGE_DIR.parent / "conf"
SWEEPS_DIR = CONFIG_DIR.parent / "sweeps"  # presets, selected with +sweep=NAME
GROUPS = ("model", "data", "recipe", "logger")  # config groups a plain override chooses from


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def preset_names() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def register_configs(with_presets: bool = True) -> None:
    """Store the schema and (`with_presets`) every sweep preset in Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for path in sorted(SWEEPS_DIR.glob("*.yaml")) if with_presets else []:
        cs.store(group="sweep", name=path.stem, node=OmegaConf.load(path), package="_global_")


def ensure_plugin(kind: type, module: str, name: str) -> None:
    """Make sure Hydra knows our plugin class `module.name` (a Sweeper or Launcher: `kind`),
    also where its plugin scan cannot see our hydra_plugins/ (an editable install, used from
    another folder); the module is imported only then."""
    import importlib

    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    if not any(c.__name__ == name for c in plugins.discover(kind)):
        plugins.register(getattr(importlib.import_module(module), name))
