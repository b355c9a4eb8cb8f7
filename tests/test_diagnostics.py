"""The diagnostics against closed forms: stability edges on a quadratic, Hessian eigenvalues
against full Hessians, the noise scale against a known covariance, forgetting events against a
hand-counted trace."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from forgetting.core.diagnostics.events import ForgettingEvents, count_events
from forgetting.core.diagnostics.noise import (
    NoiseScale,
    grad_sq_norm,
    gradient_sq_norms,
)
from forgetting.core.diagnostics.sharpness import top_eigenvalue
from forgetting.core.diagnostics.stability import edge, mean_loss_lr, sharpness_ratio
from forgetting.core.model import build_model
from forgetting.core.sgd import SGD


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny kernels run faster on one thread (conftest restores the count afterwards)."""
    torch.set_num_threads(1)


# --- stability -----------------------------------------------------------------------------

def run_quadratic(h: float, momentum: float, nesterov: bool, steps: int = 2000) -> float:
    """|p| after `steps` steps of our SGD on lam*p^2/2 from p = 1, with eta*lam = h."""
    lam = 3.0
    p = nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = SGD([p], lr=h / lam, momentum=momentum, nesterov=nesterov, weight_decay=0.0)
    for _ in range(steps):
        p.grad = lam * p.detach().clone()  # the gradient of lam*p^2/2
        opt.step()
    return abs(float(p.detach()))


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_the_edge_separates_convergence_from_divergence(momentum, nesterov):
    h = edge(momentum, nesterov)
    assert run_quadratic(h * 0.99, momentum, nesterov) < 1e-6
    assert run_quadratic(h * 1.01, momentum, nesterov) > 1e6


def test_edge_values():
    assert edge(0.0, False) == 2.0 and edge(0.0, True) == 2.0
    assert edge(0.9, False) == pytest.approx(3.8)
    assert edge(0.9, True) == pytest.approx(1.3571, abs=1e-4)
    eta = mean_loss_lr(0.01, 512)
    assert eta == pytest.approx(5.12)
    assert sharpness_ratio(10.0, eta, 5e-4, 0.9, True) == pytest.approx(
        5.12 * 10.0005 / (3.8 / 2.8))
    with pytest.raises(ValueError):
        edge(1.0, False)


# --- sharpness ------------------------------------------------------------------------------

def flat_hessian(model: nn.Module, loss) -> torch.Tensor:
    """The exact Hessian of loss(model with the flat weights w) with respect to w, in the
    model's current mode (a copy is used: its buffers may move)."""
    model = copy.deepcopy(model)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(w):
        parts = torch.split(w, [s.numel() for s in shapes])
        weights = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return loss(lambda x: functional_call(model, weights, (x,)))

    return torch.autograd.functional.hessian(f, flat, vectorize=True)


def half_mse(out, y):
    return 0.5 * ((out.squeeze(1) - y) ** 2).mean()


def test_sharpness_of_least_squares_is_the_top_eigenvalue_of_xtx_over_n():
    gen = torch.Generator().manual_seed(1)
    n, d = 64, 10
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    x[:, 0] *= 3.0  # a clear top eigenvalue
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    exact = float(torch.linalg.eigvalsh(x.T @ x / n)[-1])  # Hessian of the half mean square
    for batch_size in (None, 16, 24):  # chunks weighted by their share: the same Hessian
        got = top_eigenvalue(model, x, y, iters=500, tol=1e-10, batch_size=batch_size,
                             loss_fn=half_mse)
        assert got["sharpness_error"] is None
        assert got["sharpness"] == pytest.approx(exact, rel=1e-3)
        assert got["sharpness_rel_change"] < 1e-10 and 1 < got["sharpness_iters"] < 500


def test_sharpness_of_a_small_network_matches_its_full_hessian():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(8, 20), nn.Tanh(), nn.Linear(20, 4)).double()
    x = torch.randn(32, 8, dtype=torch.float64)
    y = torch.randint(0, 4, (32,))
    assert sum(p.numel() for p in net.parameters()) == 264
    eig = torch.linalg.eigvalsh(flat_hessian(net, lambda f: F.cross_entropy(f(x), y)))
    largest_magnitude = float(eig[eig.abs().argmax()])
    assert largest_magnitude == float(eig[-1]) > 0  # here the top one is also the largest
    got = top_eigenvalue(net, x, y, iters=3000, tol=1e-12)
    assert got["sharpness"] == pytest.approx(largest_magnitude, rel=1e-3)
    # Lanczos: the default tolerance is met within a few dozen products, and a warm start from
    # the last Ritz vector (the next measurement's) needs fewer
    cold = top_eigenvalue(net, x, y, iters=100, tol=1e-4)
    assert cold["sharpness"] == pytest.approx(float(eig[-1]), rel=1e-3)
    assert cold["sharpness_iters"] <= 30
    warm = top_eigenvalue(net, x, y, iters=100, tol=1e-4, start=cold["vector"])
    assert warm["sharpness"] == pytest.approx(float(eig[-1]), rel=1e-3)
    assert warm["sharpness_iters"] < cold["sharpness_iters"]


class Quadratic(nn.Module):
    """Outputs its weight vector whatever the input; with `quadratic_loss` the loss is
    p^T A p/2, Hessian A."""

    def __init__(self, dim: int):
        super().__init__()
        self.p = nn.Parameter(torch.ones(dim, dtype=torch.float64))

    def forward(self, x):
        return self.p.expand(len(x), -1)


def test_a_dominant_negative_eigenvalue_still_gives_the_top_one():
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(3)))
    a = q @ torch.diag(torch.tensor([-5.0, 3.0, 1.0, -0.5], dtype=torch.float64)) @ q.T

    def quadratic_loss(out, y):
        return 0.5 * out[0] @ a @ out[0]

    x, y = torch.zeros(6, 1), torch.zeros(6)
    for batch_size in (None, 4):
        got = top_eigenvalue(Quadratic(4), x, y, iters=2000, tol=1e-12, batch_size=batch_size,
                             loss_fn=quadratic_loss)
        assert got["sharpness"] == pytest.approx(3.0, rel=1e-6)


def test_batchnorm_runs_in_train_mode_and_its_statistics_are_kept():
    torch.manual_seed(4)
    model = build_model("tiny", width=0.25)
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    model(x)  # running statistics away from their initial values
    model.eval()
    model.linear.weight.grad = torch.ones_like(model.linear.weight)
    grad_before = model.linear.weight.grad
    params = [p.detach().clone() for p in model.parameters()]
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k
               or "num_batches" in k}
    assert len(buffers) == 6

    first = top_eigenvalue(model, x, y, iters=300, tol=1e-6)
    assert first["sharpness_error"] is None and first["sharpness"] > 0
    assert not model.training and not any(m.training for m in model.modules())
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in buffers.items())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert model.linear.weight.grad is grad_before
    assert torch.equal(grad_before, torch.ones_like(grad_before))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "linear.weight")
    model.train()
    again = top_eigenvalue(model, x, y, iters=300, tol=1e-6)  # deterministic
    assert {k: v for k, v in again.items() if k != "vector"} == \
        {k: v for k, v in first.items() if k != "vector"}
    assert model.training

    # the value is the train-mode (batch statistics) Hessian's, not the eval-mode one's
    double = copy.deepcopy(model).double()
    xd = x.double()
    exact = float(torch.linalg.eigvalsh(
        flat_hessian(double, lambda f: F.cross_entropy(f(xd), y)))[-1])
    got = top_eigenvalue(double, xd, y, iters=1000, tol=1e-9)
    assert got["sharpness"] == pytest.approx(exact, rel=1e-3)
    assert first["sharpness"] == pytest.approx(exact, rel=1e-2)  # float32 agrees too
    double.eval()
    in_eval = float(torch.linalg.eigvalsh(
        flat_hessian(double, lambda f: F.cross_entropy(f(xd), y)))[-1])
    assert abs(in_eval - exact) > 0.1 * exact


@pytest.mark.parametrize("batch_size", [None, 2])
def test_non_finite_weights_give_nan_and_a_reason(batch_size):
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.weight[0, 0] = math.inf
    got = top_eigenvalue(model, torch.randn(5, 4), torch.randint(0, 3, (5,)), iters=10,
                         batch_size=batch_size)
    assert math.isnan(got["sharpness"])
    assert "not finite" in got["sharpness_error"] and "\n" not in got["sharpness_error"]


# --- noise scale ----------------------------------------------------------------------------

def test_noise_scale_recovers_trace_sigma_over_gradient_sq():
    gen = torch.Generator().manual_seed(5)
    d, b, big = 100, 8, 128
    g = torch.full((d,), 0.1, dtype=torch.float64)  # |G|^2 = 1
    s = torch.linspace(0.5, 1.5, d, dtype=torch.float64)  # per-dimension noise std
    trace = float((s ** 2).sum())
    noise = NoiseScale()
    assert math.isnan(noise.b_simple()) and noise.count == 0
    for _ in range(500):
        per_example = g + s * torch.randn(big, d, generator=gen, dtype=torch.float64)
        small_sq = float(per_example[:b].mean(0).pow(2).sum())
        big_sq = float(per_example.mean(0).pow(2).sum())
        noise.add(small_sq, b, big_sq, big)
    assert noise.count == 500
    assert noise.gradient_sq() == pytest.approx(1.0, rel=0.1)
    assert noise.trace_sigma() == pytest.approx(trace, rel=0.1)
    assert noise.b_simple() == pytest.approx(trace / 1.0, rel=0.1)

    copied = NoiseScale()
    copied.load(noise.state())
    assert copied.b_simple() == noise.b_simple() and copied.count == 500
    assert all(isinstance(v, float) for vs in noise.state().values() for v in vs)
    noise.reset()
    assert noise.count == 0 and math.isnan(noise.b_simple())
    noise.add(2.0, 8, 1.5, 128)  # |G|^2 estimate (128*1.5 - 16)/120 > 0
    noise.add(2.0, 8, 0.0, 128)  # one negative estimate: the mean is what counts
    assert noise.gradient_sq() == pytest.approx(((128 * 1.5 - 16) / 120 - 16 / 120) / 2)
    noise.reset()
    noise.add(2.0, 8, 0.05, 128)
    assert noise.gradient_sq() < 0 and math.isnan(noise.b_simple())
    with pytest.raises(ValueError):
        noise.add(1.0, 8, 1.0, 8)


def test_gradient_sq_norms_match_per_example_gradients():
    torch.manual_seed(6)
    big, small, d, k = 32, 8, 6, 4
    model = nn.Linear(d, k).double()
    x, y = torch.randn(big, d, dtype=torch.float64), torch.randint(0, k, (big,))
    # softmax regression: per-example gradient of cross-entropy is r x^T (weight), r (bias)
    r = torch.softmax(model(x), 1).detach() - F.one_hot(y, k).double()
    per_example = torch.cat([(r[:, :, None] * x[:, None, :]).reshape(big, -1), r], 1)

    def sq(n):
        return float(per_example[:n].mean(0).pow(2).sum())

    model.bias.grad = torch.full_like(model.bias, 7.0)
    got_small, got_big = gradient_sq_norms(model, x, y, small)
    assert got_small == pytest.approx(sq(small), rel=1e-5)
    assert got_big == pytest.approx(sq(big), rel=1e-5)
    assert model.weight.grad is None and torch.equal(model.bias.grad, torch.full((k,), 7.0,
                                                                                  dtype=torch.float64))
    # the training feed: a summed-loss backward's .grad over B gives the same |G_B|^2
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    assert grad_sq_norm(model, big) == pytest.approx(sq(big), rel=1e-9)


def test_gradient_sq_norms_keep_batchnorm_statistics():
    torch.manual_seed(7)
    model = build_model("tiny", width=0.25)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small_sq, big_sq = gradient_sq_norms(model, x, y, 4)
    assert small_sq > 0 and big_sq > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# --- forgetting events ----------------------------------------------------------------------

def test_count_events():
    T, F_ = True, False
    assert count_events([T, F_, T, F_]) == 2
    assert count_events([F_, F_, T, T]) == 0
    assert count_events([T, T, F_]) == 1
    assert count_events([]) == 0
    assert count_events([T]) == 0


# steps of (example, correct), each step a subset in its own order; example 4 never appears
TRACE = [
    [(2, True), (0, False), (1, True)],
    [(1, False), (3, False), (0, True)],
    [(0, False), (5, False), (2, True)],
    [(3, False), (1, True), (0, True), (2, False)],
    [(2, True), (1, False), (5, True)],
    [(0, False), (3, False), (5, True)],
]


def replay(tracker: ForgettingEvents, steps) -> None:
    for number, pairs in steps:
        indices = torch.tensor([i for i, _ in pairs])
        correct = torch.tensor([c for _, c in pairs])
        tracker.record(indices, correct, step=10 * number)


def test_forgetting_events_on_a_hand_counted_trace():
    tracker = ForgettingEvents(6, "cpu")
    replay(tracker, enumerate(TRACE))
    sequences = {i: [c for pairs in TRACE for j, c in pairs if j == i] for i in range(6)}
    assert tracker.forgetting_events.tolist() == [count_events(sequences[i]) for i in range(6)]
    assert tracker.forgetting_events.tolist() == [2, 2, 1, 0, 0, 0]  # by hand
    assert tracker.presentations.tolist() == [5, 4, 4, 3, 0, 3]
    assert tracker.first_learned_step.tolist() == [10, 0, 0, -1, -1, 40]
    assert tracker.learned_at_end.tolist() == [False, False, True, False, False, True]
    rows = tracker.table(torch.tensor([3, 1, 4, 1, 5, 9]))
    assert rows[5] == {"example": 5, "label": 9, "presentations": 3, "first_learned_step": 40,
                       "forgetting_events": 0, "learned_at_end": True, "never_learned": False}
    assert [r["never_learned"] for r in rows] == [False, False, False, True, True, False]
    # presented: 0, 1, 2, 3, 5; learned: 0, 1, 2, 5; never forgotten among those: 5
    assert tracker.summary() == {"share_never_forgotten": 0.25, "mean_forgetting_events": 1.0,
                                 "share_never_learned": 0.2, "n_presented": 5, "n_learned": 4}


def test_forgetting_events_state_round_trip_continues_identically():
    straight = ForgettingEvents(6, "cpu")
    replay(straight, enumerate(TRACE))
    first = ForgettingEvents(6, "cpu")
    replay(first, list(enumerate(TRACE))[:3])
    resumed = ForgettingEvents(6, "cpu")
    resumed.load(first.state())
    replay(resumed, list(enumerate(TRACE))[3:])
    for name in ("presentations", "last_correct", "first_learned_step", "forgetting_events"):
        assert torch.equal(getattr(resumed, name), getattr(straight, name)), name
    assert resumed.summary() == straight.summary()
    with pytest.raises(ValueError):
        ForgettingEvents(5).load(straight.state())
    with pytest.raises(ValueError):  # a correct count instead of per-example bools
        straight.record(torch.tensor([0, 1]), torch.tensor(1), step=99)


def test_forgetting_events_match_the_reference_on_a_random_trace():
    gen = torch.Generator().manual_seed(8)
    n = 50
    tracker = ForgettingEvents(n)
    sequences: dict[int, list[bool]] = {i: [] for i in range(n)}
    for step in range(40):
        indices = torch.randperm(n, generator=gen)[:20]
        correct = torch.rand(20, generator=gen) < 0.6
        tracker.record(indices, correct, step)
        for i, c in zip(indices.tolist(), correct.tolist()):
            sequences[i].append(c)
    assert tracker.forgetting_events.tolist() == [count_events(sequences[i]) for i in range(n)]
    assert tracker.presentations.tolist() == [len(sequences[i]) for i in range(n)]
