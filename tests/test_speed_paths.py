"""Correctness of each speed path: bf16 vs fp32, compiled vs eager, our augmentation vs the
DataLoader baseline's, and how `precision: auto` decides."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from forgetting.bench import baseline
from forgetting.core import precision
from forgetting.core.augment import BatchMaker
from forgetting.core.device import resolve_precision
from forgetting.core.train import train

MEAN, STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]


def test_bf16_and_fp32_runs_agree(make_cfg):
    fp32 = train(make_cfg("precision=fp32", "epochs=3", "lr=8"))
    bf16 = train(make_cfg("precision=bf16", "epochs=3", "lr=8"))
    assert bf16.info["precision"] == "bf16"
    for key in ("train_loss", "test_loss", "clean_train_loss"):
        assert bf16.final[key] == pytest.approx(fp32.final[key], rel=0.05), key
    assert fp32.final["test_loss"] < 0.8 * fp32.history[0]["train_loss"]  # it did learn


@pytest.mark.slow
def test_compiled_and_eager_runs_agree(make_cfg):
    eager = train(make_cfg("epochs=2", "lr=8"))
    compiled = train(make_cfg("epochs=2", "lr=8", "compile=true"))
    assert compiled.info["compile_s"] > 0 and eager.info["compile_s"] == 0
    for a, b in zip(eager.history, compiled.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-2)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-2)


def coordinate_images(n: int) -> torch.Tensor:
    """Images whose pixels encode their own row (green) and column (red)."""
    ramp = torch.arange(32, dtype=torch.uint8) * 7
    img = torch.stack([ramp.view(1, 32).expand(32, 32), ramp.view(32, 1).expand(32, 32),
                       torch.zeros(32, 32, dtype=torch.uint8)])
    return img.expand(n, 3, 32, 32).contiguous()


def offsets_and_flips(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recover (dy, dx) and flips from the centre pixels of augmented coordinate images
    (N x 3 x 32 x 32 on the 0-255 scale); pixel (16, 16) never comes from the padding."""
    row = batch[:, 1, 16, 16] / 7 - 12
    here, right = batch[:, 0, 16, 16] / 7, batch[:, 0, 16, 17] / 7
    flip = right < here
    col = np.where(flip, here - 11, here - 12)
    return (row * 9 + col).round().astype(int), flip


def check_uniform(positions: np.ndarray, flips: np.ndarray) -> None:
    counts = np.bincount(positions, minlength=81)
    assert len(counts) == 81 and counts.min() > 0
    expected = len(positions) / 81
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)
    assert abs(flips.mean() - 0.5) < 0.03


def test_our_augmentation_and_the_baselines_have_the_same_statistics():
    n = 4000
    images = coordinate_images(n)
    maker = BatchMaker(images, MEAN, STD, torch.device("cpu"), torch.float32)
    ours = maker.raw(torch.arange(n), maker.sample(n, torch.Generator().manual_seed(0)))
    check_uniform(*offsets_and_flips(ours.float().numpy()))

    torch.manual_seed(0)
    transform = baseline.transforms(MEAN, STD)  # std 1/255 after ToTensor: back to 0-255
    pil = Image.fromarray(images[0].permute(1, 2, 0).numpy())
    theirs = torch.stack([transform(pil) for _ in range(n)]).numpy()
    check_uniform(*offsets_and_flips(theirs))


def test_auto_precision_is_fp32_without_bf16_units(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu"), "tiny", 1.0, str(tmp_path)) == "fp32"
    assert not (tmp_path / "precision.json").exists()


@pytest.mark.parametrize("faster", ["fp32", "bf16"])
def test_auto_precision_picks_what_measures_faster_and_caches_it(monkeypatch, tmp_path, faster):
    calls = []

    def fake_time(model, prec, batch, steps=2):
        calls.append(prec)
        return 1.0 if prec == faster else 2.0

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "time_steps", fake_time)
    assert resolve_precision("auto", torch.device("cpu"), "tiny", 0.5, str(tmp_path)) == faster
    assert sorted(calls) == ["bf16", "fp32"]
    assert resolve_precision("auto", torch.device("cpu"), "tiny", 0.5, str(tmp_path)) == faster
    assert len(calls) == 2  # the second run read the cache
    (entry,) = json.loads((tmp_path / "precision.json").read_text()).values()
    assert entry["precision"] == faster
