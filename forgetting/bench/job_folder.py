"""What choosing a sweep job's run folder costs, per job, as the sweep folder grows.

    python -m forgetting.bench --job-folder [--sizes 100 1000 10000] [--jobs 50]

For each size N it fills a temporary sweep folder with N finished runs (a metrics.json with a
config hash each), then times the resolver `forgetting.job_folder` (forgetting/runs/resume.py)
on the project's composed config: once to index the folder (a sweep folder written before the
index existed; also what every job paid before the index), then per job for new points. A
measurement, not a test: nothing asserts a time. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from forgetting.runs.cli import ArgumentParser
from forgetting.runs.configs import CONFIG_DIR, register_configs
from forgetting.runs.resume import job_folder


def composed(sweep_dir: Path, seed: int):
    """The project's default config, as a job's resolver sees it."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"seed={seed}", "data=synthetic"])
    with open_dict(cfg):
        cfg.hydra = OmegaConf.create({"sweep": {"dir": str(sweep_dir)}})
    return cfg


def measure(size: int, jobs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp)
        for n in range(size):
            (sweep / str(n)).mkdir()
            (sweep / str(n) / "metrics.json").write_text(
                json.dumps({"status": "ok", "config_hash": f"{n:016x}"}))
        configs = [composed(sweep, seed) for seed in range(jobs + 1)]
        start = time.perf_counter()
        job_folder(size, _root_=configs[0])  # indexes the folder once
        index_s = time.perf_counter() - start
        per_job = []
        for i, cfg in enumerate(configs[1:], start=1):
            start = time.perf_counter()
            job_folder(size + i, _root_=cfg)
            per_job.append(time.perf_counter() - start)
    return {"folders": size, "index_once_ms": 1e3 * index_s,
            "per_job_ms": 1e3 * statistics.median(per_job)}


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m forgetting.bench --job-folder",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args(argv)
    register_configs(with_presets=False)
    print(f"{'folders':>8} {'per job (ms)':>13} {'index once (ms)':>16}")
    for size in args.sizes:
        r = measure(size, args.jobs)
        print(f"{r['folders']:>8} {r['per_job_ms']:>13.2f} {r['index_once_ms']:>16.1f}")

