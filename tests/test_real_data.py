"""A smoke run on the offline CIFAR-10 copy beside the project (skipped when absent)."""

import json

import pytest

from helpers import CIFAR_JPG, run_cli

# the cifar10 group: the worker that decoded the copy for tests/test_data.py reads its cache
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cifar10"),
              pytest.mark.skipif(not CIFAR_JPG.is_dir(), reason="offline CIFAR-10 copy absent")]


def test_resnet9_learns_on_real_cifar10(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("data=cifar10", f"data.root={CIFAR_JPG}", "model.width=0.25",
                   "subset=0.04", "epochs=2", "batch_size=100", "lr=2", "device=cpu",
                   f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["train_size"] == 2000 and metrics["test_size"] == 10000
    assert metrics["source"] == str(CIFAR_JPG.resolve())
    assert metrics["test_acc"] > 0.2  # chance is 0.1
    assert "epoch 2/2" in proc.stderr + proc.stdout
