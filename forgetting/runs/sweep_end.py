"""The end of a sweep (Hydra's `on_multirun_end`, the `results_table` callback in
conf/config.yaml): the sweep's tables updated, its pivot printed, its failures reported, the
trackers' parent run logged."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from forgetting import tables
from forgetting.core.errors import UserError
from forgetting.rundir import folders
from forgetting.runs import tracking

_failed_runs = 0  # failed runs in the table of this process's last sweep


def sweep_failures() -> int:
    """How many runs of this process's last sweep failed (forgetting.run then exits 1)."""
    return _failed_runs


class ResultsTable(Callback):
    """Hydra callback: at the end of a multirun, build the sweep's table and print the pivot.

    Failed runs are reported (one line per reason) and counted, not raised: the callbacks
    after this one still run (the sweep's report), and forgetting.run exits with code 1.
    """

    def on_multirun_end(self, config, **kwargs) -> None:
        global _failed_runs

        if str(config.hydra.launcher.get("_target_", "")).endswith(".ArrayLauncher"):
            return  # an array task: its launcher rebuilt the table and reports its own point
        folder = Path(config.hydra.sweep.dir)
        try:
            results, swept = tables.update(folder)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        counts = results["status"].value_counts().to_dict()
        print(f"\n{len(results)} runs ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
              f"table: {folder / folders.RESULTS}")
        table = tables.pivot(results, swept)
        print(table)
        tracking.log_sweep(config, folder, results, table)  # the trackers' parent run
        _failed_runs = tables.report_failures(results)
