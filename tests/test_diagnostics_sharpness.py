"""Sharpness as the training monitor measures it: whole batches (BatchNorm over chunks of exactly
the run's batch size), the examples' count refused below one batch or rounded up and recorded,
and the two Hessian-vector-product routes giving the same lambda_max."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetting.core.config import validate
from forgetting.core.diagnostics import monitor
from forgetting.core.diagnostics.hvp import METHODS, hvp_function
from forgetting.core.diagnostics.monitor import sharpness_examples
from forgetting.core.diagnostics.sharpness import mean_cross_entropy, top_eigenvalue
from forgetting.core.errors import ConfigError
from forgetting.core.model import build_model
from forgetting.core.train import train


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_the_examples_are_whole_batches():
    assert sharpness_examples(0, 512, 6250) == 512  # the larger of 256 and one batch
    assert sharpness_examples(0, 128, 6250) == 256
    assert sharpness_examples(0, 100, 6250) == 300  # 256 rounded up to whole batches
    assert sharpness_examples(0, 64, 100) == 64  # at most the subset's whole batches
    assert sharpness_examples(100, 64, 640) == 128  # rounded up
    assert sharpness_examples(640, 64, 640) == 640
    with pytest.raises(ConfigError, match=r"diag.sharpness_examples=601: rounded up to whole "
                                          r"batches \(640\) exceeds the subset size 600"):
        sharpness_examples(601, 64, 600)


def test_below_one_batch_is_refused_in_one_line(make_cfg):
    cfg = make_cfg("diag.sharpness=true", "diag.sharpness_examples=32")  # batch_size=64
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value).startswith("diag.sharpness_examples=32: is below one batch "
                                   "(batch_size=64); ")
    assert "\n" not in str(e.value)
    validate(make_cfg("diag.sharpness=false", "diag.sharpness_examples=32"))  # not measured
    validate(make_cfg("diag.sharpness=true", "diag.sharpness_examples=0"))


def test_batchnorm_sees_exactly_batch_size_chunks(make_cfg, monkeypatch):
    """100 examples asked at batch 32: 128 used, every BatchNorm input of the measurement is 32
    examples, and metrics.json records 128."""
    seen: list[int] = []
    measure = monitor.top_eigenvalue

    def hooked(model, *args, **kwargs):
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        handles = [m.register_forward_hook(lambda mod, inp, out: seen.append(len(inp[0])))
                   for m in norms]
        try:
            return measure(model, *args, **kwargs)
        finally:
            for h in handles:
                h.remove()

    monkeypatch.setattr(monitor, "top_eigenvalue", hooked)
    result = train(make_cfg("epochs=1", "threads=1", "batch_size=32", "diag.sharpness=true",
                            "diag.sharpness_examples=100", "diag.iters=3"))
    assert result.final["sharpness_examples"] == 128
    assert seen and set(seen) == {32}
    assert len(seen) % 4 == 0  # four chunks (of 32) per pass of the 128 examples


def test_the_default_is_the_larger_of_256_and_one_batch(make_cfg):
    result = train(make_cfg("epochs=1", "threads=1", "diag.sharpness=true", "diag.iters=2"))
    assert result.final["sharpness_examples"] == 256  # batch 64, 640 examples


@pytest.mark.parametrize("batch_size", [None, 16])
def test_both_hessian_vector_routes_give_the_same_products_and_lambda_max(batch_size):
    torch.manual_seed(0)
    model = build_model("tiny", width=0.5).train()
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=gen) for p in params]
    products = [hvp_function(model, params, x, y, mean_cross_entropy, batch_size, m)(v)
                for m in METHODS]
    for a, b in zip(*products):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    before = {k: v.clone() for k, v in model.state_dict().items()}  # top_eigenvalue keeps them
    values = [top_eigenvalue(model, x, y, iters=100, tol=1e-8, batch_size=batch_size,
                             method=m) for m in METHODS]
    assert values[0]["sharpness"] == pytest.approx(values[1]["sharpness"], rel=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ValueError, match="method must be one of"):
        hvp_function(model, params, x, y, mean_cross_entropy, None, "finite_differences")


def test_kept_chunk_graphs_give_the_recomputed_value():
    """Every chunk's first-order graph built once and kept gives the same lambda_max as
    recomputing each chunk per product (the route before), to rounding."""
    torch.manual_seed(3)
    model = build_model("tiny", width=0.5).train()
    x, y = torch.randn(96, 3, 16, 16), torch.randint(0, 10, (96,))
    params = list(model.parameters())
    kept = hvp_function(model, params, x, y, mean_cross_entropy, 32)
    gen = torch.Generator().manual_seed(4)
    v = [torch.randn(p.shape, generator=gen) for p in params]
    recomputed = [torch.zeros_like(p) for p in params]
    for start in range(0, 96, 32):
        loss = mean_cross_entropy(model(x[start:start + 32]), y[start:start + 32]) / 3
        g = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(g, params, grad_outputs=v)
        recomputed = [r + h for r, h in zip(recomputed, hv)]
    for _ in range(2):  # the kept graphs serve every product
        for a, b in zip(kept(v), recomputed):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
