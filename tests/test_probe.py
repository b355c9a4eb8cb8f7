"""The forgetting probe: recent training batches rebuilt exactly as fed, and their losses."""

import re

import pandas as pd
import pytest
import torch

from forgetting.core.augment import BatchMaker, get_batch
from forgetting.core.data import load_dataset
from forgetting.core.errors import ConfigError
from forgetting.core.probe import BatchLog, batch_checksum, replay
from forgetting.core.step import make_autocast
from forgetting.core.train import train
from forgetting.runs.preflight import preflight
from helpers import TINY, run_cli


@pytest.mark.parametrize("aug", [["cutout=6"], ["augment=false"]],
                         ids=["crop-flip-cutout", "plain"])
def test_rebuilt_batches_are_bit_identical_to_the_fed_ones(make_cfg, aug):
    # 640 images / batch 64: 10 steps per epoch, 3 epochs, the last 2 probed
    cfg = make_cfg("epochs=3", "probe.epochs=2", "probe.verify=true", "threads=1", *aug)
    result = train(cfg)
    rec = pd.DataFrame(result.recency)
    assert len(rec) == 20
    assert (rec["checksum"] == rec["checksum_seen"]).all()
    assert rec["checksum"].nunique() == 20  # real, distinct batches
    assert rec["epoch"].tolist() == [2] * 10 + [3] * 10
    assert rec["steps_ago"].tolist() == list(range(19, -1, -1))
    assert rec["epochs_ago"].tolist() == pytest.approx([s / 10 for s in range(19, -1, -1)])
    assert (rec["probe_epoch"] == 3).all()
    assert rec["test_loss"].unique().tolist() == [result.final["test_loss"]]
    assert rec["loss"].between(0, 20).all() and rec["accuracy"].between(0, 1).all()
    # the loss when fed (train mode, before the step) is the training loss of its epoch
    history = pd.DataFrame(result.history)
    for epoch, group in rec.groupby("epoch"):
        expected = history.loc[history["epoch"] == epoch, "train_loss"].item()
        assert group["loss_seen"].mean() == pytest.approx(expected, rel=1e-5)


def test_a_wrong_generator_state_is_caught_by_the_checksums(make_cfg):
    """The comparison can fail: batches fed from epoch 2's draws, logged with epoch 1's state."""
    cfg = make_cfg("cutout=6")
    data = load_dataset(cfg.data)
    maker = BatchMaker(data.train_x, cfg.data.mean, cfg.data.std, torch.device("cpu"),
                       torch.float32, cutout=6)
    gen = torch.Generator().manual_seed(0)
    wrong = gen.get_state()
    maker.draw_epoch(gen)  # epoch 1
    log = BatchLog(1, verify=True)
    log.start_epoch(2, 10, wrong)
    order, params = maker.draw_epoch(gen)  # epoch 2, as fed
    for i in range(10):
        log.record(torch.zeros(()), *get_batch(maker, data.train_y, order, params, i, 64))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    rows = replay(model, maker, data.train_y, log, 64, 20,
                  make_autocast(torch.device("cpu"), "fp32"), {})
    assert len(rows) == 10
    assert not any(r["checksum"] == r["checksum_seen"] for r in rows)
    log.epochs[0]["rng"] = gen.get_state()  # any other state: still no match
    assert not any(r["checksum"] == r["checksum_seen"] for r in replay(
        model, maker, data.train_y, log, 64, 20, make_autocast(torch.device("cpu"), "fp32"), {}))


def test_the_probe_does_not_change_training(make_cfg):
    base = ["epochs=3", "threads=1", "cutout=4"]
    off = train(make_cfg(*base, "probe.epochs=0"))
    on = train(make_cfg(*base, "probe.epochs=3", "probe.every=1"))
    assert off.recency == []
    assert pd.DataFrame(on.history)[["train_loss", "test_loss"]].equals(
        pd.DataFrame(off.history)[["train_loss", "test_loss"]])
    rec = pd.DataFrame(on.recency)
    # after epoch 1: 1 epoch logged; after 2: 2; at the end (3): 3
    assert rec.groupby("probe_epoch").size().to_dict() == {1: 10, 2: 20, 3: 30}
    assert "checksum" not in rec  # only with probe.verify


def test_checksum_covers_pixels_and_labels():
    x = torch.zeros(2, 3, 4, 4)
    y = torch.tensor([0, 1])
    assert batch_checksum(x, y) == batch_checksum(x.clone(), y.clone())
    x2 = x.clone()
    x2[1, 2, 3, 3] = 1e-7
    assert batch_checksum(x2, y) != batch_checksum(x, y)
    assert batch_checksum(x, torch.tensor([1, 0])) != batch_checksum(x, y)


def test_cli_writes_recency_and_the_sweep_gathers_it(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("-m", *TINY, "lr=0.5,2", "probe.epochs=1", f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr[-2000:]
    runs = sorted(sweep.glob("*/recency.parquet"))
    assert len(runs) == 2
    assert len(pd.read_parquet(runs[0])) == 10
    table = pd.read_parquet(sweep / "recency.parquet")
    assert len(table) == 20 and sorted(table["lr"].unique()) == [0.5, 2.0]
    r = run_cli(*TINY, "probe.epochs=0", f"hydra.run.dir={tmp_path / 'off'}")
    assert r.returncode == 0 and not (tmp_path / "off" / "recency.parquet").exists()


@pytest.mark.parametrize("override,message", [
    ("probe.epochs=-1", "probe.epochs=-1: must be an integer >= 0 (0 = off)"),
    ("probe.every=-2", "probe.every=-2: must be an integer >= 0"),
    ("eval_every=-1", "eval_every=-1: must be an integer >= 0"),
])
def test_bad_probe_settings_are_refused_before_a_run(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        preflight([*TINY, override])
