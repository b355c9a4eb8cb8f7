"""report.html in a real browser (headless Chromium, tests/browser.py): it renders with its
figures, every sortable table sorts by a mouse click on any header (ascending, then
descending, numbers as numbers), every in-page link has its target, and a run's link opens
its folder. Skipped without `chromium` (.ci/run installs it as root)."""

from __future__ import annotations

import re
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from browser import CHROMIUM, FLAGS, Browser
from test_analyze import write_probe
from test_report import a_sweep

from forgetting.analysis.report import ALT, build

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium (Debian: apt-get install chromium; .ci/run "
                             "installs it as root)")]
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\*?", re.I)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


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


def sort_key(text: str):
    """How a reader expects a cell to sort: a number as a number, else as text; empty: None."""
    text = text.strip()
    if not text:
        return None
    if NUMBER.fullmatch(text):
        return float(text.rstrip("*"))
    if re.fullmatch(r"[-+]?inf", text, re.I):
        return float("-inf") if text.startswith("-") else float("inf")
    return text


def in_order(texts: list[str], up: bool) -> bool:
    """Whether a column's cells are sorted: numbers before text, each in order (reversed when
    descending), empty cells last either way."""
    keys = [sort_key(t) for t in texts]
    filled = [k for k in keys if k is not None]
    if keys != filled + [None] * (len(keys) - len(filled)):
        return False
    numbers = [k for k in filled if isinstance(k, float)]
    words = [k for k in filled if isinstance(k, str)]
    expected = (sorted(numbers) + sorted(words)) if up else (sorted(words)[::-1]
                                                             + sorted(numbers)[::-1])
    return filled == expected


def column(page: Browser, table: int, col: int) -> list[str]:
    return page.js(f"""Array.from(document.querySelectorAll("table.sortable")[{table}]
        .tBodies[0].rows).map(function (r) {{ return r.cells[{col}].innerText; }})""")


def test_every_sortable_table_sorts_by_a_click_both_ways(tmp_path):
    sweep = a_sweep(tmp_path / "sweep")
    for run, loss in (("5", 1.3), ("9", 0.8)):  # three probed runs: the probe's table sorts
        write_probe(sweep / run, test_loss=loss, steps=60 + int(run) * 7)
    report = build([sweep], sweep / "report.html")
    with Browser() as page:
        page.open(report.as_uri())
        shapes = page.js("""Array.from(document.querySelectorAll("table.sortable")).map(
            function (t) { return [t.closest("section").id, t.tHead.rows[0].cells.length,
                                   t.tBodies[0].rows.length]; })""")
        sections = [s for s, _, _ in shapes]
        assert {"probe", "pivot", "table"} <= set(sections)  # the probe's table comes first
        numeric = 0
        for t, (section, width, rows) in enumerate(shapes):
            assert rows >= 2, section
            heads = page.js(f"""Array.from(document.querySelectorAll("table.sortable")[{t}]
                .tHead.rows[0].cells).map(function (c) {{ return c.innerText; }})""")
            for col in range(width):
                header = f'document.querySelectorAll("table.sortable")[{t}].tHead.rows[0]'
                index = page.js(f"""Array.from(document.querySelectorAll("table.sortable th"))
                    .indexOf({header}.cells[{col}])""")
                before = column(page, t, col)
                for up in (True, False):
                    page.click_element("table.sortable th", index)
                    after = column(page, t, col)
                    assert sorted(after) == sorted(before), (section, heads[col])
                    assert in_order(after, up), (section, heads[col], up, after[:6])
                    assert page.js(f"{header}.cells[{col}].getAttribute('aria-sort')") == (
                        "ascending" if up else "descending")
                texts = [x for x in before if sort_key(x) is not None]
                if len({sort_key(x) for x in texts}) > 1 and all(
                        isinstance(sort_key(x), float) for x in texts) and \
                        sorted(texts) != sorted(texts, key=sort_key):
                    numeric += 1  # a column whose text order is not its number order
        assert numeric >= 3
        # a click on one table leaves the others as they were sorted
        pivot = sections.index("pivot")
        first = column(page, pivot, 0)
        page.click_element("table.sortable th", 0)
        assert column(page, pivot, 0) == first


def test_every_in_page_link_has_its_target_and_a_run_link_opens_its_folder(tmp_path):
    sweep = a_sweep(tmp_path / "sweep")
    report = build([sweep], sweep / "report.html")
    with Browser() as page:
        page.open(report.as_uri())
        anchors = page.js("""Array.from(document.querySelectorAll('a[href^="#"]')).map(
            function (a) { return a.getAttribute("href").slice(1); })""")
        assert "verdict" in anchors and "table" in anchors
        assert "curvature" in anchors  # the sweep measured sharpness
        assert "figures" not in anchors  # every figure is shown beside its section
        for i, anchor in enumerate(anchors):
            assert page.js(f"document.getElementById({anchor!r}) !== null"), anchor
            page.click_element('a[href^="#"]', i)
            assert page.js("location.hash") == f"#{anchor}"
        page.click_element('#table a[href="0/"]')
        page.events.clear()
        # the folder's page loads, then its listing fills in (Chromium adds the rows by script)
        page.wait_until("document.body && document.body.innerText.includes('metrics.json')")
        assert page.js("location.href") == (sweep / "0").as_uri() + "/"
        assert "metrics.json" in page.js("document.body.innerText")
