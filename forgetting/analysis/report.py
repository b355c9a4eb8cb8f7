"""One self-contained page per sweep: `report.html` in the sweep folder.

    python -m forgetting.report DIR [DIR ...] [--out FILE]

and at the end of every sweep unless `report=false` (forgetting/analysis/sweep_report.py). The
page holds, from the sweep's tables only: the verdict of each batch size with every
precondition it checked and the figure it rests on, the measured-curvature section, the probe,
every other figure (embedded PNG, with alt text), the pivot of test loss, the full table with
links to the run folders (relative paths), the command and its overrides, and provenance (git
commit, package versions, device, precision, threads, as the runs recorded them). It loads
nothing from elsewhere (forgetting/analysis/report_html.py), so the file alone can be shared.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from forgetting.analysis import figure
from forgetting.analysis import report_html as h
from forgetting.analysis.analyze import Thresholds, analyze_tables
from forgetting.analysis.curvature import model_name
from forgetting.analysis.plot import plot_tables
from forgetting.analysis.text import render
from forgetting.core.config import COLUMNS
from forgetting.core.metrics import OK

if TYPE_CHECKING:
    import pandas as pd

REPORT = "report.html"
# every figure forgetting.plot may draw, and what it shows (the image's alt text)
ALT = {
    "lr_subset.png": "Final train and test loss against the LR factor, one colour per subset "
                     "size, one row per batch size; crosses: diverged runs",
    "test_loss_per_epoch.png": "Test loss per epoch, one panel per LR factor, one colour per "
                               "dataset; mean over seeds with a min-max band",
    "sharpness.png": "Sharpness eta_eff (lambda_max + wd) per epoch against the stability "
                     "edge, one colour per LR factor, one panel per batch size",
    "noise_scale.png": "Gradient noise scale B_simple per epoch against the batch size, one "
                       "colour per LR factor",
    "recency.png": "Forgetting probe: the loss of the final model on each recently seen batch "
                   "against steps ago, with the test loss",
    "recency_evolution.png": "Forgetting probe at each probed epoch, one colour per epoch",
    "recency_examples.png": "Forgetting probe against examples since the batch was fed, a "
                            "colour per batch size, mean over seeds",
    "critical_batch.png": "Steps to the target loss against batch size, the fit, B_crit and "
                          "B_simple",
    "mechanism.png": "Above the edge step by step: each step's update along the top "
                     "eigenvector and the fixed batch's loss, per run; per measurement the "
                     "sharpness ratio, |w|^2 and lambda_max |w|^2",
    "recipes.png": "Final test accuracy of each run per recipe, with the target accuracy",
}
# what metrics.json records about where and how a run ran
PROVENANCE = ("git_commit", "git_dirty", "forgetting", "torch", "hydra", "python", "host",
              "device", "device_name", "precision", "threads", "torch_threads", "cpu_model")
SAMPLE = 200  # run folders read for provenance at most (evenly chosen)
MAX_ROWS = 5000  # rows of the full table on the page at most (results.csv has all)
# the full table's first columns: how each run ended and what it measured
OUTCOME = ("status", "test_loss", "train_loss", "test_acc", "train_acc", "error")


def verdict_section(report: dict, figures: dict) -> str:
    parts = []
    for entry in report.get("lr_subset", []):
        parts.append(f"<h3>batch {entry['batch_size']}</h3>")
        parts.append(h.para(f"verdict: {entry['verdict']}", "verdict"))
        parts.append(h.para(f"loss shape: {entry['loss_shape']} ({entry['loss_shape_why']})"))
        items = [f"<li class=\"{'ok' if c['ok'] else 'fails'}\">[{'ok' if c['ok'] else 'fails'}]"
                 f" {h.esc(c['check'])}: {h.esc(c['text'])}</li>" for c in entry["checks"]]
        parts.append("<p>preconditions:</p><ul>" + "".join(items) + "</ul>")
        if "noise" in entry:
            parts.append(h.para(entry["noise"]["text"]))
    if not report.get("lr_subset"):
        why = report.get("no_verdict", "no runs")
        parts.append(h.para(f"verdict: none ({why})", "verdict"))
    if "lr_subset.png" in figures:
        parts.append(figures.pop("lr_subset.png"))
    parts.append("<details><summary>the verdict as text, with every threshold</summary>"
                 + h.pre(render(report)) + "</details>")
    return h.section("Verdict", "verdict", parts)


def curvature_section(report: dict, figures: dict) -> str | None:
    entries = report.get("curvature") or []
    shown = [figures.pop(n) for n in ("sharpness.png", "noise_scale.png") if n in figures]
    if not entries and not shown:
        return None
    parts = []
    for e in entries:
        parts.append(h.para(f"{model_name(e)} (subset {e['subset']:g}): {e['reading']}"))
        parts.append(h.table(["LR factor", "train loss", "test loss", "max sharpness ratio",
                              "B_simple"],
                             [[r["lr"], r["train_loss"], r["test_loss"],
                               r["max_sharpness_ratio"], r["noise_scale_run"]]
                              for r in e["factors"]]))
    return h.section("Measured curvature", "curvature", parts + shown)


def probe_section(report: dict, figures: dict, here: Path) -> str | None:
    shown = [figures.pop(n) for n in ("recency.png", "recency_evolution.png") if n in figures]
    if not report.get("probe") and not shown:
        return None
    columns = ["run_dir", "lr", "subset", "test_loss", "recent_loss", "oldest_loss",
               "steps_to_test_level", "epochs_to_test_level"]
    rows = [[os.path.relpath(p["run_dir"], here), *(p.get(c) for c in columns[1:])]
            for p in report.get("probe", [])]
    return h.section("Forgetting probe", "probe", [h.table(columns, rows)] + shown)


def pivot(results: pd.DataFrame) -> str:
    """Mean test loss of the ok runs (seeds averaged) by every varying config column (rows)
    and LR factor (columns); a cell without an ok run shows the runs' statuses, `*` marks a
    cell where some runs were not ok. Nothing else is averaged over."""
    if results.empty or "lr" not in results:
        return h.para("(no LR factor in the table)")
    candidates = [c for c in COLUMNS if c not in ("lr", "seed")] + ["recipe"]
    keys = [k for k in ("batch_size", "subset") if k in results] + [
        k for k in figure.varying(results, candidates) if k not in ("batch_size", "subset")]
    # text columns (a missing value among them) compare as text; numbers sort as numbers
    frame = results.assign(**{k: results[k].astype(str) for k in keys
                              if results[k].dtype == object})
    groups = frame.groupby([*keys, "lr"], dropna=False)
    ok = frame[frame["status"] == OK].groupby([*keys, "lr"], dropna=False)["test_loss"]
    table = groups.size().to_frame("n").join(ok.mean().rename("mean")).join(
        ok.size().rename("ok")).join(groups["status"].agg(lambda s: "/".join(sorted(set(s)))))
    text = table["mean"].map(lambda v: f"{v:.4f}") + (table["ok"] < table["n"]).map(
        {True: "*", False: ""})
    table["cell"] = text.where(table["mean"].notna(), table["status"])
    wide = table["cell"].unstack("lr")
    columns = [*keys, *[f"lr {v:g}" for v in wide.columns]]
    rows = [[*(index if isinstance(index, tuple) else (index,)), *values]
            for index, values in zip(wide.index, wide.itertuples(index=False))]
    return (h.para("mean test loss (nats per example) of the ok runs over seeds; * = some runs "
                   "in the cell were not ok") + h.table(columns, rows))


def column_order(results: pd.DataFrame) -> list[str]:
    """The full table's columns as a reader scans them: the outcome and the losses first (an
    empty one, such as `error` where nothing failed, among the rest), then the link to the
    run folder, then the keys the sweep varies, then the rest."""
    first = [c for c in (*OUTCOME, "run_dir") if c in results and results[c].notna().any()]
    swept = [c for c in figure.varying(results, [*COLUMNS, "recipe"]) if c not in first]
    return first + swept + [c for c in results.columns if c not in first and c not in swept]


def full_table(results: pd.DataFrame, here: Path) -> str:
    shown = results.head(MAX_ROWS)[column_order(results)]
    note = (h.para(f"the first {MAX_ROWS} of {len(results)} rows; results.csv has all")
            if len(results) > MAX_ROWS else "")
    if "run_dir" in shown:  # by its path relative to the page, so the folder can move
        shown = shown.assign(run_dir=[os.path.relpath(d, here).replace(os.sep, "/")
                                      for d in shown["run_dir"]])
    return note + h.table(list(shown.columns), shown.itertuples(index=False),
                          links={"run_dir": lambda d: d + "/"})


def rerun_command(folder: Path, saved: dict) -> str:
    """The command that reruns the sweep saved in `folder`'s multirun.yaml: its overrides,
    the hydra.* ones it was given (launcher, sweeper ...), and `hydra.sweep.dir` naming this
    folder, so the rerun lands here and resumes (finished points are skipped)."""
    overrides = saved["hydra"]["overrides"]
    task = [str(o) for o in overrides.get("task") or []]
    given = [str(o) for o in overrides.get("hydra") or []
             if not str(o).startswith(("hydra.mode=", "hydra.sweep.dir="))]
    where = f"hydra.sweep.dir={folder.resolve()}"
    return " ".join(["python -m forgetting.run -m",
                     *(shlex.quote(o) for o in [*task, *given, where])])


def command_section(dirs: list[Path], results: pd.DataFrame) -> str:
    import yaml

    parts = []
    for d in dirs:
        path = d / "multirun.yaml"
        try:
            saved = yaml.safe_load(path.read_text()) or {}
            command = rerun_command(d, saved)
        except (OSError, KeyError, TypeError, AttributeError, yaml.YAMLError):
            parts.append(h.para(f"{d}: no multirun.yaml (not written by a Hydra sweep)"))
            continue
        cwd = (saved["hydra"].get("runtime") or {}).get("cwd")
        where = f" (run from {cwd}: relative paths in it are read from there)" if cwd else ""
        parts.append(h.para(f"{d}{where}:") + h.pre(command))
    if "overrides" in results:
        counts = Counter(results["overrides"].dropna())
        parts.append(h.para(f"{len(counts)} distinct per-run overrides (the table's "
                            "`overrides` column)"))
    return h.section("Command", "command", parts)


def provenance(results: pd.DataFrame) -> dict[str, Counter]:
    """Each provenance field's values (with counts) over up to SAMPLE run folders."""
    dirs = list(results["run_dir"]) if "run_dir" in results else []
    dirs = figure.evenly(dirs, SAMPLE)
    seen: dict[str, Counter] = {k: Counter() for k in PROVENANCE}
    for d in dirs:
        try:
            metrics = json.loads((Path(d) / "metrics.json").read_text())
        except (OSError, ValueError):
            continue
        for key in PROVENANCE:
            if key in metrics:
                seen[key][str(metrics[key])] += 1
    return {k: v for k, v in seen.items() if v}


def provenance_section(results: pd.DataFrame) -> str:
    import matplotlib
    import pandas

    fields = provenance(results)
    rows = [[k, "; ".join(f"{v} ({n} runs)" if len(c) > 1 else v for v, n in c.most_common())]
            for k, c in fields.items()]
    mine = f"report made with pandas {pandas.__version__}, matplotlib {matplotlib.__version__}"
    read = min(len(results), SAMPLE)
    return h.section("Provenance", "provenance", [
        h.para(f"as recorded by the runs (metrics.json of {read} of {len(results)} runs)"),
        h.table(["field", "values"], rows, sortable=False), h.para(mine)])


def nav(sections: list[str]) -> str:
    """Links to the sections the page holds (and to no other)."""
    found = re.findall(r'^<section id="([^"]+)"><h2>([^<]+)</h2>', "\n".join(sections), re.M)
    return "<p>" + " · ".join(f"<a href=\"#{a}\">{t.lower()}</a>" for a, t in found) + "</p>"


def read_tables(folder: Path) -> tuple[pd.DataFrame, dict]:
    """The tables a sweep's end wrote into its folder (forgetting/tables/results.py)."""
    import pandas as pd

    from forgetting.rundir import folders

    tables = {}
    for name, file in (("history", folders.HISTORY), ("recency", folders.RECENCY)):
        path = folder / file
        tables[name] = pd.read_parquet(path) if path.exists() else pd.DataFrame()  # parts
    return pd.read_parquet(folder / folders.RESULTS), tables


def build(dirs: list[Path], out: Path, th: Thresholds | None = None,
          tables: tuple[pd.DataFrame, dict] | None = None) -> Path:
    """Write the report of the runs under `dirs` (or of the given (results, per-run tables))
    to `out`, its figures into figures/ beside it; return its path."""
    from forgetting.tables import read as build_tables

    th = th or Thresholds()
    results, tables = tables if tables is not None else build_tables(dirs)[:2]
    report = analyze_tables(results, tables, th, dirs)
    written = plot_tables(results, tables, out.parent / "figures", th.bin, th.target_acc)
    figures = {p.name: h.image(p, ALT.get(p.name, p.stem)) for p in written}
    status = ", ".join(f"{v} {k}" for k, v in report.get("status", {}).items())
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{h.esc(dirs[0].resolve().name)}: sweep report</h1>",
            h.para(f"{len(results)} runs ({status}) under {', '.join(map(str, dirs))}; "
                   f"made {when}"),
            verdict_section(report, figures)]
    body += [s for s in (curvature_section(report, figures),
                         probe_section(report, figures, out.parent)) if s]
    if figures:
        body.append(h.section("Other figures", "figures", list(figures.values())))
    body += [h.section("Pivot", "pivot", [pivot(results)]),
             h.section("All runs", "table", [full_table(results, out.parent)]),
             command_section(dirs, results), provenance_section(results)]
    body.insert(2, nav(body))
    from forgetting.core.files import atomic_write_text

    atomic_write_text(out, h.page(f"{dirs[0].resolve().name}: sweep report", body))
    return out
