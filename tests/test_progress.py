"""A sweep's progress (forgetting/runs/progress.py): `[k/N] done …` after each point (basic and
joblib launchers), its ETA from the points' own rate, and the callback's life in a job (a run's
own line: tests/test_run_line.py)."""

from __future__ import annotations

import io
import json
import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from test_run_line import RUN_LINE

from forgetting.runs import progress, run_line
from forgetting.runs.configs import CONFIG_DIR, register_configs
from helpers import TINY, run_cli

LINE = re.compile(r"^\[(\d+)/(\d+)\] done: (\d+) ok, (\d+) diverged, (\d+) failed(.*); "
                  r"elapsed (\S+), ETA (\S+)$")


def sweep_config(*command_line: str, sweeper: str | None = None, params: dict | None = None):
    """The primary config a sweep's callbacks get: the command line's overrides in
    hydra.overrides.task (compose alone refuses sweeps), the sweeper and its params."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/sweeper={sweeper}"] if sweeper else [],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.overrides.task = list(command_line)
        if params is not None:
            cfg.hydra.sweeper.params = params
    return cfg


def test_the_line_counts_outcomes_and_estimates_what_is_left():
    counts = {"start": 100.0, "total": 12, "trained": 3, "busy": 90.0,
              "counts": {"ok": 2, "diverged": 1, "skipped": 2}}
    assert progress.progress_line(counts, now=190.0) == \
        "[5/12] done: 2 ok, 1 diverged, 0 failed, 2 skipped; elapsed 1m30s, ETA 3m30s"
    counts.update(total=None)  # another sweeper: no N, no ETA
    assert progress.progress_line(counts, now=112.0) == \
        "[5] done: 2 ok, 1 diverged, 0 failed, 2 skipped; elapsed 12s"
    counts.update(total=5, trained=0)
    assert progress.progress_line(counts, now=112.0).endswith("ETA 0s")
    counts.update(total=9, busy=0.0)  # only skipped so far: no rate to go by
    assert progress.progress_line(counts, now=112.0).endswith("ETA after the first point")
    assert [progress.duration(s) for s in (0, 59.6, 61, 3600 + 7 * 60 + 5)] == \
        ["0s", "1m00s", "1m01s", "1h07m"]


def test_the_sweep_size_is_the_basic_sweepers_grid():
    def size(*args, **kwargs):
        return progress.sweep_size(sweep_config(*args, **kwargs))[0]

    assert size("lr=1,2,4", "subset=0.5,1", "seed=0") == 6
    assert size("lr=range(1,5)", "lr=1,2") == 2  # last one wins
    assert size("subset=0.5,1", params={"lr": "1,2,4"}) == 6
    assert size("lr=1") == 1
    assert progress.sweep_size(sweep_config("lr=1,2", sweeper="optuna_study")) == (None, None)


def test_a_sweeps_work_is_its_points_passes_times_width_squared():
    """epochs x subset per point under budget=epochs (epochs under budget=steps), x width²."""
    epochs = sweep_config().epochs
    _, work = progress.sweep_size(sweep_config("lr=1,2", "subset=0.025,0.05,0.1"))
    assert work == pytest.approx(2 * epochs * (0.025 + 0.05 + 0.1))
    _, work = progress.sweep_size(sweep_config("subset=0.5,1", "budget=steps", "epochs=3"))
    assert work == pytest.approx(2 * 3)
    _, work = progress.sweep_size(sweep_config("model.width=0.5,1", "subset=0.5", "epochs=4"))
    assert work == pytest.approx(4 * 0.5 * (0.25 + 1))
    values = {"epochs": 4, "model.width": None, "budget": "epochs", "subset": "${lr}"}
    assert progress.point_work(values.get) is None  # a size that is no number: points alike
    assert progress.point_work({**values, "subset": "0.5"}.get) == 2.0


def test_the_eta_goes_by_the_work_left_not_the_points_left():
    """A grid's first points are its smallest (subset 0.025 before 0.05 before 0.1): the ETA
    after the first is its rate per unit of work times the work left, which the next points
    confirm rather than push up."""
    works = [0.025, 0.05, 0.1] * 4
    counts = {"start": 0.0, "total": 12, "trained": 0, "busy": 0.0, "workers": 1,
              "counts": {}, "work": sum(works), "work_done": 0.0, "work_trained": 0.0}
    etas = []
    for k, work in enumerate(works[:3]):
        progress.add_outcome(counts, "ok", 400.0 * work, work)  # 400 s per unit of work
        etas.append(progress.eta_seconds(counts, left=11 - k))
    assert etas == pytest.approx([400.0 * (sum(works) - sum(works[:k + 1]))
                                  for k in range(3)])
    assert etas[0] > etas[1] > etas[2]  # it falls as the points end
    progress.add_outcome(counts, "skipped", None, 0.025)  # skipped: its work is done, no time
    assert progress.eta_seconds(counts, left=8) == pytest.approx(
        400.0 * (sum(works) - sum(works[:4])))
    progress.add_outcome(counts, "ok", 9.0)  # a point of unknown size: points count alike
    assert counts["work"] is None
    assert progress.eta_seconds(counts, left=7) == pytest.approx(counts["busy"] / 4 * 7)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_a_sweep_says_where_it_is_after_each_point(tmp_path, launcher):
    args = ["-m", *TINY, "epochs=1", "lr=1,2,1e9", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            *launcher]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [LINE.match(ln) for ln in proc.stdout.splitlines() if ln.startswith("[")]
    lines = [m for m in lines if m]
    assert sorted(int(m[1]) for m in lines) == [1, 2, 3]  # one line per point
    assert all(m[2] == "3" for m in lines)
    last = max(lines, key=lambda m: int(m[1]))
    assert last.group(3, 4, 5) == ("2", "1", "0") and last[6] == "" and last[8] == "0s"
    assert not list((tmp_path / "sweep" / ".progress").glob("*.json"))  # cleaned up
    runs = [RUN_LINE.match(ln) for ln in proc.stdout.splitlines() if ln.startswith("  #")]
    assert all(runs) and sorted(m[1] for m in runs) == \
        ["#0 lr=1: ", "#1 lr=2: ", "#2 lr=1000000000.0: "]  # as Hydra's `#2 :` line says
    assert all(m.group(2, 3) == ("1", "1") for m in runs)  # quiet: one line per epoch

    again = run_cli(*args)  # a rerun: every point finished before, skipped
    assert again.returncode == 0, again.stderr[-3000:]
    final = [ln for ln in again.stdout.splitlines() if ln.startswith("[3/3]")]
    assert final and final[0].startswith("[3/3] done: 0 ok, 0 diverged, 0 failed, 3 skipped;")
    assert final[0].endswith("ETA 0s") and "  #" not in again.stdout  # nothing trained
    first = [ln for ln in again.stdout.splitlines() if ln.startswith("[1/3]")]
    assert first[0].endswith("ETA after the first point")


def test_the_eta_divides_the_points_left_among_parallel_workers():
    """joblib with 2 workers: 2 points of 10 s each done 10 s after the start, 2 left: ETA
    10 s, not the 20 s a sequential launcher would need."""
    counts = {"start": 100.0, "total": 4, "trained": 2, "busy": 20.0, "workers": 2,
              "counts": {"ok": 2}}
    assert progress.progress_line(counts, now=110.0).endswith("elapsed 10s, ETA 10s")
    counts.update(workers=1)
    assert progress.progress_line(counts, now=110.0).endswith("ETA 20s")
    counts.update(workers=8, total=3)  # more workers than points left: one point's time
    assert progress.progress_line(counts, now=110.0).endswith("ETA 10s")


def test_a_sweep_refused_before_its_points_leaves_no_progress_file(tmp_path):
    """The counts file is created by the first point that ends, not when the sweep starts."""
    callback = progress.Progress()
    config = sweep_config("lr=1,2")
    with open_dict(config):
        config.hydra.sweep.dir = str(tmp_path / "sweep")
    callback.on_multirun_start(config)
    assert callback.state is not None and not (tmp_path / "sweep").exists()
    line = progress.count_point(callback.state, "ok", 3.0, callback.initial)
    assert line.startswith("[1/") and callback.state.is_file()
    assert json.loads(callback.state.read_text())["busy"] == 3.0


def test_the_eta_after_the_first_point_is_its_time_times_the_points_left_per_worker():
    """Measured from the trained points' own jobs, not from the sweep's elapsed time (which
    holds its start-up and the skipped points); before one was trained, no number."""
    counts = {"start": 0.0, "total": 12, "trained": 0, "busy": 0.0, "workers": 2,
              "counts": {"skipped": 2}}
    assert progress.progress_line(counts, now=100.0).endswith(
        "elapsed 1m40s, ETA after the first point")
    progress.add_outcome(counts, "ok", 10.0)  # the first trained point: 10 s of its job
    assert progress.eta_seconds(counts, left=9) == 10.0 * 9 / 2
    assert progress.progress_line(counts, now=130.0).endswith("elapsed 2m10s, ETA 45s")
    counts.pop("busy")  # no job times (a counts file of an older version): no number either
    assert progress.progress_line(counts, now=130.0).endswith("ETA after the first point")


def test_the_swept_keys_name_a_points_line():
    assert progress.swept_keys(sweep_config("lr=1,2", "subset=0.5", "seed=range(0,3)",
                                            params={"epochs": "1,2"})) == ["epochs", "lr", "seed"]
    assert progress.swept_keys(sweep_config("lr=1")) == []


def test_the_callback_pickles_while_a_run_shows_its_line():
    """submitit pickles a job with its callbacks when it starts it and again when it requeues
    a preempted one: the run's line (a stream, a generator's context) is left out."""
    import pickle
    from contextlib import ExitStack

    callback = progress.Progress()
    callback.swept = ["lr"]
    callback.stack = ExitStack()
    callback.stack.enter_context(run_line.listening(run_line.RunLine(io.StringIO(), "#0")))
    try:
        copy = pickle.loads(pickle.dumps(callback))
    finally:
        callback.stack.close()
    assert copy.stack is None and copy.swept == ["lr"]
