"""Check command-line overrides before Hydra starts, so bad input costs no run.

Every value of every swept key is checked against its declaration (forgetting/core/config.py:
type, range, choices), so `lr=1,2,-1` fails before the first run starts; group choices are
checked against the files in conf/, and unknown keys are named with the allowed ones, each as one
line instead of Hydra's multi-line report (forgetting/runs/overrides.py). So are Hydra's own
keys and groups (`hydra.sweep.dri`, `hydra/sweeper=NAME`: forgetting/runs/hydra_keys.py), the
launcher preset, a SLURM launcher without `sbatch`, and an output folder that cannot be written
(forgetting/runs/cluster.py). Then the points the command runs are composed and checked across
keys, against the data and against the selected plugins' keys and settings (an array index, the
joblib launcher's, a search space: forgetting/runs/points.py, plugin_settings.py): nothing is
created, and an existing sweep folder is left as it is, for bad input.
"""

from __future__ import annotations

import re

from forgetting.core.errors import UserError
from forgetting.runs.cluster import check_launch
from forgetting.runs.configs import CONFIG_DIR
from forgetting.runs.hydra_keys import check_hydra_group, check_hydra_key
from forgetting.runs.overrides import check_override
from forgetting.runs.points import MODES, check_points

GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"


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


def check_modes(argv: list[str]) -> None:
    """UserError when the command names more than one of Hydra's modes (Hydra itself raises a
    traceback)."""
    given = [f for f in (a.split("=", 1)[0] for a in argv) if any(f in m for m in MODES)]
    if len({m for m in MODES for f in given if f in m}) > 1:
        allowed = ", ".join(f"{long} ({short})" for long, short in MODES)
        raise UserError(f"{' '.join(given)}: choose one of {allowed}")


def preflight(argv: list[str]) -> None:
    """Raise UserError (one line) for the first bad command-line override."""
    check_modes(argv)
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    overrides = _parse(args)
    for ov in overrides:
        key = ov.key_or_group
        if key.startswith("hydra/"):
            check_hydra_group(ov)  # hydra/launcher: check_launch, below
        elif key.startswith("hydra.") and not (ov.is_add() or ov.is_force_add()):
            check_hydra_key(ov)  # hydra.launcher.* / hydra.sweeper.*: check_points, below
        check_override(ov)
    check_launch(overrides, CONFIG_DIR)  # hydra/launcher choice, sbatch, writable folders
    check_points(argv)  # each point composed: checks across keys, the data, plugin keys
