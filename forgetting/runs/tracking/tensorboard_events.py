"""TensorBoard: one event folder per run, written with torch.utils.tensorboard.

Where: `SWEEP/tensorboard/N` for the run in folder `SWEEP/N` (so `tensorboard --logdir
SWEEP/tensorboard` shows the points of a sweep side by side, named by their folders), and
`RUN/tensorboard` for a single run. What: every numeric history column as a scalar per epoch
(`step` = epoch, wall time = when that epoch ended; NaN entries left out), metrics.json's
numbers as `final/NAME` at the last epoch, and the HParams plugin's summaries (the table's
config columns and the swept keys, plus `status`; metrics `final/…`), written into the run's own
folder, so that TensorBoard's HParams view compares the points of a sweep.

The folder is written whole into a temporary folder and renamed into place: a run trained again
(force=true) replaces it, and the sweep's end writes only the folders that are missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from forgetting.runs.tracking.record import Tracked, numbers

FOLDER = "tensorboard"
FINAL = "final/"


def event_folder(run: Tracked) -> Path:
    if run.sweep_dir is None:
        return run.run_dir / FOLDER
    return run.sweep_dir / FOLDER / run.run_dir.name


def hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write(run: Tracked) -> Path:
    """Write (or replace) the run's event folder; its path."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    target = event_folder(run)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    writer = SummaryWriter(log_dir=str(tmp))
    try:
        _write_events(writer, run, hparams)
    except BaseException:
        writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    writer.close()
    old = target.parent / f".{target.name}.{os.getpid()}.old"
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _write_events(writer, run: Tracked, hparams) -> None:
    """The scalars per epoch, the HParams summaries and the final numbers."""
    for row in run.history:
        at, step = run.epoch_time(row), int(row["epoch"])
        for name, value in numbers(row, skip=("epoch",)).items():
            writer.add_scalar(name, value, global_step=step, walltime=at)
    step = int(run.history[-1]["epoch"]) if run.history else 0
    final = {FINAL + k: v for k, v in
             numbers(run.metrics, skip=("trial", "config_hash")).items()}
    hp = {k: hparam_value(v) for k, v in run.hparams.items() if v is not None}
    hp["status"] = str(run.metrics.get("status"))
    for summary in hparams(hp, final):
        writer.file_writer.add_summary(summary, walltime=run.end_time)
    for name, value in final.items():
        writer.add_scalar(name, value, global_step=step, walltime=run.end_time)


def write_missing(runs: list[Tracked]) -> int:
    """Write the event folders of `runs` that have none; how many were written."""
    missing = [r for r in runs if not event_folder(r).is_dir()]
    for run in missing:
        write(run)
    return len(missing)
