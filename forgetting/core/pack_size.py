"""`hydra.launcher.pack=auto`: how many runs one fused model (core/fused.py) should hold.

A fused step of K models costs less than K steps where one model leaves the device idle (a GPU
at small widths: kernel launches, not arithmetic, set the pace) and about K steps where one
model already fills it (a CPU's cores). So it is measured: fused steps of K = 2, 4, 8 copies of
the run's model on random images against the plain step of one model (what a pack of one runs:
the single run's own step), and the K with the least time per run-step wins if it beats the
plain step by `GAIN` (else 1: fusion does not pay there). The choice is cached in
`<data.cache_dir>/pack.json`, keyed by device, torch version, threads, model, width, batch size
and precision, so only the first sweep of a kind pays for it (a few seconds on a GPU; on a CPU
the batch is capped at `CPU_BATCH` to keep it short).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from forgetting.core.config import Config
from forgetting.core.device import device_name, resolve_device, resolve_precision, sync
from forgetting.core.files import read_cache, write_cache
from forgetting.core.fused import Pack
from forgetting.core.model import build_model
from forgetting.core.sgd import SGD
from forgetting.core.step import make_autocast, sgd_step

log = logging.getLogger("forgetting")
CANDIDATES = (1, 2, 4, 8)
GAIN = 1.1  # a pack must run >= 10% more run-steps per second than K = 1 to be chosen
CPU_BATCH = 64


def time_pack(model_name: str, width: float, k: int, batch: int, device: torch.device,
              precision: str, steps: int = 3, image: int = 32, classes: int = 10) -> float:
    """Seconds per fused step of `k` models (random images, after one warm-up step); k = 1:
    the plain step of one model, as a run alone takes it."""
    models, optimizers = [], []
    for seed in range(k):
        torch.manual_seed(seed)
        model = build_model(model_name, width, classes).to(device,
                                                           memory_format=torch.channels_last)
        models.append(model)
        optimizers.append(SGD(model.parameters(), lr=0.0, momentum=0.9, nesterov=True,
                              weight_decay=5e-4 * batch))
    autocast = make_autocast(device, precision)
    x = torch.randn(k, batch, 3, image, image, device=device)
    y = torch.randint(0, classes, (k, batch), device=device)
    if k == 1:
        x1 = x[0].contiguous(memory_format=torch.channels_last)

        def step():
            sgd_step(models[0], optimizers[0], x1, y[0], 1e-4, autocast)
    else:
        pack = Pack(models, optimizers, autocast)

        def step():
            pack.step(x, y, [1e-4] * k, [True] * k)
    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def best_pack_size(cfg: Config) -> int:
    """The measured best pack size for runs like `cfg` on its device (cached)."""
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device, cfg.model.name, cfg.model.width,
                                  cfg.data.cache_dir)
    batch = cfg.batch_size if device.type == "cuda" else min(cfg.batch_size, CPU_BATCH)
    image = cfg.data.image_size if cfg.data.name == "synthetic" else 32
    classes = cfg.data.num_classes if cfg.data.name == "synthetic" else 10
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    key = (f"{device_name(device)}|torch {torch.__version__}|{torch.get_num_threads()} threads|"
           f"{cfg.model.name}|{cfg.model.width}|batch {batch}|{precision}|{image}px")
    path = Path(cfg.data.cache_dir).expanduser() / "pack.json"
    known = read_cache(path)
    if key in known:
        return known[key]["pack"]
    log.info("pack=auto: timing fused steps of %s for %s (once; cached in %s)",
             ", ".join(map(str, CANDIDATES)), key, path)
    per_run = {k: time_pack(cfg.model.name, cfg.model.width, k, batch, device, precision,
                            image=image, classes=classes) / k for k in CANDIDATES}
    best = min(per_run, key=per_run.get)
    choice = best if per_run[1] >= GAIN * per_run[best] else 1
    log.info("pack=auto: %d (seconds per run-step: %s)", choice,
             ", ".join(f"K={k}: {s:.4f}" for k, s in per_run.items()))
    known[key] = {"pack": choice, "step_s_per_run": per_run}
    write_cache(path, known)
    return choice
