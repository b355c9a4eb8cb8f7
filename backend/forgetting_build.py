"""The package's build backend: setuptools' own, with one default changed.

An editable install (`pip install -e .`, `make install`) uses setuptools' `compat` mode unless
`--config-settings editable_mode=...` says otherwise: a .pth file puts the checkout's folder on
sys.path, where Hydra's plugin scan finds hydra_plugins/ for any Hydra app. (The default mode
serves the packages through an import hook, which that scan does not see: `hydra/launcher=packed`
would be unknown to every app but ours.)
"""

import sys

from setuptools import build_meta

build_wheel = build_meta.build_wheel
build_sdist = build_meta.build_sdist
get_requires_for_build_wheel = build_meta.get_requires_for_build_wheel
get_requires_for_build_sdist = build_meta.get_requires_for_build_sdist
get_requires_for_build_editable = build_meta.get_requires_for_build_editable
prepare_metadata_for_build_wheel = build_meta.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = build_meta.prepare_metadata_for_build_editable


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    settings = {"editable_mode": "compat", **(config_settings or {})}
    try:
        return build_meta.build_editable(wheel_directory, settings, metadata_directory)
    except Exception as e:  # a setuptools without compat mode: its default, said once
        if (config_settings or {}).get("editable_mode"):
            raise
        print(f"forgetting: editable_mode=compat failed ({e}); setuptools' default mode is "
              "used, where Hydra apps other than forgetting.run do not see its plugins",
              file=sys.stderr)
        return build_meta.build_editable(wheel_directory, config_settings, metadata_directory)
