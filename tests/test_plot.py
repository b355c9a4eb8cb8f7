"""forgetting.plot's figures read back as matplotlib objects: one colour per value in every
panel, integer epoch ticks, no pale lines, log y where values span decades, units, legends off
the data, missing points marked with their reason."""

from __future__ import annotations

import math

import fabricate
import pytest

from forgetting.analysis import figure, plot_diag
from forgetting.analysis.plot import per_epoch, plot_tables
from forgetting.core.diagnostics.monitor import NOT_MEASURED


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot function saves, kept open: name -> Figure."""
    kept = {}

    def keep(fig, path):
        fig.canvas.draw()  # lay it out as saved, so extents and ticks are final
        kept[path.name] = fig
        return path

    monkeypatch.setattr(figure, "save", keep)
    yield kept
    for fig in kept.values():
        figure.plt().close(fig)


def colour_by_label(fig) -> dict[str, set]:
    """legend label of every line -> the set of colours it has across the figure's panels."""
    found: dict[str, set] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()  # curves only: markers of missing points are per curve
            if not label.startswith("_") and line.get_linestyle() != "None":
                found.setdefault(label, set()).add(line.get_color() if isinstance(
                    line.get_color(), str) else tuple(line.get_color()))
    return found


def test_a_value_has_one_colour_in_every_panel(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=2)
    # LR factor 8 lacks the smallest subset: the other subsets must keep their colours there
    history = tables["history"]
    tables["history"] = history[~((history["lr"] == 8) & (history["subset"] == 0.25))
                                & ~((history["batch_size"] == 512) & (history["subset"] == 0.25))]
    results = results[~((results["batch_size"] == 512) & (results["subset"] == 0.25))]
    plot_tables(results, tables, tmp_path)
    assert {"lr_subset.png", "test_loss_per_epoch.png", "sharpness.png",
            "noise_scale.png"} <= set(figures)
    for name in ("lr_subset.png", "test_loss_per_epoch.png", "sharpness.png", "noise_scale.png",
                 "equal_eta.png"):
        by_label = colour_by_label(figures[name])
        assert by_label and all(len(c) == 1 for c in by_label.values()), (name, by_label)
    labels = colour_by_label(figures["lr_subset.png"])
    assert len({next(iter(c)) for lab, c in labels.items() if lab.startswith("subset")}) == 3


def test_epoch_ticks_are_integers_and_no_line_is_pale(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=2)
    plot_tables(results, tables, tmp_path)
    for name in ("test_loss_per_epoch.png", "sharpness.png", "noise_scale.png"):
        for ax in figures[name].axes:
            if ax.get_visible() and ax.get_xlabel() == figure.EPOCH:
                lo, hi = ax.get_xlim()
                ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
                assert ticks and all(t == int(t) for t in ticks), (name, ticks)
    for name, fig in figures.items():
        for ax in fig.axes:
            for line in ax.get_lines():
                if line.get_linestyle() != "None" or line.get_marker() not in ("", "None"):
                    colour = line.get_color()
                    assert figure.luminance(colour) <= figure.LIGHTEST, (name, line.get_label())


def test_many_values_stay_dark_and_distinct():
    colours = figure.colours(range(30))
    assert len(set(colours.values())) == 30
    assert max(figure.luminance(c) for c in colours.values()) <= figure.LIGHTEST
    assert figure.colours([2, 1, float("nan")]) == {1: figure.colours([1, 3])[1],
                                                    2: figure.colours([1, 3])[3]}


def test_log_y_units_and_legends_off_the_data(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=2)
    plot_tables(results, tables, tmp_path)
    epochs = figures["test_loss_per_epoch.png"]
    visible = [ax for ax in epochs.axes if ax.get_visible()]
    assert all(ax.get_yscale() == "log" for ax in visible)  # epoch 1 is a 30x spike
    assert "nats" in visible[0].get_ylabel()
    sharp = figures["sharpness.png"].axes[0]
    assert sharp.get_ylabel().startswith("$\\eta_") and sharp.get_yscale() == "log"
    assert "(examples)" in figures["noise_scale.png"].axes[0].get_ylabel()
    assert "nats" in figures["lr_subset.png"].axes[1].get_ylabel()
    for name, fig in figures.items():
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:  # entirely to the right of its axes
                renderer = fig.canvas.get_renderer()
                assert legend.get_window_extent(renderer).x0 >= \
                    ax.get_window_extent(renderer).x1, name


def test_a_missing_measurement_is_a_marker_with_its_reason(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=1)
    history = tables["history"]
    drawn = history[(history["subset"] == 1.0) & (history["batch_size"] == 128)]
    first = history["run_dir"] == drawn["run_dir"].iloc[0]  # drawn in the first panel
    history.loc[first & (history["epoch"] == 3), ["sharpness_ratio", "sharpness_note"]] = \
        [math.nan, NOT_MEASURED]
    plot_tables(results, tables, tmp_path)
    noise = [lab for ax in figures["noise_scale.png"].axes
             for lab in ax.get_legend_handles_labels()[1]]
    assert plot_diag.NOISE_MISSING in noise  # epoch 2 of every run has no B_simple
    sharp = figures["sharpness.png"].axes[0]
    [marker] = [ln for ln in sharp.get_lines()
                if ln.get_label() == NOT_MEASURED]
    assert list(marker.get_xdata()) == [3]


def test_seeds_are_a_mean_with_a_band(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=3, subsets=[1.0], sizes=(128,))
    fig = per_epoch(tables["history"], results)
    ax = fig.axes[0]
    [line] = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")
              and "subset" in ln.get_label()]
    means = tables["history"].query("lr == 0.125").groupby("epoch")["test_loss"].mean()
    assert list(line.get_ydata()) == pytest.approx(list(means))
    assert ax.collections  # the min-max band
    figure.plt().close(fig)


def test_a_point_whose_runs_all_failed_is_marked(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=1, sizes=(128,))
    lost = (results["lr"] == 2.0) & (results["subset"] == 0.5)
    results.loc[lost, ["status", "test_loss", "train_loss"]] = ["failed", math.nan, math.nan]
    plot_tables(results, tables, tmp_path)
    ax = figures["lr_subset.png"].axes[1]
    [marker] = [ln for ln in ax.get_lines() if ln.get_label() == "failed (no result)"]
    assert list(marker.get_xdata()) == [2.0]
    assert "1 failed" in ax.get_title()
    assert "failed (no result)" in ax.get_legend_handles_labels()[1]


def test_the_analysis_modules_import_each_other_without_a_cycle():
    """Function-level imports included: plot.py and plot_diag.py once imported each other."""
    import ast

    from helpers import REPO

    folder = REPO / "forgetting" / "analysis"
    names = {p.stem for p in folder.glob("*.py")}
    graph = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "forgetting.analysis":
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "forgetting.analysis."):
                found.add(node.module.split(".")[2])
        graph[path.stem] = found & names

    def reaches(start, seen=()):
        for nxt in graph[start]:
            if nxt in seen:
                continue
            yield nxt
            yield from reaches(nxt, (*seen, nxt))

    cycles = [m for m in graph if m in set(reaches(m))]
    assert cycles == []


def test_a_run_without_any_noise_value_keeps_its_panel_and_says_why(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=1, subsets=[1.0])
    history = tables["history"]
    small = history["batch_size"] == 512  # too few steps an epoch: no B_simple anywhere
    history.loc[small, "noise_scale"] = math.nan
    history["noise_note"] = None
    history.loc[small, "noise_note"] = "not measured: 5 measurement(s), fewer than 10"
    history.loc[~small & (history["epoch"] == 2), "noise_note"] = \
        "not resolved: the |G|^2 interval reaches 0 over 12 measurements"
    plot_tables(results, tables, tmp_path)
    left, right = figures["noise_scale.png"].axes
    assert "batch 512" in right.get_title()
    assert "not measured (too few measurements)" in right.get_legend_handles_labels()[1]
    assert plot_diag.NOISE_MISSING in left.get_legend_handles_labels()[1]


def test_per_epoch_panels_make_a_grid_and_say_when_there_is_one_seed(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=1, subsets=[0.25, 1.0], sizes=(128,))
    keep = results["lr"].isin([1.0, 2.0, 4.0, 8.0])  # the demo's 4 LR factors
    history = tables["history"][tables["history"]["run_dir"].isin(results["run_dir"][keep])]
    fig = per_epoch(history, results[keep])
    figure.layout(fig)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    assert len({round(ax.get_position().y0, 3) for ax in panels}) == 2  # 2 x 2, not a strip
    width, height = fig.get_size_inches()
    assert width / height < 2
    assert "one run per point" in fig._suptitle.get_text()
    assert "mean over seeds" not in fig._suptitle.get_text()
    logs = [ax for ax in panels if ax.get_yscale() == "log"]
    assert logs  # epoch 1's spike (30x the final loss) makes every panel a log axis
    for ax in logs:  # a log axis says what its values are: 1-2-5 ticks under 3 decades
        low, high = ax.get_ylim()
        shown = [t for t in ax.get_yticks() if low <= t <= high]
        assert len(shown) >= 2, (ax.get_title(), shown)
    figure.plt().close(fig)


def test_equal_eta_puts_batch_sizes_on_one_eta_eff_axis_with_seeds_as_points(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=2)
    plot_tables(results, tables, tmp_path)
    ratio_ax, lam_ax = figures["equal_eta.png"].axes
    lines = {ln.get_label(): ln for ln in ratio_ax.get_lines()}
    full = results[results["subset"] == 1.0]
    for size, scale in ((128, 1), (512, 4)):  # x = LR factor x batch / 128
        runs = full[(full["batch_size"] == size) & (full["status"] == "ok")]
        mean = runs.groupby("lr")["max_sharpness_ratio"].mean()  # a diverged run: a cross
        line = lines[f"batch {size}"]
        assert list(line.get_xdata()) == pytest.approx(list(mean.index * scale))
        assert list(line.get_ydata()) == pytest.approx(list(mean))
    crosses = [ln for ln in ratio_ax.get_lines() if ln.get_marker() == "x"]
    assert sum(len(ln.get_xdata()) for ln in crosses) == int(
        (full["status"] == "diverged").sum())
    assert [ln.get_ydata()[0] for ln in ratio_ax.get_lines()
            if ln.get_label() == "stability edge"] == [1.0]
    # the right panel: each run's largest lambda_max over its history
    hist = tables["history"]
    top = hist.groupby("run_dir")["sharpness"].max()
    ok512 = full[(full["batch_size"] == 512) & (full["status"] == "ok")]
    expected = ok512.assign(top=ok512["run_dir"].map(top)).groupby("lr")["top"].mean()
    line = {ln.get_label(): ln for ln in lam_ax.get_lines()}["batch 512"]
    assert list(line.get_ydata()) == pytest.approx(list(expected))
    # one batch size: no figure
    figures.clear()
    one = results[results["batch_size"] == 128]
    plot_tables(one, {"history": hist[hist["batch_size"] == 128]}, tmp_path)
    assert "equal_eta.png" not in figures


def test_a_noise_panel_without_values_keeps_its_lines_below_its_note(tmp_path, figures):
    results, tables = fabricate.sweep(seeds=1)
    history = tables["history"]
    history.loc[history["batch_size"] == 512, "noise_scale"] = math.nan
    plot_tables(results, tables, tmp_path)
    left, right = figures["noise_scale.png"].axes[:2]
    # the batch line (512) and the runs' own values (2000): a decade below, the note above
    low, high = right.get_ylim()
    assert low == pytest.approx(51.2) and math.log10(2000 / low) / math.log10(high / low) \
        == pytest.approx(0.5)
    assert any("no epoch has a value" in t.get_text() for t in right.texts)
    assert not left.texts


def test_a_measurement_every_second_epoch_is_one_line_through_the_measured_epochs(
        tmp_path, figures):
    results, tables = fabricate.sweep(seeds=2, subsets=[1.0], sizes=(128,))
    history = tables["history"]
    history.loc[history["epoch"] % 2 == 1, "sharpness_ratio"] = math.nan  # diag.every=2
    plot_tables(results, tables, tmp_path)
    ax = figures["sharpness.png"].axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("LR factor")]
    measured = sorted(history.loc[history["epoch"] % 2 == 0, "epoch"].unique())
    assert lines and all(list(ln.get_xdata()) == measured for ln in lines)
    assert all(not any(math.isnan(y) for y in ln.get_ydata()) for ln in lines)
