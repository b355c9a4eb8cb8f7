import copy
import math

import pytest
import torch
import torch.nn.functional as F

from forgetting.core.errors import ConfigError
from forgetting.core.model import build_model
from forgetting.core.setup import make_optimizer, step_lr
from forgetting.core.train import train


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


def test_a_finite_loss_above_the_bound_also_ends_the_run_as_diverged(make_cfg, monkeypatch):
    from forgetting.core import metrics

    monkeypatch.setattr(metrics, "DIVERGED_LOSS", 0.5)  # below the first epoch's loss (~2.3)
    result = train(make_cfg("epochs=3"))
    assert result.status == "diverged"
    assert len(result.history) == 1 and math.isfinite(result.history[0]["train_loss"])
    assert result.history[0]["train_loss"] > 0.5
    assert math.isnan(result.final["test_loss"])


def test_batch_larger_than_subset_is_refused(make_cfg):
    with pytest.raises(ConfigError,
                       match=r"batch_size=128: must be <= the subset size 60 \(subset=0.1 of 640"):
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
    from forgetting.core.sgd import SGD

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
    from forgetting.core.sgd import SGD

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


def test_sgd_ready_for_capture_matches_the_plain_optimizer():
    """What a captured CUDA graph needs of SGD (forgetting/core/step.py) changes no result: zero
    momentum buffers made in advance give the same steps bit for bit, an LR held in a 0-d tensor
    the same up to rounding, and loading a state dict copies into the existing buffers."""
    from forgetting.core.sgd import SGD

    torch.manual_seed(3)
    model = build_model("tiny")
    twins = [copy.deepcopy(model) for _ in range(2)]
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    plain = SGD(model.parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.01)
    ready = SGD(twins[0].parameters(), lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.01)
    ready.init_state()
    lr = torch.tensor(0.02)
    tensor_lr = SGD(twins[1].parameters(), lr=lr, momentum=0.9, nesterov=True,
                    weight_decay=0.01)
    tensor_lr.init_state()
    buffers = [s["momentum_buffer"] for s in tensor_lr.state.values()]
    for _ in range(3):
        for net, opt in zip([model] + twins, (plain, ready, tensor_lr)):
            opt.zero_grad()
            F.cross_entropy(net(x), y, reduction="sum").backward()
            opt.step()
    for a, b, c in zip(model.parameters(), *(t.parameters() for t in twins)):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, torch.zeros_like(a))
    tensor_lr.load_state_dict(plain.state_dict())
    assert tensor_lr.param_groups[0]["lr"] is lr  # the graph's LR tensor stays
    assert [s["momentum_buffer"] for s in tensor_lr.state.values()] == buffers  # same tensors
    for p, q in zip(model.parameters(), twins[1].parameters()):
        assert torch.equal(plain.state[p]["momentum_buffer"],
                           tensor_lr.state[q]["momentum_buffer"])
    saved_lr = tensor_lr.state_dict()["param_groups"][0]["lr"]
    assert isinstance(saved_lr, float) and saved_lr == pytest.approx(0.02)


def test_warm_up_before_capture_leaves_no_trace():
    """The warm-up a CUDA graph needs (forgetting/core/step.py) restores the weights, BatchNorm
    statistics and momentum buffers in place: what follows is bit-identical to a model that
    never warmed up, and every tensor keeps its address. (On a CPU, with a float LR.)"""
    from forgetting.core.sgd import SGD
    from forgetting.core.step import make_autocast, sgd_step, warm_up_in_place

    torch.manual_seed(4)
    model = build_model("tiny")
    twin = copy.deepcopy(model)
    opts = [SGD(m.parameters(), lr=0.0, momentum=0.9, nesterov=True, weight_decay=0.01)
            for m in (model, twin)]
    autocast = make_autocast(torch.device("cpu"), "fp32")
    x, y = torch.randn(4, 8, 3, 32, 32), torch.randint(0, 10, (4, 8))
    addresses = [t.data_ptr() for t in twin.state_dict().values()]
    warm_up_in_place(lambda: sgd_step(twin, opts[1], x[0], y[0], 0.05, autocast), twin,
                     opts[1], 3)
    assert [t.data_ptr() for t in twin.state_dict().values()] == addresses
    buffers = [s["momentum_buffer"].data_ptr() for s in opts[1].state.values()]
    for i in range(4):
        losses = [sgd_step(m, o, x[i], y[i], 0.01 * (i + 1), autocast)[0].item()
                  for m, o in zip((model, twin), opts)]
        assert losses[0] == losses[1], i
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)
    assert [s["momentum_buffer"].data_ptr() for s in opts[1].state.values()] == buffers
