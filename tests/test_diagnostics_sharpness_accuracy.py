"""The cheaper sharpness options and what each costs in accuracy, on weights trained a little
(synthetic CIFAR-like images, SGD from init): Hessian-vector products in bf16
(`diag.hvp_precision`), a looser Lanczos stop (`diag.tol`), and the sampling error over the
fixed examples' batches (`diag.sharpness_se`). The measured errors behind each tolerance are in
docs/diagnostics.md ("Cheaper measurements")."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from forgetting.core.config import DataConfig, validate
from forgetting.core.data import synthetic
from forgetting.core.diagnostics import monitor
from forgetting.core.diagnostics.hvp import Bf16Autocast, hvp_function
from forgetting.core.diagnostics.sharpness import mean_cross_entropy, top_eigenvalue
from forgetting.core.errors import ConfigError
from forgetting.core.model import build_model
from forgetting.core.train import train

BATCH = 32


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def trained(name: str, width: float, side: int, steps: int = 30, seed: int = 0):
    """A model after `steps` SGD steps of batch 32 from its init, and 1024 normalised synthetic
    training images of side `side` with their labels."""
    d = DataConfig()
    data = synthetic(10, 1024, 10, side, d.noise, 0)
    mean, std = torch.tensor(d.mean).view(1, 3, 1, 1), torch.tensor(d.std).view(1, 3, 1, 1)
    x, y = (data.train_x.float() - mean) / std, data.train_y
    torch.manual_seed(seed)
    model = build_model(name, width).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (BATCH,), generator=gen)
        opt.zero_grad()
        mean_cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model, x, y


def test_bf16_casts_are_autocasts_and_leave_weights_and_products_fp32():
    model, x, y = trained("tiny", 1.0, 16, steps=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = mean_cross_entropy(model(x[:BATCH]).float(), y[:BATCH])
    with torch.no_grad(), Bf16Autocast():
        got = mean_cross_entropy(model(x[:BATCH]).float(), y[:BATCH])
    assert float(got) == float(expected)  # the tiny net: bit for bit
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]
    for method in ("forward_over_reverse", "double_backward"):
        hv = hvp_function(model, params, x[:64], y[:64], mean_cross_entropy, BATCH, method,
                          "bf16")(v)
        assert all(h.dtype == torch.float32 for h in hv)
    assert all(p.dtype == torch.float32 for p in params)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        hvp_function(model, params, x, y, mean_cross_entropy, BATCH, precision="fp16")


@pytest.mark.parametrize("name,width,side", [
    ("tiny", 1.0, 16),
    pytest.param("resnet9", 0.125, 32, marks=pytest.mark.slow),  # ~15 s
])
def test_bf16_products_give_lambda_max_within_2_percent(name, width, side):
    """Measured (3 seeds x 0, 30, 100 steps, converged to 1e-7): |bf16 - fp32| / fp32 <= 0.44%
    on the tiny net, <= 1.15% on ResNet-9 at width 1/8 (the largest at init; <= 0.5% after 30
    steps). The issue's acceptance is 2%."""
    model, x, y = trained(name, width, side)
    x, y = x[:4 * BATCH], y[:4 * BATCH]
    fp32, bf16 = (top_eigenvalue(model, x, y, iters=40, tol=1e-4, batch_size=BATCH,
                                 precision=p) for p in ("fp32", "bf16"))
    assert bf16["sharpness_error"] is None and fp32["sharpness"] > 0
    assert bf16["sharpness"] == pytest.approx(fp32["sharpness"], rel=0.02)


def test_a_looser_tolerance_stops_sooner_within_2_percent():
    """tol 1e-2 against the default 1e-3 from a cold start on trained weights. Measured on the
    tiny net (3 seeds x 30, 100 steps): 1-3 products fewer (7-12 -> 6-9), within 0.5% of the
    converged value (here 11 -> 8, -0.54% from the 1e-3 value). Not from init: there a cold
    start stalls and both tolerances stopped up to 7% low (docs/diagnostics.md)."""
    model, x, y = trained("tiny", 1.0, 16)
    x, y = x[:4 * BATCH], y[:4 * BATCH]
    default, loose = (top_eigenvalue(model, x, y, iters=40, tol=tol, batch_size=BATCH)
                      for tol in (1e-3, 1e-2))
    assert loose["sharpness_iters"] < default["sharpness_iters"]
    assert loose["sharpness_rel_change"] < 1e-2
    assert loose["sharpness"] == pytest.approx(default["sharpness"], rel=0.02)


def test_the_chunks_curvatures_are_the_products_along_the_ritz_vector():
    """sharpness_chunks (from dots with the Lanczos basis, no extra product) are the chunks' own
    Rayleigh quotients u^T H_c u, taken directly; their mean is lambda_max; the value itself is
    the one measured without the spread; one chunk has no standard error."""
    model, x, y = trained("tiny", 1.0, 16)
    x, y = x[:4 * BATCH], y[:4 * BATCH]
    plain = top_eigenvalue(model, x, y, iters=40, tol=1e-4, batch_size=BATCH)
    got = top_eigenvalue(model, x, y, iters=40, tol=1e-4, batch_size=BATCH, spread=True)
    assert got["sharpness"] == pytest.approx(plain["sharpness"], rel=1e-6)
    params = list(model.parameters())
    u = got["vector"]
    parts = hvp_function(model, params, x, y, mean_cross_entropy, BATCH,
                         "forward_over_reverse", split=True)(u)
    direct = [4 * sum(float((a * b).sum()) for a, b in zip(u, part)) for part in parts]
    assert got["sharpness_chunks"] == pytest.approx(direct, rel=1e-4, abs=1e-6)
    assert statistics.mean(got["sharpness_chunks"]) == pytest.approx(got["sharpness"], rel=1e-5)
    assert got["sharpness_se"] == pytest.approx(statistics.stdev(direct) / 2, rel=1e-3)
    one = top_eigenvalue(model, x[:BATCH], y[:BATCH], iters=10, batch_size=BATCH, spread=True)
    assert len(one["sharpness_chunks"]) == 1 and math.isnan(one["sharpness_se"])


def test_the_standard_error_against_other_draws_and_one_batch_against_four():
    """What sharpness_se says and what fewer examples cost, on 6 disjoint sets of 4 batches:
    the reported standard error is of the order of the spread of lambda_max over the sets
    (measured: its rms 0.82-2.7x their standard deviation: 2 seeds x 30, 100 steps, 8
    sets; 0.82 here),
    and one batch reads higher than its set's 4 (measured +28% to +43% on average; per set 2%
    to 113% apart): the direction fitted to fewer examples finds more curvature, a bias that
    sharpness_se does not include."""
    model, x, y = trained("tiny", 1.0, 16)
    lams, ses, ones = [], [], []
    for s in range(6):
        xs, ys = x[s * 4 * BATCH:(s + 1) * 4 * BATCH], y[s * 4 * BATCH:(s + 1) * 4 * BATCH]
        m = top_eigenvalue(model, xs, ys, iters=40, tol=1e-3, batch_size=BATCH, spread=True)
        lams.append(m["sharpness"])
        ses.append(m["sharpness_se"])
        ones.append(top_eigenvalue(model, xs[:BATCH], ys[:BATCH], iters=40)["sharpness"])
    rms_se = math.sqrt(statistics.mean(s * s for s in ses))
    assert 0.5 < rms_se / statistics.stdev(lams) < 4
    assert statistics.mean(ones) > 1.1 * statistics.mean(lams)


def test_the_keys_reach_the_measurement_and_are_off_by_default(make_cfg, monkeypatch):
    seen: list[dict] = []
    measure = monitor.top_eigenvalue

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return measure(*args, **kwargs)

    monkeypatch.setattr(monitor, "top_eigenvalue", spy)
    base = ["epochs=1", "threads=1", "batch_size=32", "diag.sharpness=true",
            "diag.sharpness_examples=64", "diag.iters=3"]
    plain = train(make_cfg(*base))
    assert (seen[-1]["tol"], seen[-1]["precision"], seen[-1]["spread"]) == (1e-3, "fp32", False)
    assert "sharpness_se" not in plain.history[-1]
    cheap = train(make_cfg(*base, "diag.tol=0.01", "diag.hvp_precision=bf16",
                           "diag.sharpness_se=true"))
    assert (seen[-1]["tol"], seen[-1]["precision"], seen[-1]["spread"]) == (0.01, "bf16", True)
    assert cheap.history[-1]["sharpness_se"] > 0  # two batches of 32
    with pytest.raises(ConfigError, match="diag.hvp_precision='fp16': choose one of fp32, bf16"):
        validate(make_cfg(*base, "diag.hvp_precision=fp16"))
