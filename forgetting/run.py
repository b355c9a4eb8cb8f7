"""The Hydra entry point: compose -> validate -> train -> write -> return the test loss.

    python -m forgetting.run                               # one run, the ResNet-9 recipe
    python -m forgetting.run -m lr=1,2,4,8 subset=0.25,0.5,1.0   # a sweep and its table

Every run writes `metrics.json` and `history.parquet` into its Hydra run folder. Bad input
stops with one line naming the key and the allowed values (exit code 2); in a sweep a failing
point is recorded as `failed` and the other points still run.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from forgetting import provenance
from forgetting.config import register_configs, validate
from forgetting.errors import ConfigError, UserError
from forgetting.files import atomic_write_json, atomic_write_parquet, atomic_write_text
from forgetting.preflight import CONFIG_DIR, preflight

log = logging.getLogger("forgetting")
register_configs()


def run_one(cfg: DictConfig, run_dir: Path, choices: dict) -> float:
    """Validate and train one config, write its files into `run_dir`, return the test loss."""
    import pandas as pd

    from forgetting.train import train

    start = time.perf_counter()
    try:
        conf = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        raise ConfigError(e.full_key, "???", "required; set it on the command line") from None
    validate(conf)
    result = train(conf)
    metrics = {"status": result.status, **result.final, **result.info,
               "wall_s": time.perf_counter() - start,
               **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=True)}
    atomic_write_parquet(run_dir / "history.parquet", pd.DataFrame(result.history))
    atomic_write_json(run_dir / "metrics.json", metrics)
    if result.status == "diverged":
        log.warning("diverged (non-finite loss) at epoch %d; recorded as status=diverged",
                    result.final["epochs_run"])
    return result.final["test_loss"]


def write_failure(run_dir: Path, cfg: DictConfig, choices: dict, error: str) -> None:
    metrics = {"status": "failed", "error": error, **provenance.describe(), "choices": choices,
               "config": OmegaConf.to_container(cfg, resolve=False)}
    atomic_write_json(run_dir / "metrics.json", metrics)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    in_sweep = hc.mode == RunMode.MULTIRUN
    try:
        return run_one(cfg, run_dir, choices)
    except UserError as e:
        write_failure(run_dir, cfg, choices, str(e))
        if not in_sweep:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.error("failed: %s", e)
    except Exception as e:  # a bug or a crash: keep the traceback on disk, the sweep goes on
        atomic_write_text(run_dir / "error.log", traceback.format_exc())
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        write_failure(run_dir, cfg, choices, reason)
        if not in_sweep:
            print(f"error: run failed: {reason} (traceback in {run_dir / 'error.log'})",
                  file=sys.stderr)
            raise SystemExit(1) from None
        log.error("failed: %s (traceback in %s)", reason, run_dir / "error.log")
    return math.nan


def cli() -> None:
    try:
        preflight(sys.argv[1:])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    main()


if __name__ == "__main__":
    cli()
