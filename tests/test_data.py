import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgetting.core.config import DataConfig
from forgetting.core.data import load_dataset, subset_indices, synthetic
from forgetting.core.errors import DataError
from helpers import CIFAR_JPG


def labels_10x100():
    return torch.arange(1000) % 10


@pytest.mark.parametrize("fraction, size", [(0.25, 250), (0.5, 500), (1.0, 1000), (0.013, 10)])
def test_subset_size_and_class_balance(fraction, size):
    labels = labels_10x100()
    idx = subset_indices(labels, fraction, seed=0)
    assert len(idx) == size
    assert len(torch.unique(idx)) == size
    counts = torch.bincount(labels[idx], minlength=10)
    assert (counts == size // 10).all()


def test_subsets_are_nested_for_one_seed():
    labels = labels_10x100()
    small, mid, big = (set(subset_indices(labels, f, seed=3).tolist()) for f in (0.25, 0.5, 1.0))
    assert small < mid < big


def test_subset_seed_changes_the_choice_and_is_reproducible():
    labels = labels_10x100()
    a = subset_indices(labels, 0.5, seed=1)
    assert torch.equal(a, subset_indices(labels, 0.5, seed=1))
    assert not torch.equal(a, subset_indices(labels, 0.5, seed=2))


def test_synthetic_is_sized_and_deterministic():
    a = synthetic(4, 100, 40, 16, 30.0, seed=7)
    b = synthetic(4, 100, 40, 16, 30.0, seed=7)
    assert a.train_x.shape == (100, 3, 16, 16) and a.train_x.dtype == torch.uint8
    assert a.test_x.shape == (40, 3, 16, 16)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    assert torch.bincount(a.train_y).tolist() == [25] * 4


def _write_tree(root: Path, classes=("cat", "dog"), per_class=3, size=(8, 8), fmt="png"):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.{fmt}")


def _cfg(name, root, cache):
    return DataConfig(name=name, root=str(root), cache_dir=str(cache), download=False)


def test_imagefolder_loads_exact_pixels_and_caches(tmp_path):
    _write_tree(tmp_path / "tree")
    ds = load_dataset(_cfg("imagefolder", tmp_path / "tree", tmp_path / "cache"))
    assert ds.classes == ["cat", "dog"]
    assert ds.train_x.shape == (6, 3, 8, 8) and ds.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    first = np.array(Image.open(tmp_path / "tree/train/cat/0.png"))
    assert torch.equal(ds.train_x[0], torch.from_numpy(first).permute(2, 0, 1))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    again = load_dataset(_cfg("imagefolder", tmp_path / "tree", tmp_path / "cache"))
    assert torch.equal(again.train_x, ds.train_x)


def test_cache_is_keyed_by_source(tmp_path):
    _write_tree(tmp_path / "tree")
    load_dataset(_cfg("imagefolder", tmp_path / "tree", tmp_path / "cache"))
    _write_tree(tmp_path / "tree2", per_class=2)
    ds2 = load_dataset(_cfg("imagefolder", tmp_path / "tree2", tmp_path / "cache"))
    assert len(ds2.train_y) == 4
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_cifar10_detects_an_imagefolder_tree(tmp_path):
    _write_tree(tmp_path / "tree", classes=("airplane", "automobile"), size=(32, 32), fmt="jpg")
    ds = load_dataset(_cfg("cifar10", tmp_path / "tree", tmp_path / "cache"))
    assert ds.train_x.shape == (6, 3, 32, 32)


def test_cifar10_reads_the_python_archive(tmp_path):
    folder = tmp_path / "root" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [0, 1, 2, 3]}, f)
    ds = load_dataset(_cfg("cifar10", tmp_path / "root", tmp_path / "cache"))
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.train_y.tolist()[:4] == [0, 1, 2, 3]


def test_missing_cifar10_root_names_where_to_put_it(tmp_path):
    with pytest.raises(DataError, match="data.root=.*cifar-10-batches-py"):
        load_dataset(_cfg("cifar10", tmp_path / "nothing", tmp_path / "cache"))


def test_corrupt_archive_is_one_clear_error(tmp_path):
    folder = tmp_path / "root" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="corrupt CIFAR-10 archive file"):
        load_dataset(_cfg("cifar10", tmp_path / "root", tmp_path / "cache"))


def test_unreadable_image_is_named(tmp_path):
    _write_tree(tmp_path / "tree")
    bad = tmp_path / "tree" / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="unreadable image .*broken.png"):
        load_dataset(_cfg("imagefolder", tmp_path / "tree", tmp_path / "cache"))


def test_mixed_image_sizes_are_named(tmp_path):
    _write_tree(tmp_path / "tree")
    Image.new("RGB", (9, 8)).save(tmp_path / "tree" / "train" / "dog" / "odd.png")
    with pytest.raises(DataError, match="odd.png is 9x8"):
        load_dataset(_cfg("imagefolder", tmp_path / "tree", tmp_path / "cache"))


@pytest.mark.slow
@pytest.mark.xdist_group("cifar10")  # one worker decodes the copy once (tests/test_real_data.py)
@pytest.mark.skipif(not CIFAR_JPG.is_dir(), reason="offline CIFAR-10 copy absent")
def test_offline_cifar10_copy_is_balanced():
    ds = load_dataset(_cfg("cifar10", CIFAR_JPG, os.environ["FORGETTING_CACHE"]))
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert ds.classes[:3] == ["airplane", "automobile", "bird"]


def test_a_tree_of_one_class_is_refused(tmp_path):
    _write_tree(tmp_path / "tree", classes=("cat",))
    for name in ("imagefolder", "cifar10"):
        with pytest.raises(DataError, match="train/ has 1 class folder \\(cat\\); a classifier "
                                            "needs at least 2"):
            load_dataset(_cfg(name, tmp_path / "tree", tmp_path / "cache"))


def test_a_failed_download_creates_nothing(tmp_path, monkeypatch):
    import torchvision

    def offline(root, train, download):  # what torchvision does offline: folder, then fail
        Path(root).mkdir(parents=True)
        (Path(root) / "cifar-10-python.tar.gz").write_bytes(b"partial")
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    cfg = DataConfig(name="cifar10", root=str(tmp_path / "nonexistent" / "cifar"),
                     cache_dir=str(tmp_path / "cache"), download=True)
    with pytest.raises(DataError, match="no CIFAR-10 found and the download failed"):
        load_dataset(cfg)
    assert not (tmp_path / "nonexistent").exists()
    (tmp_path / "kept").mkdir()  # a folder that was there stays
    cfg.root = str(tmp_path / "kept")
    with pytest.raises(DataError):
        load_dataset(cfg)
    assert (tmp_path / "kept").is_dir()


@pytest.mark.parametrize("overrides, message", [
    (["cutout=33", "data=cifar10"], "cutout=33: must be <= the image side 32 (data=cifar10)"),
    (["cutout=17", "data.image_size=16"],
     "cutout=17: must be <= the image side 16 (data=synthetic)"),
])
def test_a_cutout_larger_than_the_image_is_refused(make_cfg, overrides, message):
    from forgetting.core.config import validate
    from forgetting.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", "\\(").replace(")", "\\)")):
        validate(make_cfg(*overrides))
    validate(make_cfg("cutout=16", "data.image_size=16"))
