"""Which device and precision a run uses, and the device's name for the records."""

from __future__ import annotations

from pathlib import Path

import torch

from forgetting.core.errors import ConfigError
from forgetting.core.source import config_path


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "no CUDA device is visible; choose cpu or auto")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device, model_name: str = "resnet9",
                      width: float = 1.0, cache_dir: str | None = None) -> str:
    """`auto`: bf16 on a GPU that has it; on a CPU, whichever measures faster for this model
    (forgetting/core/precision.py); fp32 where bf16 is not supported."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    from forgetting.core.precision import cpu_has_bf16, measure_cpu_precision

    if not cpu_has_bf16():
        return "fp32"
    folder = config_path(cache_dir) if cache_dir else Path.home() / ".cache" / "forgetting"
    return measure_cpu_precision(model_name, width, folder, device_name(device))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo").read().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
