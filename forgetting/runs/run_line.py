"""What one run shows while it trains, fed by core/train.py's progress records (the logger
`forgetting.progress`: one record per epoch, a heartbeat within a long epoch); the `progress`
callback (runs/progress.py) attaches one of these to each run:

- `EpochBar`: a tqdm bar over the epochs (a single run on a terminal, `quiet=false`), the full
  per-epoch log lines printed above it.
- `RunLine`, everywhere else. With `quiet=true`, one short line per epoch,
  `  #3 lr=2 subset=0.05: epoch 2/4, 6.1 s/epoch, train_loss 1.834, test_loss 1.912, test_acc 0.312`
  (`#3`: the sweep's job number, then the point's swept values; nothing before `epoch` in a
  single run), and within an epoch longer than train.HEARTBEAT_S (30 s) a heartbeat at most
  every 30 s, `  #3 lr=2 subset=0.05: epoch 3 of 4, step 120/390, 31 s in`. On a terminal it
  is one line rewritten in place (ended when the run ends), elsewhere (a file, a pipe, a batch
  log) a line each. With `quiet=false` the full log line of each epoch is printed already:
  only the heartbeats, a line each.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

METRICS = ("train_loss", "test_loss", "test_acc")
CLEAR_TO_END = "\x1b[K"  # a terminal's erase-to-end-of-line


@contextmanager
def listening(handler: logging.Handler) -> Iterator[logging.Handler]:
    """Feed core/train.py's progress records to `handler` (and to nothing else) while in the
    block; closed at its end."""
    from forgetting.core.train import PROGRESS_LOG  # torch: imported when a run starts

    level, propagate = PROGRESS_LOG.level, PROGRESS_LOG.propagate
    PROGRESS_LOG.setLevel(logging.DEBUG)
    PROGRESS_LOG.propagate = False
    PROGRESS_LOG.addHandler(handler)
    try:
        yield handler
    finally:
        PROGRESS_LOG.removeHandler(handler)
        PROGRESS_LOG.setLevel(level)
        PROGRESS_LOG.propagate = propagate
        handler.close()


class RunLine(logging.Handler):
    """Where a run is, as short lines on `stream` (see the module's docstring). `label`
    starts each line; `epochs`: a line per epoch (quiet=true), else heartbeats only;
    `in_place`: one line rewritten with a carriage return (a terminal)."""

    def __init__(self, stream, label: str = "", epochs: bool = True,
                 in_place: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self.stream, self.label = stream, label
        self.epochs, self.in_place = epochs, in_place
        self.open = False  # an in-place line is on the screen, not ended yet

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = describe(record, self.epochs)
            if text is None:
                return
            line = f"  {self.label}: {text}" if self.label else f"  {text}"
            if self.in_place:
                self.stream.write("\r" + line + CLEAR_TO_END)
                self.open = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:  # a progress line is a convenience: never stop a run for it
            self.handleError(record)

    def end_line(self) -> None:
        """End an in-place line, so that what follows starts on a line of its own."""
        if self.open:
            self.open = False
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.end_line()
        super().close()


class LineEnd(logging.Handler):
    """Ends `line` (in place) before the root logger's other handlers print a record."""

    def __init__(self, line: RunLine) -> None:
        super().__init__(logging.NOTSET)
        self.line = line

    def emit(self, record: logging.LogRecord) -> None:
        self.line.end_line()


@contextmanager
def ended_by_logs(line: RunLine) -> Iterator[RunLine]:
    """While in the block, a log line (Hydra's console handler, on the same stream) does not
    land at the end of the in-place `line`."""
    root = logging.getLogger()
    end = LineEnd(line)
    root.handlers.insert(0, end)  # before the console handler
    try:
        yield line
    finally:
        root.removeHandler(end)


def describe(record: logging.LogRecord, epochs: bool = True) -> str | None:
    """A progress record as the text of a line (None: not shown): an epoch's
    `epoch 2/4, 6.1 s/epoch, train_loss …` (when `epochs`), a heartbeat's
    `epoch 3 of 4, step 120/390, 31 s in`."""
    row = getattr(record, "epoch_row", None)
    if isinstance(row, dict):
        return epoch_text(row, getattr(record, "epochs", None)) if epochs else None
    steps = getattr(record, "steps", None)
    if steps is None:
        return None
    return (f"epoch {record.epoch} of {record.epochs}, step {steps[0]}/{steps[1]}, "
            f"{record.epoch_s:.0f} s in")


def epoch_text(row: dict, epochs: int | None) -> str:
    """`epoch 2/4, 6.1 s/epoch, train_loss 1.834, test_loss 1.912, test_acc 0.312`: the
    test set's numbers only when it was evaluated; a training loss that blew up as it is."""
    seconds = row["epoch_s"]
    digits = 2 if seconds < 1 else 1 if seconds < 100 else 0
    parts = [f"epoch {row['epoch']}/{epochs or '?'}", f"{seconds:.{digits}f} s/epoch",
             f"train_loss {row['train_loss']:.3f}"]
    parts += [f"{k} {row[k]:.3f}" for k in METRICS[1:]
              if isinstance(row.get(k), float) and math.isfinite(row[k])]
    return ", ".join(parts)


class EpochBar(logging.Handler):
    """A tqdm bar over one run's epochs, moved by the per-epoch progress records (which
    carry the history row as `epoch_row` and the run's number of epochs as `epochs`); a
    heartbeat shows its step in the bar's text."""

    def __init__(self, stream) -> None:
        from tqdm import tqdm

        super().__init__(logging.DEBUG)
        # from the run's start, so that the first epoch's time counts in the rate and ETA
        self.bar = tqdm(total=None, unit="epoch", desc="run", file=stream, dynamic_ncols=True)

    def __enter__(self) -> EpochBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def emit(self, record: logging.LogRecord) -> None:
        row = getattr(record, "epoch_row", None)
        steps = getattr(record, "steps", None)
        try:
            if self.bar is None:
                return
            if steps is not None:
                self.bar.set_postfix_str(f"step {steps[0]}/{steps[1]}")
                return
            if not isinstance(row, dict):
                return
            if self.bar.total is None:  # the first epoch of this process (of a resumed run)
                self.bar.total = getattr(record, "epochs", None)
                self.bar.n = self.bar.initial = row["epoch"] - 1
            self.bar.set_postfix_str(bar_postfix(row), refresh=False)
            self.bar.update(row["epoch"] - self.bar.n)
        except Exception:  # a bar is a convenience: the log line is printed anyway
            self.handleError(record)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        super().close()


def bar_postfix(row: dict) -> str:
    parts = [f"{k} {row[k]:.4f}" for k in METRICS
             if isinstance(row.get(k), float) and math.isfinite(row[k])]
    return "  ".join(parts)
