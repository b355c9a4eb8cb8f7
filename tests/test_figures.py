"""Every kind of figure forgetting.plot draws, checked against the project's conventions
(docs/results.md, Figures) on the matplotlib Figure itself: distinct legend entries, one marker
per meaning, no empty panel without a note inside it, notes clear of the lines, units on every
axis, legends off the data, one y scale and tick style across panels, one label style, a key's
curves drawn as lines. `check_conventions(fig)` lists what a figure breaks."""

from __future__ import annotations

import math
import re

import fabricate
import numpy as np
import pandas as pd
import pytest

from forgetting.analysis import figure, plot_diag
from forgetting.analysis.plot import figures
from forgetting.plot import main as plot_main
from helpers import write_run

KEY_WORDS = tuple(figure.KEY_NAMES.values())  # a curve labelled by a key's value


def panels(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def is_reference(line, ax) -> bool:
    """axhline/axvline: no marker, drawn in axes coordinates on one axis at least."""
    return line.get_marker() in ("", "None", None) and line.get_transform() != ax.transData


def data_artists(ax) -> list:
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) and ln.get_gid() != "missing"
             and not is_reference(ln, ax)]
    return lines + [c for c in ax.collections if len(c.get_paths()) or len(c.get_offsets())]


def signature(handle) -> tuple:
    """What a legend handle looks like: colour, line style, marker (a collection: its face)."""
    from matplotlib.colors import to_rgba

    if hasattr(handle, "get_linestyle") and hasattr(handle, "get_marker"):
        return (to_rgba(handle.get_color()), handle.get_linestyle(), handle.get_marker())
    face = handle.get_facecolor()
    return (type(handle).__name__, tuple(np.round(face[0] if len(face) else face, 3)))


def line_points(line) -> np.ndarray:
    """The line's points in display coordinates, densely along its segments if it has any."""
    xy = np.column_stack([np.asarray(line.get_xdata(), float),
                          np.asarray(line.get_ydata(), float)])
    xy = line.get_transform().transform(xy[np.isfinite(xy).all(axis=1)])
    if line.get_linestyle() in ("None", "", " ") or len(xy) < 2:
        return xy
    t = np.linspace(0, 1, 60)[:, None]
    return np.concatenate([a + t * (b - a) for a, b in zip(xy[:-1], xy[1:])])


def check_conventions(fig) -> list[str]:
    """What `fig` breaks of the figure conventions, one line each (empty: none)."""
    figure.layout(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    shown = panels(fig)
    boxes = [ax.get_window_extent(renderer) for ax in shown]
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    legends += list(fig.legends)
    # legends: each entry once, entries that look alike say the same, off every panel
    for legend in legends:
        labels = [t.get_text() for t in legend.get_texts()]
        if len(set(labels)) < len(labels):
            problems.append(f"a legend repeats a label: {labels}")
        looks: dict = {}
        for handle, label in zip(legend.legend_handles, labels):
            looks.setdefault(signature(handle), set()).add(label)
        problems += [f"legend entries look identical: {sorted(same)}"
                     for same in looks.values() if len(same) > 1]
        box = legend.get_window_extent(renderer)
        if any(box.x0 < b.x1 - 1 and box.x1 > b.x0 + 1 and box.y0 < b.y1 - 1
               and box.y1 > b.y0 + 1 for b in boxes):
            problems.append(f"a legend overlaps a panel: {labels}")
    # one marker per meaning: a labelled marker-only line keeps its marker, and owns it
    marker_of: dict = {}
    for ax in shown:
        for line in ax.get_lines():
            if line.get_linestyle() == "None" and not line.get_label().startswith("_"):
                marker_of.setdefault(line.get_label(), set()).add(line.get_marker())
    problems += [f"{label!r} has several markers: {m}" for label, m in marker_of.items()
                 if len(m) > 1]
    owners: dict = {}
    for label, markers in marker_of.items():
        for m in markers:
            owners.setdefault(m, set()).add(label)
    problems += [f"marker {m!r} means several things: {sorted(labels)}"
                 for m, labels in owners.items() if len(labels) > 1]
    for ax, box in zip(shown, boxes):
        title = ax.get_title()
        # an empty panel carries a note inside it; no note crosses a line
        notes = [t for t in ax.texts if t.get_text().strip()]
        if not data_artists(ax) and not notes:
            problems.append(f"{title}: an empty panel without a note")
        for text in notes:
            extent = text.get_window_extent(renderer)
            if not (box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0
                    and extent.y1 <= box.y1):
                problems.append(f"{title}: note {text.get_text()!r} is not inside its panel")
            for line in ax.get_lines():
                points = line_points(line)
                near = extent.padded(2)
                if len(points) and ((points[:, 0] >= near.x0) & (points[:, 0] <= near.x1)
                                    & (points[:, 1] >= near.y0)
                                    & (points[:, 1] <= near.y1)).any():
                    problems.append(f"{title}: note {text.get_text()!r} crosses "
                                    f"{line.get_label()!r}")
        # units on every axis: a label, and in it a parenthesis naming the unit
        for which, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())):
            if not re.search(r"\([^)]+\)", re.sub(r"\$[^$]*\$", "", label)):
                problems.append(f"{title}: {which} label {label!r} names no unit")
        # one label style: "LR factor 2, batch 128", never "lr=2" or a column's name
        texts = [title] + [lab for lab in ax.get_legend_handles_labels()[1]]
        for text in texts:
            if "=" in text or re.search(r"\blr\b|batch_size", text):
                problems.append(f"label {text!r} is not in the figures' label style")
        # a key's curve (measured points of one run or mean) is joined by a line
        for line in ax.get_lines():
            if line.get_label().startswith(KEY_WORDS) and len(line.get_xdata()) > 1 and \
                    line.get_linestyle() == "None":
                problems.append(f"{title}: {line.get_label()!r} is points, not a line")
    # one y scale and one tick style across the panels
    drawn = [ax for ax in shown if data_artists(ax) or ax.get_lines()]
    scales = {ax.get_yscale() for ax in drawn}
    formats = {type(ax.yaxis.get_major_formatter()).__name__ for ax in drawn}
    if len(scales) > 1 or len(formats) > 1:
        problems.append(f"panels differ in y scale or tick style: {scales}, {formats}")
    # one unit for an axis and its legend: a fraction axis, no percent in the legend
    if any("fraction" in ax.get_ylabel() for ax in shown) and any(
            "%" in t.get_text() for lg in legends for t in lg.get_texts()):
        problems.append("a fraction axis with a percent legend")
    return problems


@pytest.fixture
def drawn():
    """figures(...)'s Figures, closed after the test."""
    made = []

    def draw(results, tables, **kwargs):
        out, skipped = figures(results, tables, **kwargs)
        made.extend(out.values())
        return out, skipped

    yield draw
    for fig in made:
        figure.plt().close(fig)


def noise_tables():
    """Batch 512 has no B_simple in any epoch (too few measurements); batch 128 has epochs
    that are not resolved; every run has its run-level value in the table."""
    results, tables = fabricate.sweep(seeds=1, subsets=[1.0])
    history = tables["history"]
    small = history["batch_size"] == 512
    history.loc[small, "noise_scale"] = math.nan
    history["noise_note"] = None
    history.loc[small, "noise_note"] = "not measured: 5 measurement(s), fewer than 10"
    history.loc[~small & (history["epoch"] == 2), "noise_note"] = \
        "not resolved: the |G|^2 interval reaches 0 over 12 measurements"
    results["noise_scale"] = 300.0 + 10 * results.index
    return results, tables


def test_lr_subset_follows_the_conventions(drawn):
    results, tables = fabricate.sweep(seeds=2)  # train loss spans decades, test loss not
    fig = drawn(results, tables)[0]["lr_subset.png"]
    assert check_conventions(fig) == []
    assert {ax.get_yscale() for ax in fig.axes} == {"log"}


def test_test_loss_per_epoch_follows_the_conventions(drawn):
    results, tables = fabricate.sweep(seeds=1, sizes=(128,))
    history = tables["history"]  # LR factor 1/8 without epoch 1's spike: under 10x
    history.loc[(history["lr"] == 0.125) & (history["epoch"] == 1), "test_loss"] /= 20
    fig = drawn(results, tables)[0]["test_loss_per_epoch.png"]
    assert check_conventions(fig) == []
    assert {ax.get_yscale() for ax in panels(fig)} == {"log"}
    assert "subset 0.25" in fig.axes[2].get_legend_handles_labels()[1]


def test_sharpness_follows_the_conventions(drawn):
    results, tables = fabricate.sweep(seeds=1, subsets=[1.0])
    history = tables["history"]
    history.loc[history["epoch"] % 2 == 1, "sharpness_ratio"] = math.nan  # every 2nd epoch
    history.loc[history["epoch"] == 1, "sharpness_note"] = "not measured: warming up"
    fig = drawn(results, tables)[0]["sharpness.png"]
    assert check_conventions(fig) == []
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("LR factor")]
    assert lines and all(list(ln.get_xdata()) == [2, 4] for ln in lines)


def test_noise_scale_follows_the_conventions_and_draws_each_run_s_own_value(drawn):
    results, tables = noise_tables()
    fig = drawn(results, tables)[0]["noise_scale.png"]
    assert check_conventions(fig) == []
    left, right = fig.axes[:2]
    assert "batch 512" in right.get_title() and right.texts  # its note, inside, clear
    colour = figure.colours(results["lr"])[1.0]
    for ax, size in ((left, 128), (right, 512)):  # LR factor 1's run: its diamond
        ys = [y for ln in ax.get_lines() if ln.get_label() == plot_diag.RUN_NOISE
              and ln.get_color() == colour for y in ln.get_ydata()]
        assert ys == list(results.query(f"batch_size == {size} and lr == 1.0")["noise_scale"])
    labels = fig.axes[1].get_legend().get_texts()
    assert plot_diag.RUN_NOISE in [t.get_text() for t in labels]


def test_equal_eta_follows_the_conventions(drawn):
    results, tables = fabricate.sweep(seeds=2)
    fig = drawn(results, tables)[0]["equal_eta.png"]
    assert check_conventions(fig) == []


def probe_tables():
    """Two probed epochs per run, so the probe's evolution is drawn too."""
    results, tables = fabricate.sweep(seeds=2)
    probe = tables["recency"]
    earlier = probe.assign(probe_epoch=2, loss=probe["loss"] + 0.3)
    tables["recency"] = pd.concat([earlier, probe], ignore_index=True)
    return results, tables


@pytest.mark.parametrize("name", ["recency.png", "recency_evolution.png"])
def test_the_probe_figures_follow_the_conventions(drawn, name):
    fig = drawn(*probe_tables())[0][name]
    assert check_conventions(fig) == []
    assert fig.axes[0].get_title().startswith("LR factor ")


def test_recipes_follow_the_conventions_and_show_each_run_s_time(drawn):
    results, _ = fabricate.sweep(seeds=3, subsets=[1.0])
    results = results[results["lr"] == 1.0].assign(wall_s=[11.0, 12.0, 13.0, 40.0, 41.0, 42.0])
    results.loc[results["batch_size"] == 512, "recipe"] = "part2"
    out, skipped = drawn(results, {})
    fig = out["recipes.png"]
    assert check_conventions(fig) == []
    [time] = [ax for ax in fig.axes if ax.get_ylabel().endswith("(s)")]
    assert sorted(y for ln in time.get_lines() if ln.get_marker() == "o"
                  for y in ln.get_ydata()) == [11.0, 12.0, 13.0, 40.0, 41.0, 42.0]
    assert skipped == ["lr_subset.png: not drawn (the finished runs have 1 LR factor (1); a "
                       "verdict needs at least 2 LR factors x 2 subsets)"]


def test_the_checker_sees_each_defect():
    """check_conventions itself: a figure with every defect the conventions forbid."""
    fig, (a, b) = figure.plt().subplots(1, 2)
    a.plot([1, 2], [1, 2], marker="o", linestyle="none", label="LR factor 1")
    a.axhline(1.5, color="k", ls="--", label="batch size 128")
    b.axhline(1.5, color="k", ls="--", label="batch size 512")
    b.text(0.5, 0.5, "nothing here", transform=b.transAxes, ha="center", va="center")
    a.plot([1], [0], marker="v", linestyle="none", label="not resolved")
    a.plot([2], [0], marker="v", linestyle="none", label="not measured")
    a.set_yscale("log")
    b.set_ylim(1, 2)
    a.legend(*figure.legend_entries([a, b]), loc="center")
    a.set_title("lr=1")
    problems = "\n".join(check_conventions(fig))
    figure.plt().close(fig)
    for words in ("look identical", "means several things", "crosses", "names no unit",
                  "overlaps a panel", "label style", "points, not a line", "y scale"):
        assert words in problems, words


def test_plot_says_why_lr_subset_is_not_drawn_and_creates_nothing_without_figures(
        tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", "ok", lr=1.0, subset=0.5, test_loss=1.0, train_loss=0.5,
              config={"lr": 1.0, "subset": 0.5})
    assert plot_main([str(sweep)]) == 2  # one run, no probe: nothing to draw
    out = capsys.readouterr()
    assert out.out.splitlines() == ["lr_subset.png: not drawn (the finished runs have 1 LR "
                                    "factor (1); a verdict needs at least 2 LR factors x 2 "
                                    "subsets)"]
    assert "nothing to plot" in out.err
    assert not (sweep / "figures").exists()
