"""The sweeps `python -m forgetting.bench --scale` measures: N finished run folders made from one
real tiny run (forgetting/bench/scale.py), and the changes it times: a point rewritten by a run
(in the change feed) or by hand, and as many points pending as an array task may leave.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GRID_LR = [0.25, 0.5, 1, 2, 4, 8, 16, 32]
GRID_SUBSET = [0.025, 0.05, 0.1, 0.25, 1.0]
TINY = ["data=synthetic", "model=tiny", "model.width=0.25", "device=cpu", "precision=fp32",
        "batch_size=64", "epochs=2", "data.train_size=640", "data.test_size=200", "quiet=true",
        "threads=1"]

def template_run(folder: Path) -> Path:
    """One real tiny training run in `folder`."""
    from forgetting.bench.runs import _env

    cmd = [sys.executable, "-m", "forgetting.run", *TINY, f"hydra.run.dir='{folder}'"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("template run failed: " + " ".join(cmd) + "\n" + proc.stderr[-2000:])
    return folder


def fabricate(template: Path, sweep: Path, n: int, epochs: int) -> None:
    """`n` finished run folders 0..n-1 in `sweep`, each a distinct config made from `template`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metrics = json.loads((template / "metrics.json").read_text())
    hydra = {name: (template / ".hydra" / name).read_bytes()
             for name in ("config.yaml", "hydra.yaml")}
    rows = pq.read_table(template / "history.parquet").to_pylist()
    history = [{**rows[i % len(rows)], "epoch": i + 1} for i in range(epochs)]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(history), sink)
    history_bytes = sink.getvalue().to_pybytes()
    per_seed = len(GRID_LR) * len(GRID_SUBSET)
    for i in range(n):
        lr, subset = GRID_LR[i % len(GRID_LR)], GRID_SUBSET[(i // len(GRID_LR)) % 5]
        seed = i // per_seed
        run = sweep / str(i)
        (run / ".hydra").mkdir(parents=True)
        config = {**metrics["config"], "lr": lr, "subset": subset, "seed": seed}
        point = {**metrics, "config": config, "config_hash": f"{i:016x}",
                 "test_loss": metrics["test_loss"] * (1 + 0.01 * (i % 7))}
        (run / "metrics.json").write_text(json.dumps(point))
        (run / "history.parquet").write_bytes(history_bytes)
        for name, data in hydra.items():
            (run / ".hydra" / name).write_bytes(data)
        (run / ".hydra" / "overrides.yaml").write_text(
            f"- lr={lr}\n- subset={subset}\n- seed={seed}\n")


def rewrite(run: Path, announce: bool = True) -> None:
    """A new metrics.json for one point (written atomically, and added to the change feed of
    the tables above it, as a run does; not added when not `announce`: an edit by hand)."""
    from forgetting.core.files import atomic_write_text
    from forgetting.tables import announce as feed

    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test_loss"] = metrics["test_loss"] * 1.5
    atomic_write_text(run / "metrics.json", json.dumps(metrics))
    if announce:
        feed(run)


def leave_pending(sweep: Path, n: int) -> int:
    """Rewrite points until as many are pending as an array task may leave (or all n), the
    last one (n // 4) for the measured task to add; how many its update will merge."""
    from forgetting.tables import DEFER_MIN, DEFER_SHARE, add_pending, pending

    k = min(n, max(DEFER_MIN, n // DEFER_SHARE))
    waiting = set(pending(sweep))
    for i in range(n):
        if len(waiting) >= k - 1:
            break
        if str(i) not in waiting and i != n // 4:
            rewrite(sweep / str(i))
            add_pending(sweep, sweep / str(i))
            waiting.add(str(i))
    rewrite(sweep / str(n // 4))
    return len(waiting) + 1
