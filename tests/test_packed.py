"""A pack of runs trained as one fused model computes the runs it stands for (core/packed.py)."""

import math

import pytest
import torch

from forgetting.core.augment import get_batch
from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.data import load_dataset
from forgetting.core.errors import ConfigError
from forgetting.core.fused import Pack
from forgetting.core.metrics import DIVERGED, OK
from forgetting.core.packed import train_pack
from forgetting.core.setup import prepare, step_lr
from forgetting.core.step import sgd_step
from forgetting.core.train import train

# three points that differ in lr, seed and subset (equal steps: budget=steps)
POINTS = [("lr=1", "seed=0", "subset=1.0"), ("lr=2", "seed=1", "subset=0.5"),
          ("lr=4", "seed=2", "subset=0.25")]
BASE = ("budget=steps", "epochs=1", "probe.epochs=1")


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def test_the_first_20_steps_of_a_pack_are_the_separate_runs_steps(make_cfg):
    cfgs = [make_cfg(*p, *BASE) for p in POINTS]
    data = load_dataset(cfgs[0].data)
    alone = [prepare(c, data, None) for c in cfgs]
    members = [prepare(c, data, None, fused=True) for c in cfgs]
    pack = Pack([r.model for r in members], [r.optimizer for r in members], members[0].autocast)
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    epochs = [r.maker.draw_epoch(g) for r, g in zip(alone, gens)]
    worst = 0.0
    for step in range(20):
        batches, lrs, losses = [], [], []
        for c, r, (order, params) in zip(cfgs, alone, epochs):
            i = step % r.steps_per_epoch
            x, y = get_batch(r.maker, r.train_y, order, params, i, c.batch_size)
            lr = step_lr(c, step / r.steps_per_epoch, r.passes)
            loss, _, _ = sgd_step(r.model, r.optimizer, x, y, lr, r.autocast)
            batches.append((x, y))
            lrs.append(lr)
            losses.append(loss.item())
        packed, _, _ = pack.step(torch.stack([b[0] for b in batches]),
                                 torch.stack([b[1] for b in batches]), lrs, [True] * 3)
        for a, b in zip(packed.tolist(), losses):
            worst = max(worst, relative(a, b))
    assert worst < 1e-5, worst
    # the weights, written back into a plain model: close, not equal (the fused kernels add in
    # another order; a 1-ulp difference can move a max-pool's choice and grow from there)
    for i, r in enumerate(alone):
        pack.unpack(i, members[i].model, members[i].optimizer)
        for (name, a), b in zip(r.model.state_dict().items(), members[i].model.state_dict()
                                .values()):
            a, b = a.double(), b.double()
            assert (a - b).norm() <= 1e-2 * b.norm() + 1e-12, (i, name)


def test_a_pack_ends_with_the_separate_runs_metrics(make_cfg):
    cfgs = [make_cfg(*p, *BASE) for p in POINTS]
    packed = train_pack(cfgs)
    for cfg, result in zip(cfgs, packed):
        single = train(cfg)
        assert result.status == single.status == OK
        assert len(result.history) == len(single.history)
        for key in ("train_loss", "test_loss", "test_acc", "clean_train_loss"):
            assert relative(result.final[key], single.final[key]) < 1e-4, key
        assert len(result.recency) == len(single.recency)
        for a, b in zip(result.recency, single.recency):
            assert relative(a["loss"], b["loss"]) < 1e-4
        assert result.info["steps"] == single.info["steps"]
        assert result.info["pack_size"] == 3


def test_a_diverging_member_changes_no_bit_of_the_others(make_cfg):
    """Member 1 diverges (lr=1e9); the same pack with member 1 at lr=2 gives members 0 and 2
    bit for bit the same results."""
    healthy = train_pack([make_cfg(*p, *BASE) for p in POINTS])
    points = [POINTS[0], ("lr=1e9", "seed=1", "subset=0.5"), POINTS[2]]
    broken = train_pack([make_cfg(*p, *BASE) for p in points])
    assert broken[1].status == DIVERGED and not math.isfinite(broken[1].final["train_loss"])
    for i in (0, 2):
        assert broken[i].status == OK
        assert broken[i].final == healthy[i].final or _equal_but_clocks(broken[i], healthy[i])


def _equal_but_clocks(a, b) -> bool:
    def strip(row):
        return {k: v for k, v in row.items() if not k.endswith("_s")}
    return strip(a.final) == strip(b.final) and \
        [strip(r) for r in a.history] == [strip(r) for r in b.history] and \
        [strip(r) for r in a.recency] == [strip(r) for r in b.recency]


@pytest.mark.slow
def test_a_preempted_pack_resumes_to_the_uninterrupted_pack(make_cfg, tmp_path):
    cfgs = [make_cfg(*p, *BASE, "epochs=2") for p in POINTS]
    whole = train_pack(cfgs)
    calls = {"n": 0}

    def stop_at_step_7():
        calls["n"] += 1
        return calls["n"] == 8

    ckpts = [Checkpoint(tmp_path / f"{i}.pt", "h", stop=stop_at_step_7) for i in range(3)]
    with pytest.raises(Preempted):
        train_pack(cfgs, checkpoints=ckpts)
    assert all(c.path.is_file() for c in ckpts)
    resumed = train_pack(cfgs, checkpoints=[Checkpoint(c.path, "h") for c in ckpts])
    for a, b in zip(resumed, whole):
        assert _equal_but_clocks(a, b)
        assert a.info["resumes"] == 1


def test_configs_that_cannot_share_a_step_are_refused_with_the_key(make_cfg):
    with pytest.raises(ConfigError, match="batch_size"):
        train_pack([make_cfg("batch_size=64"), make_cfg("batch_size=32")])
    with pytest.raises(ConfigError, match="model.width"):
        train_pack([make_cfg("model.width=1"), make_cfg("model.width=0.5")])


@pytest.mark.slow
def test_a_packs_diagnostics_are_the_separate_runs(make_cfg):
    """Sharpness, the gradient noise scale (|G_B|^2 from the fused gradient) and forgetting
    events of packed members against the same runs alone."""
    diag = ("diag.sharpness=true", "diag.sharpness_examples=64", "diag.iters=8",
            "diag.noise=true", "diag.noise_every=1", "diag.forgetting_events=true")
    cfgs = [make_cfg(*p, *BASE, *diag) for p in POINTS[:2]]
    for cfg, packed in zip(cfgs, train_pack(cfgs)):
        single = train(cfg)
        assert packed.final["noise_measurements"] == single.final["noise_measurements"] > 0
        for key in ("sharpness", "trace_sigma", "trace_sigma_lo"):
            assert math.isfinite(single.final[key]), key
            assert relative(packed.final[key], single.final[key]) < 1e-3, key
        # |G|^2 is a difference of two nearly equal norms: to 1e-3 of their size, tr(Sigma)/B
        scale = single.final["trace_sigma"] / cfg.batch_size
        assert abs(packed.final["grad_sq"] - single.final["grad_sq"]) < 1e-3 * scale
        assert [r["forgetting_events"] for r in packed.history] == \
            [r["forgetting_events"] for r in single.history]
        assert packed.examples == single.examples
        assert [r["noise_measurements"] for r in packed.history] == \
            [r["noise_measurements"] for r in single.history]
