"""Tests for forgetting.model: shapes, width scaling, FLOP counts, heads, errors, layer counts."""

import pytest
import torch
from torch import nn

from forgetting.bench.flops import forward_flops
from forgetting.core.config import MODELS
from forgetting.core.errors import ConfigError
from forgetting.core.model import build_model


def _convs(model: nn.Module, kernel: int | None = None) -> list[nn.Conv2d]:
    return [m for m in model.modules()
            if isinstance(m, nn.Conv2d) and (kernel is None or m.kernel_size[0] == kernel)]


def _conv_params(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in _convs(model))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_output_shape(name, width):
    model = build_model(name, width=width, num_classes=7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_and_bf16_autocast(name):
    model = build_model(name, width=0.25).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", ["resnet9", "dawn18"])
def test_other_input_size(name):
    # Adaptive global pooling: equal to pool-4 at 32x32 and still valid at other sizes.
    assert build_model(name, width=0.25)(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_half_width_quarters_conv_params(name):
    full, half = build_model(name, width=1.0), build_model(name, width=0.5)
    # Conv weights are c_in * c_out * k * k: every conv scales by 1/4, except the 3-channel input
    # conv (1/2).
    for f, h in zip(_convs(full), _convs(half)):
        assert h.weight.numel() * (2 if f.in_channels == 3 else 4) == f.weight.numel()
    if name != "tiny":  # in the big nets the input conv is negligible: total is ~1/4
        assert _conv_params(half) / _conv_params(full) == pytest.approx(0.25, rel=0.01)


def test_channel_rounding():
    model = build_model("resnet9", width=0.3)
    assert [m.out_channels for m in _convs(model)] == [19, 38, 38, 38, 77, 154, 154, 154]
    # max(1, ...) channels
    assert build_model("tiny", width=0.01)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


# FlopCounterMode counts only convs and matmuls (2 FLOPs per multiply-add); BN, ReLU, pooling and
# the residual
# adds are ~0.3% extra and uncounted, as in the source's figures. The source quotes 3 significant
# figures, so a 1%
# tolerance covers its rounding and the uncounted elementwise ops while still catching any wrong
# layer
# (the smallest conv, resnet9's prep, is 3.5 MFLOP = 0.5%; any other layer is > 5%).
def test_resnet9_flops():
    assert forward_flops(build_model("resnet9")) == pytest.approx(0.759e9, rel=0.01)


def test_dawn18_flops():
    assert forward_flops(build_model("dawn18")) == pytest.approx(0.92e9, rel=0.01)


def test_flops_restore_mode():
    model = build_model("tiny")
    model.train()
    forward_flops(model)
    assert model.training
    model.eval()
    forward_flops(model)
    assert not model.training


def test_heads():
    r9 = build_model("resnet9")
    assert r9.linear.bias is None
    assert r9.linear.in_features == 512
    d18 = build_model("dawn18")
    assert d18.linear.bias is not None
    assert d18.linear.in_features == 512  # concat of max and avg pool over 256 channels


def test_resnet9_output_scale():
    model = build_model("resnet9", width=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = {}
    model.pool.register_forward_hook(lambda m, i, o: feats.setdefault("f", torch.flatten(o, 1)))
    out = model(x)
    torch.testing.assert_close(out, model.linear(feats["f"]) * 0.125)


def test_layer_counts():
    r9 = build_model("resnet9")
    assert len(_convs(r9)) == 8
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in _convs(r9))
    d18 = build_model("dawn18")
    assert len(_convs(d18, kernel=3)) == 17  # prep + 8 blocks x 2
    projections = _convs(d18, kernel=1)
    assert len(projections) == 3
    assert [p.stride for p in projections] == [(2, 2)] * 3
    assert all(c.bias is None for c in _convs(d18))
    # prep conv of dawn18 is followed directly by the first block's BN, not by its own BN-ReLU
    assert isinstance(d18.prep, nn.Conv2d)


def test_dawn18_projection_uses_preactivation():
    block = build_model("dawn18", width=0.25).layer2[0].eval()
    x = torch.randn(1, 16, 8, 8)
    first = torch.relu(block.bn1(x))
    expected = block.conv2(torch.relu(block.bn2(block.conv1(first)))) + block.shortcut(first)
    torch.testing.assert_close(block(x), expected)


def test_unknown_name():
    with pytest.raises(ConfigError, match="model.name") as info:
        build_model("resnet50")
    assert info.value.key == "model.name"


@pytest.mark.parametrize("width", [0, -1.0])
def test_bad_width(width):
    with pytest.raises(ConfigError, match="model.width") as info:
        build_model("resnet9", width=width)
    assert info.value.key == "model.width"


def test_tiny_learns_a_batch():
    torch.manual_seed(0)
    model = build_model("tiny")
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    first = nn.functional.cross_entropy(model(x), y).item()
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_global_max_pool_is_the_adaptive_pool(device, dtype):
    """Same values and gradients as AdaptiveMaxPool2d(1), ties included (small integers)."""
    from forgetting.core.model import GlobalMaxPool

    torch.manual_seed(0)
    for shape in [(64, 32, 4, 4), (8, 16, 2, 3)]:
        x = torch.randint(0, 4, shape).to(device, dtype).contiguous(
            memory_format=torch.channels_last)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = torch.nn.AdaptiveMaxPool2d(1)(a), GlobalMaxPool()(b)
        grad = torch.randn_like(ya)
        ya.backward(grad)
        yb.backward(grad)
        assert yb.shape == ya.shape and torch.equal(ya, yb) and torch.equal(a.grad, b.grad)
