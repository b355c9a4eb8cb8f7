"""`precision: auto`: bf16 where it measures faster, fp32 where not.

On a GPU with bf16 support, bf16. On a CPU without bf16 units (AMX or AVX512-BF16), fp32.
Otherwise a few training steps of the run's own model are timed in both precisions (batch of
at most 64 random images) and the faster one wins; the choice is cached in
`<data.cache_dir>/precision.json`, keyed by CPU, torch version, threads, model and width, so
only the first run of a kind pays for the measurement (a few seconds).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from forgetting.core.files import read_cache, write_cache

PROBE_BATCH = 64


def cpu_has_bf16() -> bool:
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    avx = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    return bool(amx() or avx())


def time_steps(model: torch.nn.Module, precision: str, batch: int, steps: int = 2) -> float:
    """Seconds per forward+backward step of `model` on random 32x32 images (after a warm-up)."""
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    timings = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        model.zero_grad(set_to_none=True)
        timings.append(time.perf_counter() - start)
    return min(timings[1:])


def measure_cpu_precision(model_name: str, width: float, cache_dir: Path, cpu: str) -> str:
    from forgetting.core.model import build_model

    key = f"{cpu}|torch {torch.__version__}|{torch.get_num_threads()} threads|{model_name}|{width}"
    path = Path(cache_dir) / "precision.json"
    known = read_cache(path)
    if key in known:
        return known[key]["precision"]
    torch.manual_seed(0)
    model = build_model(model_name, width).train()
    seconds = {p: time_steps(model, p, PROBE_BATCH) for p in ("fp32", "bf16")}
    choice = min(seconds, key=seconds.get)
    known[key] = {"precision": choice, "step_s": seconds}
    write_cache(path, known)
    return choice
