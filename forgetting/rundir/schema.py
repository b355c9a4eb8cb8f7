"""What a run folder's metrics.json holds, and the check a reader makes of it.

metrics.json is one JSON object (forgetting/runs/job.py writes it): `status`, one of STATUSES;
the final metrics, timings and diagnostics (FINAL, TIMINGS, DIAG_FINAL: numbers, NaN included,
or null; `noise_note` text or null); what ran (`device`, `precision`, ... text; `threads`,
`resumes`, ... numbers); `config`, the composed config, a mapping whose declared keys
(forgetting/core/config.py KEYS) hold values of their declared types; `choices`, Hydra's group
choices, a mapping. A config key at the top level (older or hand-made folders: `lr`, `subset`)
holds its declared type too. Keys not declared here are not checked.

A config value may be null, or an interpolation a failed run recorded unresolved (`${seed}`,
`???`). A metrics.json that fails `wrong_key` is damaged: readers treat it as an unreadable
one (forgetting/rundir/identity.py `read_metrics`, forgetting/tables/rows.py `read_run`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from forgetting.core.config import KEYS
from forgetting.core.metrics import DIAG_FINAL, FINAL, STATUSES, TARGET_FINAL, TIMINGS

NUMBER, TEXT, MAPPING = "a number", "text", "a mapping"
TEXT_KEYS = ("error", "config_hash", "device", "device_name", "precision", "study", "storage",
             "launcher", "noise_note")
NUMBER_KEYS = (*FINAL, *TIMINGS, *(k for k in DIAG_FINAL if k not in TEXT_KEYS), *TARGET_FINAL,
               "threads", "resumes", "steps", "trial", "pack_size")
# metrics.json's declared keys -> what each holds (null allowed, `status` apart)
FIELDS = {**dict.fromkeys(NUMBER_KEYS, NUMBER), **dict.fromkeys(TEXT_KEYS, TEXT),
          "config": MAPPING, "choices": MAPPING}
TOP_LEVEL_CONFIG = {name: k for name, k in KEYS.items() if "." not in name}


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _holds(kind: str, value: object) -> bool:
    if kind == NUMBER:
        return is_number(value)
    if kind == TEXT:
        return isinstance(value, str)
    return isinstance(value, dict)


def _config_value_fits(kind: type | None, value: object) -> bool:
    """Whether a config value fits its declared scalar type (None: not a scalar, unchecked)."""
    if kind is None or value is None:
        return True
    if isinstance(value, str) and ("${" in value or value == "???"):  # recorded unresolved
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return is_number(value) and float(value).is_integer()
    if kind is float:
        return is_number(value) and not (isinstance(value, float) and math.isnan(value))
    return isinstance(value, str)


MISSING = object()  # value_at's answer for a key that is not there, when asked to tell


def value_at(config: object, dotted: str, missing: object = None) -> object:
    """The value at a dotted key of a nested mapping (`model.width`), or `missing` when a
    part of the path is not there (the run-folder readers' one lookup)."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return missing
        node = node[part]
    return node


def _shown(value: object) -> str:
    return json.dumps(value, default=str)[:40]


def wrong_key(metrics: object) -> str | None:
    """The first key of a metrics.json (parsed) whose value has the wrong type, as
    `KEY=VALUE: must be ...`; None when it holds what it should."""
    if not isinstance(metrics, dict):
        return f"not a JSON object ({type(metrics).__name__})"
    if "status" not in metrics:
        return "no status field"
    if metrics["status"] not in STATUSES:
        return f"status={_shown(metrics['status'])}: must be one of {', '.join(STATUSES)}"
    for key, value in metrics.items():
        kind = FIELDS.get(key)
        if kind is not None and value is not None and not _holds(kind, value):
            return f"{key}={_shown(value)}: must be {kind} or null"
        declared = TOP_LEVEL_CONFIG.get(key)
        if declared is not None and not _config_value_fits(declared.scalar, value):
            return f"{key}={_shown(value)}: must be {declared.scalar.__name__}"
    config = metrics.get("config")
    if isinstance(config, dict):
        for name, declared in KEYS.items():
            value = value_at(config, name, MISSING)
            if value is not MISSING and not _config_value_fits(declared.scalar, value):
                return (f"config.{name}={_shown(value)}: must be "
                        f"{declared.scalar.__name__}")
    return None


def read(path: Path) -> dict:
    """A metrics.json that holds what it should. FileNotFoundError when there is none;
    ValueError (why) when it cannot be parsed or has a key of the wrong type; OSError."""
    metrics = json.loads(Path(path).read_text())
    if (why := wrong_key(metrics)) is not None:
        raise ValueError(why)
    return metrics
