"""forgetting.report: one self-contained report.html per sweep (verdict with its preconditions,
embedded figures with alt text, pivot, full table with relative links, command, provenance),
its command line's errors (the page in a real browser: tests/test_report_browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fabricate
import pytest
from test_analyze import make_sweep, write_probe

from forgetting.analysis.report import ALT, build
from forgetting.report import main
from helpers import TINY, one_line_error, run_cli


def a_sweep(root: Path) -> Path:
    make_sweep(root, 128, {0.25: 4.0, 1.0: 1.0}, edge=8, ratio=lambda lr: 0.05 * lr,
               noise=900.0)
    write_probe(root / "0")
    (root / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - lr=0.125,0.25\n    - subset=0.25,1.0\n"
        "    - budget=steps\n")
    for run in root.glob("[0-9]*"):
        m = json.loads((run / "metrics.json").read_text())
        m.update(git_commit="abc123", torch="2.9", device="cpu", precision="fp32")
        (run / "metrics.json").write_text(json.dumps(m))
    return root


def test_the_report_holds_everything_and_loads_nothing(tmp_path):
    sweep = a_sweep(tmp_path / "sweep")
    page = build([sweep], sweep / "report.html").read_text()
    assert "verdict: forgetting-limited" in page
    for check in ("equal steps", "small subsets fit", "seeds", "measured sharpness"):
        assert f"[ok] {check}:" in page
    assert "Measured curvature" in page and "Forgetting probe" in page
    for name in ("lr_subset.png", "recency.png"):
        assert f'alt="{ALT[name]}"' in page
    assert page.count('src="data:image/png;base64,') == len(re.findall(r"<img ", page)) >= 2
    # nothing fetched: no URL, no file referenced but the run folders (relative links)
    assert not re.search(r"https?://", page) and "<link" not in page
    assert not re.search(r'src="(?!data:)', page)
    hrefs = set(re.findall(r'href="([^"#][^"]*)"', page))
    assert hrefs and all(not h.startswith("/") and (sweep / h).is_dir() for h in hrefs)
    assert ("python -m forgetting.run -m lr=0.125,0.25 subset=0.25,1.0 budget=steps "
            f"hydra.sweep.dir={sweep.resolve()}") in page
    assert "abc123" in page and "fp32" in page
    rows = re.search(r'id="table".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    assert rows.count("<tr>") == 32  # 2 seeds x 2 subsets x 8 factors


def test_the_pivot_never_averages_over_a_config_that_differs(tmp_path):
    sweep = a_sweep(tmp_path / "sweep")
    for run in list(sweep.glob("[0-9]*"))[:4]:  # four runs of another model width
        m = json.loads((run / "metrics.json").read_text())
        m["config"]["model"] = {"width": 0.5}
        (run / "metrics.json").write_text(json.dumps(m))
    page = build([sweep], sweep / "report.html").read_text()
    pivot = re.search(r'id="pivot".*?</section>', page, re.S).group(0)
    assert "<th>width</th>" in pivot


def test_cli_errors_are_one_line(tmp_path):
    one_line_error(run_cli(str(tmp_path / "missing"), module="forgetting.report"))
    one_line_error(run_cli(str(tmp_path), module="forgetting.report"))  # no runs
    sweep = a_sweep(tmp_path / "sweep")
    line = one_line_error(run_cli(str(sweep), "--out", str(tmp_path / "r.txt"),
                                  module="forgetting.report"))
    assert "--out=" in line and ".html" in line
    assert main([str(sweep)]) == 0 and (sweep / "report.html").is_file()


@pytest.mark.slow
def test_a_sweep_writes_its_report_unless_told_not_to(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("-m", *TINY, "epochs=1", "lr=0.5,2", "subset=0.5,1.0", "report=true",
                f"hydra.sweep.dir={sweep}")
    assert r.returncode == 0, r.stderr
    assert f"report: {sweep / 'report.html'}" in r.stdout
    page = (sweep / "report.html").read_text()
    assert "python -m forgetting.run -m" in page and "lr=0.5,2" in page
    off = tmp_path / "off"
    r = run_cli("-m", *TINY, "epochs=1", "lr=0.5,2", "report=false",
                f"hydra.sweep.dir={off}")
    assert r.returncode == 0, r.stderr
    assert (off / "results.parquet").is_file() and not (off / "report.html").exists()


def test_the_pivot_sorts_numbers_as_numbers(tmp_path):
    from forgetting.analysis.report import pivot

    results, _ = fabricate.sweep(seeds=1, subsets=[1.0], sizes=(64, 128))
    html = pivot(results)
    assert html.index("<td>64</td>") < html.index("<td>128</td>")


def test_all_runs_shows_the_outcome_first_then_the_swept_keys(tmp_path):
    sweep = a_sweep(tmp_path / "sweep")
    page = build([sweep], sweep / "report.html").read_text()
    table = re.search(r'id="table".*?<thead><tr>(.*?)</tr>', page, re.S).group(1)
    heads = re.findall(r"<th>([^<]*)</th>", table)
    assert heads[:4] == ["status", "test_loss", "train_loss", "test_acc"]
    assert heads.index("run_dir") < heads.index("lr") < heads.index("epochs")
    swept = {"lr", "subset", "seed"}
    assert set(heads[heads.index("run_dir") + 1:][:len(swept)]) == swept


def test_the_command_reruns_into_the_sweep_folder_from_where_it_ran(tmp_path):
    from forgetting.analysis.report import rerun_command

    saved = {"hydra": {"overrides": {
        "task": ["lr=interval(0.1, 10)", "subset=0.5"],
        "hydra": ["hydra.mode=MULTIRUN", "hydra/launcher=joblib",
                  "hydra.sweep.dir=old/place"]}}}
    command = rerun_command(tmp_path / "moved", saved)
    assert command == ("python -m forgetting.run -m 'lr=interval(0.1, 10)' subset=0.5 "
                       f"hydra/launcher=joblib hydra.sweep.dir={(tmp_path / 'moved').resolve()}")
