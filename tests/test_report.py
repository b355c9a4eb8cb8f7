"""forgetting.report: one self-contained report.html per sweep (verdict with its preconditions,
embedded figures with alt text, pivot, full table with relative links, command, provenance),
its command line's errors, and the page rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import fabricate
import pytest
from test_analyze import make_sweep, write_probe

from forgetting.analysis.report import ALT, build
from forgetting.report import main
from helpers import TINY, one_line_error, run_cli

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


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
    assert "python -m forgetting.run -m lr=0.125,0.25 subset=0.25,1.0 budget=steps" in page
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


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian: apt-get install chromium; "
                                             ".ci/run installs it as root)")
def test_a_real_browser_renders_the_report(tmp_path):
    sweep = a_sweep(tmp_path / "sweep")
    report = build([sweep], sweep / "report.html")
    shot = tmp_path / "shot.png"
    r = chromium(f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    assert png_size(shot) == (1280, 2400) and shot.stat().st_size > 50_000
    r = chromium("--dump-dom", report.as_uri())
    dom = r.stdout
    assert "verdict: forgetting-limited" in dom, r.stderr[-2000:]
    drawn = sorted(p.name for p in (sweep / "figures").glob("*.png"))
    assert drawn == ["lr_subset.png", "recency.png"]
    for name in drawn:  # every figure, by its alt text
        assert f'alt="{ALT[name]}"' in dom
    rows = re.search(r'id="table".*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    assert rows.count("<tr>") == 32
    assert '<a href="0/">0</a>' in rows  # a run folder, linked by its relative path


def test_the_pivot_sorts_numbers_as_numbers(tmp_path):
    from forgetting.analysis.report import pivot

    results, _ = fabricate.sweep(seeds=1, subsets=[1.0], sizes=(64, 128))
    html = pivot(results)
    assert html.index("<td>64</td>") < html.index("<td>128</td>")
