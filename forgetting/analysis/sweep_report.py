"""Hydra callback: write the sweep's report.html at its end (unless `report=false`).

Hydra calls `on_multirun_end` callbacks in reverse order of `hydra.callbacks`, so this one is
listed before `results_table` in conf/config.yaml and runs after it: it reads the tables that
callback has just written instead of rebuilding them. An array task writes no report (each
task ends a sweep of one point; `python -m forgetting.report DIR` after the array does), and a
report that cannot be written is one warning line, never a failed sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from forgetting.rundir import folders


class SweepReport(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        if not config.get("report", True):
            return
        if str(config.hydra.launcher.get("_target_", "")).endswith(".ArrayLauncher"):
            return
        folder = Path(config.hydra.sweep.dir)
        if not (folder / folders.RESULTS).is_file():
            return  # no run folders: no table, nothing to report
        from forgetting.analysis.report import REPORT, build, read_tables

        try:
            path = build([folder], folder / REPORT, tables=read_tables(folder))
        except Exception as e:  # the sweep's results are on disk whatever happens here
            print(f"warning: {folder / REPORT} not written ({type(e).__name__}: {e}); "
                  f"python -m forgetting.report {folder} retries", file=sys.stderr)
            return
        print(f"report: {path}")
