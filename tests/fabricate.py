"""Sweep tables fabricated with numpy (no run folders): an LR x subset x batch grid with seeds,
its per-epoch history (with diagnostics) and probe rows, with known answers: the optimal LR
factor is 1 on the full set and 4 on the quarter set at batch 128, runs diverge from factor 16
(batch 128) or 4 (batch 512), and epoch 1's test loss is a spike 30x the final one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

GRID = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
SUBSETS = [0.25, 0.5, 1.0]
EPOCHS = 4
PROBE_STEPS = 20


def best_lr(subset: np.ndarray) -> np.ndarray:
    return 2.0 ** (2 * (1 - subset) / 0.75)  # 1 on the full set, 4 on a quarter


def sweep(seeds: int = 2, subsets=SUBSETS, sizes=(128, 512), probe_runs: int = 6):
    """(results, {"history", "recency"}) of len(GRID) x len(subsets) x len(sizes) x seeds runs."""
    lr, subset, batch, seed = (a.ravel() for a in np.meshgrid(
        GRID, subsets, sizes, range(seeds), indexing="ij"))
    n = len(lr)
    edge = np.where(batch == 128, 16.0, 4.0)
    diverged = lr >= edge
    noise = (seed % 7) * 0.002
    test = 1.0 + 0.1 * (np.log2(lr) - np.log2(best_lr(subset))) ** 2 + noise
    train = 0.05 * lr * subset
    results = pd.DataFrame({
        "lr": lr, "subset": subset, "batch_size": batch, "seed": seed,
        "status": np.where(diverged, "diverged", "ok"),
        "train_loss": np.where(diverged, np.nan, train),
        "clean_train_loss": np.where(diverged, np.nan, train),
        "test_loss": np.where(diverged, np.nan, test), "test_acc": 0.8,
        "steps": 1000, "budget": "steps", "augment": True, "recipe": "part1",
        "target_acc": 0.94, "run_dir": [f"/sweep/{k}" for k in range(n)],
        "max_sharpness_ratio": lr / edge, "stability_edge": 1.357,
        "noise_scale": 2000.0, "error": None})
    epoch = np.tile(np.arange(1, EPOCHS + 1), n)
    run = np.repeat(np.arange(n), EPOCHS)
    last = epoch == EPOCHS
    spike = np.where(epoch == 1, 30.0, 1.0 + 0.1 * (EPOCHS - epoch))
    ratio = np.repeat(lr / edge, EPOCHS) * (0.5 + epoch / (2 * EPOCHS))
    noise_scale = np.where(epoch == 2, np.nan, 100.0 * epoch * np.repeat(np.log2(lr) + 4, EPOCHS))
    history = pd.DataFrame({
        "lr": lr[run], "subset": subset[run], "batch_size": batch[run], "seed": seed[run],
        "run_dir": results["run_dir"].to_numpy()[run], "epoch": epoch,
        "train_loss": np.repeat(train, EPOCHS) * spike,
        "test_loss": np.where(diverged[run] & last, np.nan, np.repeat(test, EPOCHS) * spike),
        "eta_eff": 0.1, "sharpness_ratio": ratio, "sharpness": ratio * 13.57,
        "sharpness_note": None, "noise_scale": noise_scale, "noise_measurements": 4})
    ok = np.flatnonzero(~diverged)
    picked = ok[np.linspace(0, len(ok) - 1, min(probe_runs, len(ok))).round().astype(int)]
    steps = np.arange(PROBE_STEPS - 1, -1, -1)
    probe = pd.DataFrame({
        "run_dir": np.repeat(results["run_dir"].to_numpy()[picked], PROBE_STEPS),
        "lr": np.repeat(lr[picked], PROBE_STEPS), "subset": np.repeat(subset[picked],
                                                                       PROBE_STEPS),
        "seed": np.repeat(seed[picked], PROBE_STEPS), "probe_epoch": EPOCHS,
        "steps_ago": np.tile(steps, len(picked)),
        "epochs_ago": np.tile(steps, len(picked)) / 10, "accuracy": 0.8,
        "loss": 0.2 + 0.05 * np.tile(steps, len(picked)),
        "test_loss": np.repeat(test[picked], PROBE_STEPS)})
    return results, {"history": history, "recency": probe}


def expected_optimum(subset: float) -> float:
    return float(best_lr(np.array([subset]))[0]) if math.isfinite(subset) else math.nan
