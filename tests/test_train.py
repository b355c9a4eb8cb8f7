import copy
import math

import pytest
import torch
import torch.nn.functional as F

from forgetting.errors import ConfigError
from forgetting.model import build_model
from forgetting.train import make_optimizer, step_lr, train


def test_summed_loss_sgd_step_equals_the_mean_loss_step(make_cfg):
    """One step of the seed's summed-loss SGD (LR per example, weight decay x batch size)
    equals mean-loss SGD with LR x batch size and weight decay 5e-4."""
    cfg = make_cfg("batch_size=32", "lr=3")
    torch.manual_seed(0)
    model = build_model("tiny").double()
    twin = copy.deepcopy(model)
    x = torch.randn(32, 3, 32, 32, dtype=torch.float64)
    y = torch.randint(0, 10, (32,))
    lr = step_lr(cfg, 1.0, cfg.epochs)
    assert lr > 0

    ours = make_optimizer(model, cfg)
    for g in ours.param_groups:
        g["lr"] = lr
    mean_sgd = torch.optim.SGD(twin.parameters(), lr=lr * 32, momentum=0.9, nesterov=True,
                               weight_decay=5e-4)
    for _ in range(2):  # two steps so momentum takes part too
        ours.zero_grad()
        F.cross_entropy(model(x), y, reduction="sum").backward()
        ours.step()
        mean_sgd.zero_grad()
        F.cross_entropy(twin(x), y, reduction="mean").backward()
        mean_sgd.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert ours.param_groups[0]["weight_decay"] == pytest.approx(5e-4 * 32)


def test_tiny_synthetic_run_learns(make_cfg):
    cfg = make_cfg("epochs=6", "lr=8")
    result = train(cfg)
    assert result.status == "ok"
    losses = [row["train_loss"] for row in result.history]
    assert len(result.history) == 6
    assert losses[-1] < 0.5 * losses[0]
    assert result.final["test_loss"] < result.history[0]["test_loss"]
    assert result.final["test_acc"] > 0.5  # 10 classes: chance is 0.1
    assert math.isfinite(result.final["clean_train_loss"])
    assert result.info["steps"] == 6 * (640 // 64)


def test_same_seed_same_run(make_cfg):
    a = train(make_cfg("seed=3"))
    b = train(make_cfg("seed=3"))
    c = train(make_cfg("seed=4"))
    assert a.final["test_loss"] == b.final["test_loss"]
    assert a.final["test_loss"] != c.final["test_loss"]


def test_divergence_is_an_outcome_not_a_crash(make_cfg):
    result = train(make_cfg("lr=1e9", "epochs=4"))
    assert result.status == "diverged"
    assert len(result.history) < 4 or not math.isfinite(result.history[-1]["train_loss"])
    assert math.isnan(result.final["test_loss"])


def test_batch_larger_than_subset_is_refused(make_cfg):
    with pytest.raises(ConfigError, match=r"batch_size=128: must be <= the subset size 60 \(subset=0.1 of 640"):
        train(make_cfg("subset=0.1", "batch_size=128"))


def test_equal_steps_budget_gives_more_passes_to_a_subset(make_cfg):
    result = train(make_cfg("budget=steps", "subset=0.5", "epochs=2", "augment=false"))
    assert result.info["passes"] == 4
    assert len(result.history) == 4
    assert result.info["steps"] == 2 * (640 // 64)


def test_bf16_and_cutout_paths_run(make_cfg):
    result = train(make_cfg("precision=bf16", "cutout=8", "epochs=1"))
    assert result.status == "ok" and result.info["precision"] == "bf16"


def test_on_epoch_hook_sees_each_epoch_and_can_stop_the_run(make_cfg):
    seen = []

    def stop_after_two(row):
        seen.append((row["epoch"], row["test_loss"]))
        return row["epoch"] == 2

    result = train(make_cfg("epochs=5"), on_epoch=stop_after_two)
    assert result.status == "pruned"
    assert [epoch for epoch, _ in seen] == [1, 2] and len(result.history) == 2
    assert seen[-1][1] == result.final["test_loss"]


@pytest.mark.parametrize("nesterov, weight_decay", [(True, 5e-4 * 64), (False, 0.0)])
def test_our_sgd_is_bit_identical_to_torch_optim_sgd(nesterov, weight_decay):
    from forgetting.sgd import SGD

    torch.manual_seed(1)
    model = build_model("tiny")
    twin = copy.deepcopy(model)
    ours = SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=nesterov,
               weight_decay=weight_decay)
    ref = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9, nesterov=nesterov,
                          weight_decay=weight_decay)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(3):
        for net, opt in ((model, ours), (twin, ref)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y, reduction="sum").backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_sgd_state_dict_round_trip_continues_identically():
    from forgetting.sgd import SGD

    torch.manual_seed(2)
    model = build_model("tiny")
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))

    def steps(net, opt, n):
        for _ in range(n):
            opt.zero_grad()
            F.cross_entropy(net(x), y, reduction="sum").backward()
            opt.step()

    opt = SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01)
    steps(model, opt, 2)
    clone = copy.deepcopy(model)
    restored = SGD(clone.parameters(), lr=0.0, momentum=0.9, nesterov=True, weight_decay=0.01)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert restored.param_groups[0]["lr"] == 0.01
    steps(model, opt, 2)
    steps(clone, restored, 2)
    for a, b in zip(model.parameters(), clone.parameters()):
        assert torch.equal(a, b)
