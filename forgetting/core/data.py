"""Datasets as uint8 tensors: load once, cache, take nested class-balanced subsets.

Three sources, all ending as the same `Dataset` (images uint8 N x C x H x W, labels int64):
- `cifar10`: the official python archive (`cifar-10-batches-py/`) or an ImageFolder tree
  `train/<class>/*`, `test/<class>/*` under `data.root`; the archive is downloaded through
  torchvision when neither is there and `data.download` is on.
- `imagefolder`: any such tree.
- `synthetic`: a generated, learnable class-conditional image set (for tests and smoke runs).
Decoded images are cached under `data.cache_dir`, keyed by the source, so later runs load in
well under a second. Batched augmentation lives in `augment.py`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forgetting.core.errors import DataError
from forgetting.core.files import atomic_torch_save
from forgetting.core.source import (
    CIFAR10_HELP,
    DOWNLOAD,
    IMAGE_SUFFIXES,
    SYNTHETIC,
    TREE,
    config_path,
    locate,
)

CACHE_FORMAT = "v1"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@dataclass
class Dataset:
    train_x: torch.Tensor  # uint8, N x C x H x W
    train_y: torch.Tensor  # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str  # where it came from, for provenance

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_dataset(cfg) -> Dataset:
    """Load the dataset a `DataConfig` names (see the module docstring)."""
    what, where = locate(cfg)
    if what == SYNTHETIC:
        return synthetic(cfg.num_classes, cfg.train_size, cfg.test_size, cfg.image_size,
                         cfg.noise, cfg.data_seed)
    cache_dir = config_path(cfg.cache_dir)
    if what == TREE:
        return _enough_classes(_cached(where, cache_dir, _imagefolder_key, _load_imagefolder),
                               where)
    if what == DOWNLOAD:
        _download_cifar10(where)
        where = where / "cifar-10-batches-py"
    return _cached(where, cache_dir, _cifar_archive_key, _load_cifar_archive)


def _enough_classes(ds: Dataset, root: Path) -> Dataset:
    """A tree of one class trains to loss 0 and says nothing: refused."""
    if ds.num_classes < 2:
        raise DataError(f"data.root={str(root)!r}: train/ has {ds.num_classes} class folder "
                        f"({', '.join(ds.classes)}); a classifier needs at least 2")
    return ds


# ---------------------------------------------------------------------------- subsets

def subset_indices(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a class-balanced subset holding `fraction` of each class.

    Each class is shuffled once with `seed` and its first round(fraction * n_class) examples
    are taken, so for one seed a smaller subset lies inside every larger one (nested).
    """
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        order = members[torch.randperm(len(members), generator=gen)]
        picked.append(order[: max(1, round(fraction * len(members)))])
    return torch.sort(torch.cat(picked)).values


# ---------------------------------------------------------------------------- synthetic

def synthetic(num_classes: int, train_size: int, test_size: int, image_size: int,
              noise: float, seed: int) -> Dataset:
    """Class-conditional images: a smooth random colour pattern per class plus pixel noise.

    Classes are separable by their pattern but the noise keeps a small net from being perfect
    at once, so the loss falls over several epochs.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=gen)
    patterns = torch.nn.functional.interpolate(coarse, size=(image_size, image_size),
                                               mode="bilinear", align_corners=False)
    patterns = 64 + 128 * patterns  # 64..192 on the 0-255 scale

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=gen)]
        x = patterns[y] + noise * torch.randn(n, 3, image_size, image_size, generator=gen)
        return x.round().clamp(0, 255).to(torch.uint8), y

    train_x, train_y = draw(train_size)
    test_x, test_y = draw(test_size)
    classes = [f"class{c}" for c in range(num_classes)]
    return Dataset(train_x, train_y, test_x, test_y, classes,
                   f"synthetic(seed={seed}, n={train_size}+{test_size})")


# ---------------------------------------------------------------------------- cache

def _cached(source: Path, cache_dir: Path, key_fn, load_fn) -> Dataset:
    key = hashlib.sha256(f"{CACHE_FORMAT}|{source}|{key_fn(source)}".encode()).hexdigest()[:16]
    path = cache_dir / f"{source.name}-{key}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, mmap=True, weights_only=True)
            return Dataset(blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"],
                           list(blob["classes"]), str(source))
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    ds = load_fn(source)
    try:
        atomic_torch_save({"train_x": ds.train_x, "train_y": ds.train_y, "test_x": ds.test_x,
                           "test_y": ds.test_y, "classes": ds.classes}, path)
    except OSError:
        pass  # an unwritable cache folder only costs speed
    return ds


def _imagefolder_key(root: Path) -> str:
    """Cheap fingerprint: every class folder's name, size of listing and mtime."""
    parts = []
    for split in ("train", "test"):
        for d in sorted((root / split).iterdir()):
            if d.is_dir():
                st = d.stat()
                parts.append(f"{split}/{d.name}:{st.st_mtime_ns}:{st.st_nlink}:{len(os.listdir(d))}")
    return "|".join(parts)


def _cifar_archive_key(folder: Path) -> str:
    return "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                    for p in sorted(folder.iterdir()) if p.is_file())


# ---------------------------------------------------------------------------- CIFAR-10 archive

def _download_cifar10(root: Path) -> None:
    """Download the archive into `root`; when that fails, the folders it created are removed
    again (a failed data check creates nothing)."""
    import shutil

    import torchvision

    created = None  # the outermost folder the download creates
    for folder in (root, *root.parents):
        if folder.exists():
            break
        created = folder
    try:
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # offline, unwritable root, bad checksum
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"data.root={str(root)!r}: no CIFAR-10 found and the download failed "
                        f"({reason}); {CIFAR10_HELP}") from None


def _load_cifar_archive(folder: Path) -> Dataset:
    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for name in names:
            try:
                with open(folder / name, "rb") as f:
                    batch = pickle.load(f, encoding="latin1")
                xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.extend(batch["labels"])
            except Exception as e:
                raise DataError(f"data.root: corrupt CIFAR-10 archive file {folder / name} "
                                f"({type(e).__name__}); re-extract cifar-10-python.tar.gz"
                                ) from None
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)

    train_x, train_y = read([f"data_batch_{i}" for i in range(1, 6)])
    test_x, test_y = read(["test_batch"])
    return Dataset(train_x, train_y, test_x, test_y, list(CIFAR10_CLASSES), str(folder))


# ---------------------------------------------------------------------------- ImageFolder

def _load_imagefolder(root: Path) -> Dataset:
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"data.root={str(root)!r}: train/ has no class folders")
    test_classes = sorted(d.name for d in (root / "test").iterdir() if d.is_dir())
    if test_classes != classes:
        raise DataError(f"data.root={str(root)!r}: test/ classes {test_classes} differ from "
                        f"train/ classes {classes}")
    train_x, train_y = _decode_split(root / "train", classes)
    test_x, test_y = _decode_split(root / "test", classes)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"data.root={str(root)!r}: train images are "
                        f"{tuple(train_x.shape[2:])}, test images {tuple(test_x.shape[2:])}")
    return Dataset(train_x, train_y, test_x, test_y, classes, str(root))


def _decode_split(split: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    files, labels = [], []
    for label, name in enumerate(classes):
        for p in sorted((split / name).iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                files.append(p)
                labels.append(label)
    if not files:
        raise DataError(f"data.root: no images under {split}")
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(_decode_image, files, chunksize=256))
    shape = images[0].shape
    for p, im in zip(files, images):
        if im.shape != shape:
            raise DataError(f"data.root: image {p} is {im.shape[1]}x{im.shape[0]}, expected "
                            f"{shape[1]}x{shape[0]} like {files[0].name}; resize the tree first")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64)


def _decode_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:
        raise DataError(f"data.root: unreadable image {path} ({type(e).__name__})") from None
