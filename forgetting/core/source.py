"""Where a run's images come from, found without loading them.

`locate` names the source a `DataConfig` points at (or raises the one-line error loading
would raise); `class_sizes` counts its training images per class (a tree's image files, the
archive's 5,000 a class, the synthetic set's round robin), so the size of a subset, and whether
a batch fits in it, is known before anything is decoded. forgetting/core/data.py loads from
what `locate` found; forgetting/runs/preflight.py checks the command line with both before
Hydra creates a folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from forgetting.core.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
CIFAR10_HELP = ("put the official archive's cifar-10-batches-py/ there (from "
                "cifar-10-python.tar.gz), or an ImageFolder tree train/<class>/*, "
                "test/<class>/*, or point data.root / FORGETTING_DATA at one")
CIFAR10_PER_CLASS = 5000  # training images per class in the official archive (10 classes)

# what `locate` finds
SYNTHETIC = "synthetic"  # generated: no files
ARCHIVE = "archive"  # the official python archive: its cifar-10-batches-py/ folder
TREE = "tree"  # an ImageFolder tree: train/<class>/*, test/<class>/*
DOWNLOAD = "download"  # nothing there yet: the archive is downloaded into this folder


def config_path(value: str) -> Path:
    """A path from the config; the schema's `${oc.env:...}` defaults are resolved here too,
    for DataConfig objects built in Python rather than composed by Hydra."""
    if "${" in str(value):
        from omegaconf import OmegaConf

        value = OmegaConf.create({"value": value})["value"]
    return Path(os.path.expanduser(str(value)))


def locate(cfg) -> tuple[str, Path | None]:
    """(what, where) a `DataConfig`'s images come from: SYNTHETIC (no folder), ARCHIVE
    (its cifar-10-batches-py folder), TREE (the tree's root) or DOWNLOAD (the folder to
    download into); ConfigError or DataError, one line, when there is nothing to load."""
    if cfg.name == "synthetic":
        return SYNTHETIC, None
    if cfg.name not in ("cifar10", "imagefolder"):
        raise ConfigError("data.name", cfg.name, "choose one of cifar10, imagefolder, synthetic")
    if not str(cfg.root):
        raise ConfigError("data.root", "", f"required for data={cfg.name}: a folder with "
                          "train/<class>/* and test/<class>/*")
    root = config_path(cfg.root).resolve()
    tree = (root / "train").is_dir() and (root / "test").is_dir()
    if cfg.name == "imagefolder":
        if not tree:
            raise DataError(f"data.root={str(root)!r}: needs an ImageFolder tree "
                            "train/<class>/*, test/<class>/*")
        return TREE, root
    if (root / "cifar-10-batches-py").is_dir():
        return ARCHIVE, root / "cifar-10-batches-py"
    if tree:
        return TREE, root
    if cfg.download:
        return DOWNLOAD, root
    raise DataError(f"data.root={str(root)!r}: no CIFAR-10 found; {CIFAR10_HELP}")


def check_download(root: Path, timeout: float = 5.0) -> None:
    """DataError (one line) when the archive would be downloaded into `root` but its host
    (torchvision's CIFAR-10 URL, or the https proxy when one is set) cannot be reached: said
    once before a sweep starts, rather than by every run failing on its download."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    import torchvision.datasets

    url = urlsplit(torchvision.datasets.CIFAR10.url)
    proxy = urllib.request.getproxies().get(url.scheme)
    host = urlsplit(proxy) if proxy else url
    port = host.port or (443 if host.scheme == "https" else 80)
    try:
        socket.create_connection((host.hostname, port), timeout=timeout).close()
    except OSError as e:
        there = "no CIFAR-10 in it" if root.exists() else "no such folder"
        reason = e.strerror or type(e).__name__
        raise DataError(f"data.root={str(root)!r}: {there}, and the download (data.download="
                        f"true) cannot reach {host.hostname}:{port} ({reason}); "
                        f"{CIFAR10_HELP}") from None


def class_sizes(cfg) -> list[int]:
    """Training images per class of the data a `DataConfig` names (classes without images
    left out, as a loaded dataset has none of them)."""
    what, where = locate(cfg)
    if what == SYNTHETIC:  # labels arange(n) % classes
        n, c = cfg.train_size, cfg.num_classes
        sizes = [n // c + (k < n % c) for k in range(c)]
    elif what in (ARCHIVE, DOWNLOAD):
        sizes = [CIFAR10_PER_CLASS] * 10
    else:
        train = where / "train"
        sizes = [sum(1 for entry in os.scandir(folder)
                     if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES)
                 for folder in sorted(p for p in train.iterdir() if p.is_dir())]
    return [n for n in sizes if n > 0]


def subset_size(sizes: list[int], fraction: float) -> int:
    """Examples in the class-balanced subset holding `fraction` of each class (as
    forgetting/core/data.py's `subset_indices` takes it: at least one a class)."""
    return sum(max(1, round(fraction * n)) for n in sizes)


def check_fits(cfg, n: int, total: int) -> None:
    """ConfigError (one line) when a batch, or the sharpness sample, does not fit in the
    training subset of `n` of the `total` training images (checked where the subset is taken,
    forgetting/core/setup.py, and before a run starts, forgetting/runs/points.py)."""
    if cfg.batch_size > n:
        raise ConfigError("batch_size", cfg.batch_size,
                          f"must be <= the subset size {n} (subset={cfg.subset} of "
                          f"{total} training images)")
    if cfg.diag.sharpness and cfg.diag.sharpness_examples > n:
        raise ConfigError("diag.sharpness_examples", cfg.diag.sharpness_examples,
                          f"must be <= the subset size {n}")
