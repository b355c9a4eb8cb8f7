"""The GPU speed paths: a step replayed as a CUDA graph, alone and with torch.compile, takes the
eager step's steps, and a run with it agrees with an eager run and resumes from a checkpoint.
Skipped without a CUDA device (CI has none; docs/benchmarks.md says where these ran).

Tolerances: step by step, with cuDNN held to deterministic kernels in full fp32, the graph
differs from the eager step only by the rounding of its SGD update (it multiplies by the LR
tensor where the eager update fuses the LR; with a float LR the same warm-up and restore are
bit-identical, tests/test_train.py). The losses of 4 steps agree to 1e-4 (compiled: 1e-3).
Training amplifies that one rounding quickly: after 4 steps the BatchNorm biases, small sums of
cancelling gradients, differed by up to 1.9% of their largest value on an H100, so the weights
are held to 5%; a momentum buffer or BatchNorm statistic not restored after the warm-up would
be off by its whole size. Whole runs use cuDNN's autotuned kernels, which do not promise
bit-reproducibility, and training amplifies any difference: 5%, as for bf16 against fp32.
"""

import copy

import pytest
import torch

from forgetting.core.augment import BatchMaker, get_batch
from forgetting.core.checkpoint import Checkpoint, Preempted
from forgetting.core.data import synthetic
from forgetting.core.model import build_model
from forgetting.core.sgd import SGD
from forgetting.core.step import make_step
from forgetting.core.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.fixture
def exact_kernels():
    """cuDNN's deterministic kernels, full fp32 (no TF32 rounding of inputs)."""
    flags = [(torch.backends.cudnn, "deterministic", True), (torch.backends.cudnn, "benchmark",
             False), (torch.backends.cudnn, "allow_tf32", False),
             (torch.backends.cuda.matmul, "allow_tf32", False)]
    saved = [getattr(obj, name) for obj, name, _ in flags]
    for obj, name, value in flags:
        setattr(obj, name, value)
    yield
    for (obj, name, _), value in zip(flags, saved):
        setattr(obj, name, value)


@pytest.mark.parametrize("compiled", [False, True], ids=["graph", "compiled-graph"])
def test_graph_step_takes_the_eager_steps(exact_kernels, compiled):
    data = synthetic(10, 256, 1, 32, 48.0, 0)
    maker = BatchMaker(data.train_x, [0.5] * 3, [0.25] * 3, CUDA, torch.float32, cutout=4)
    labels = data.train_y.to(CUDA)
    torch.manual_seed(0)
    model = build_model("resnet9", 0.25, 10).to(CUDA, memory_format=torch.channels_last)
    twin = copy.deepcopy(model)
    initial = copy.deepcopy(model.state_dict())
    tol = 1e-3 if compiled else 1e-4  # inductor's fused kernels round differently
    steps = []
    for net, graphs in ((model, False), (twin, True)):
        opt = SGD(net.parameters(), lr=0.0, momentum=0.9, nesterov=True, weight_decay=0.032)
        run = torch.compile(net) if compiled and graphs else net
        steps.append(make_step(run, net, opt, "fp32", maker, labels, 64, graphs))
    order, params = maker.draw_epoch(torch.Generator().manual_seed(1))
    for i, lr in enumerate([0.002, 0.004, 0.0, 0.001]):
        x, y = get_batch(maker, labels, order, params, i, 64)
        (loss_a, hits_a), (loss_b, hits_b) = (step(x, y, lr) for step in steps)
        assert loss_b.item() == pytest.approx(loss_a.item(), rel=tol), i
        assert abs(hits_b.item() - hits_a.item()) <= 1  # a near-tie of two logits may flip
    gaps = {}  # largest difference, relative to the tensor's largest value and to its update
    for (name, a), b, c in zip(model.state_dict().items(), twin.state_dict().values(),
                               initial.values()):
        if a.is_floating_point():
            diff = (a - b).abs().max().item()
            gaps[name] = (diff / a.abs().max().item(), diff / max((a - c).abs().max().item(),
                                                                     1e-30))
        else:
            assert torch.equal(a, b), name
    worst = sorted(gaps.items(), key=lambda kv: -kv[1][0])[:3]
    assert worst[0][1][0] <= 0.05, worst
    assert not torch.equal(model.state_dict()["prep.0.weight"], initial["prep.0.weight"])


@pytest.mark.parametrize("extra", [["precision=fp32"], ["precision=bf16"],
                                   ["precision=bf16", "compile=true"]])
def test_graph_run_agrees_with_an_eager_run(make_cfg, extra):
    eager = train(make_cfg("device=cuda", "epochs=3", "lr=8", "cuda_graphs=false", *extra[:1]))
    graphed = train(make_cfg("device=cuda", "epochs=3", "lr=8", "cuda_graphs=true", *extra))
    assert graphed.info["cuda_graphs"] and not eager.info["cuda_graphs"]
    assert graphed.info["compile_s"] > 0 and eager.info["compile_s"] == 0
    assert graphed.final["test_loss"] < 0.8 * graphed.history[0]["train_loss"]  # it learned
    for a, b in zip(eager.history, graphed.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=0.05)


def test_graph_run_resumes_from_a_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg("device=cuda", "epochs=3", "lr=8", "cuda_graphs=true")
    reference = train(cfg)
    path = tmp_path / "checkpoint.pt"
    calls = iter(range(1000))  # 10 steps per epoch: stop at epoch 2, batch 3
    with pytest.raises(Preempted):
        train(cfg, checkpoint=Checkpoint(path, "h", stop=lambda: next(calls) >= 13))
    resumed = train(cfg, checkpoint=Checkpoint(path, "h"))
    assert resumed.info["resumes"] == 1 and len(resumed.history) == 3
    for a, b in zip(reference.history, resumed.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=0.05)
