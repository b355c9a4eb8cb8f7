"""What every figure of forgetting.plot shares: the backend, saving, one colour per value of a
key, one label style for a key's value, axes conventions (integer epochs, one y scale for every
panel, log where values span decades, legends off the data, units) and a marker for a point
that is missing, one marker per reason.

Colours: `colours(values)` maps the *sorted* distinct values of a key to a fixed palette, so a
value keeps its colour in every panel of a figure whichever values a panel happens to hold.
Up to 10 values take matplotlib's qualitative `tab10`; more take `viridis` truncated before its
pale yellow end. No colour is lighter than LIGHTEST (relative luminance), so none vanishes on a
white background.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LIGHTEST = 0.72  # the relative luminance (0 black .. 1 white) no line colour may exceed
SPAN = 10.0  # a curve whose largest/smallest value exceeds this gets a log y axis
DPI = 100

# axis labels with their units (a count says so; a ratio or factor says it is one)
LOSS = "loss (nats per example)"
STEPS_AGO = "steps ago (count; 0 = the last batch)"
EPOCHS_AGO = "time since the batch was fed (epochs)"
EPOCH = "epochs trained (count)"
LR_FACTOR = "LR factor (× the recipe's per-example LR)"
SHARPNESS = r"$\eta_\mathrm{eff}\,(\lambda_\mathrm{max} + \mathrm{wd})$ (dimensionless)"
NOISE = r"gradient noise scale $B_\mathrm{simple}$ (examples)"
# a missing point's hollow markers, one per reason (never a marker data points use: o . x D)
MISSING_MARKERS = ("v", "s", "^", "p", "<", "h", ">", "*")
NEUTRAL = ("missing", "run level")  # gids of entries drawn in every curve's colour
# how a key's value is written in legends and titles ("LR factor 2, subset 0.5, batch 128"):
# keys in this order, then any other key under its own name
KEY_NAMES = {"lr": "LR factor", "subset": "subset", "batch_size": "batch",
             "trainset": "trainset", "augment": "augment", "cutout": "cutout", "width": "width",
             "budget": "budget", "recipe": "recipe", "seed": "seed"}


def plt():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def layout(fig) -> None:
    """The figure's final layout, as saved (tests measure extents after it)."""
    import warnings

    with warnings.catch_warnings():  # legends outside the axes: tight_layout may only warn
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def save(fig, path: Path) -> Path:
    layout(fig)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt().close(fig)
    return path


def luminance(colour) -> float:
    """Relative luminance (sRGB, WCAG's formula) of any matplotlib colour."""
    from matplotlib.colors import to_rgb

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in to_rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def colours(values) -> dict:
    """A fixed colour for every distinct value (sorted; NaN/None dropped)."""
    import matplotlib

    distinct = sorted({v for v in values if v is not None and v == v})
    if len(distinct) <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return {v: cmap(i) for i, v in enumerate(distinct)}
    cmap = matplotlib.colormaps["viridis"]
    top = 0.82  # viridis beyond this turns pale yellow
    return {v: cmap(top * i / (len(distinct) - 1)) for i, v in enumerate(distinct)}


def integer_epochs(ax) -> None:
    """Epochs are counts: ticks at whole numbers only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(EPOCH)


def _span(values) -> float | None:
    """largest / smallest of the finite positive values (None for fewer than 2)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    return max(finite) / min(finite) if len(finite) >= 2 else None


def log_y(panels) -> bool:
    """One y scale for every panel of a figure: log on all when the finite positive values of
    any panel span more than SPAN, else linear on all. `panels`: (axes, values) pairs. Every
    log panel labels its ticks alike (plain numbers): one a decade over 3 decades or more,
    1-2-5 over 1 to 3, evenly spaced under one. True if log."""
    spans = [(ax, _span(values)) for ax, values in panels]
    if not any(s is not None and s > SPAN for _, s in spans):
        return False
    for ax, span in spans:
        ax.set_yscale("log")
        log_ticks(ax, span)
    return True


def log_ticks(ax, span: float | None) -> None:
    """A log y axis's ticks for values spanning `span` (largest/smallest), labelled as plain
    numbers: one a decade over 3 decades or more, 1-2-5 over 1 to 3, evenly spaced under one."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    if span is None or span < SPAN:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    elif span < 1000:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.yaxis.set_major_locator(LogLocator(base=10))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def legend_outside(ax, handles=None, labels=None, title: str | None = None) -> None:
    """The legend to the right of the axes, never over the data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, title=title, title_fontsize=8,
                  loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def legend_entries(axes) -> tuple[list, list]:
    """Every entry of every panel once (by label), in order of appearance. An entry drawn in
    every curve's colour (a missing point's reason, a run-level value: gid NEUTRAL) shows its
    marker in black, since its colour is the curve's, not the entry's."""
    from matplotlib.lines import Line2D

    seen: dict = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in seen and getattr(handle, "get_gid", lambda: None)() in NEUTRAL:
                hollow = handle.get_markerfacecolor() == "none"
                handle = Line2D([], [], linestyle=handle.get_linestyle(),
                                marker=handle.get_marker(), ms=handle.get_markersize(),
                                mew=handle.get_markeredgewidth(), color="black",
                                mfc="none" if hollow else "black")
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen.keys())


def label_of(keys, values) -> str:
    """Values of keys in the one style of every legend and title: "LR factor 2, subset 0.5"."""
    order = list(KEY_NAMES)
    pairs = sorted(zip(keys, values), key=lambda kv: order.index(kv[0]) if kv[0] in order
                   else len(order))
    return ", ".join(f"{KEY_NAMES.get(k, k)} {v:g}" if isinstance(v, float)
                     else f"{KEY_NAMES.get(k, k)} {v}" for k, v in pairs)


def note(ax, text: str) -> None:
    """A panel's note on what it lacks, inside the panel near its top (callers keep the data
    below it)."""
    ax.text(0.5, 0.95, text, transform=ax.transAxes, ha="center", va="top", fontsize=9)


def factor_label(value: float, _=None) -> str:
    """1/8 ... 64 as written; beyond, a power of two in mathtext."""
    if 1 / 64 <= value <= 64:
        return f"{value:g}" if value >= 1 else f"1/{1 / value:g}"
    return f"$2^{{{math.log2(value):g}}}$"


def lr_axis(ax) -> None:
    """LR factors on a log2 x axis, labelled 1/8, 1/4, 1/2, 1, 2, ...; at most 9 ticks, so a
    grid reaching far (a divergence test at 1e5) keeps readable labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2, numticks=9))
    ax.xaxis.set_major_formatter(FuncFormatter(factor_label))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(LR_FACTOR)


def missing_markers(reasons) -> dict:
    """A fixed hollow marker for every distinct reason of a figure (sorted), like colours."""
    distinct = sorted({r for r in reasons if isinstance(r, str) and r})
    return {r: MISSING_MARKERS[i % len(MISSING_MARKERS)] for i, r in enumerate(distinct)}


def mark_missing(ax, xs, colour, reason: str, marker: str = MISSING_MARKERS[0],
                 dodge: float = 0.0) -> None:
    """Points with no value drawn as hollow markers on the axes' bottom edge; the reason goes
    to the legend (one entry per reason, its `marker` from missing_markers). `dodge`: a
    sideways shift in points, so that curves missing at the same x show side by side."""
    from matplotlib.transforms import offset_copy

    xs = list(xs)
    if not xs:
        return
    where = offset_copy(ax.get_xaxis_transform(), ax.figure, x=dodge, units="points")
    ax.plot(xs, [0.0] * len(xs), linestyle="none", marker=marker, ms=7, mfc="none",
            color=colour, mew=1.5, transform=where, clip_on=False, label=reason,
            gid="missing", scalex=False, scaley=False)
    ax.update_datalim([(x, 1.0) for x in xs], updatex=True, updatey=False)  # x: its epochs
    ax.autoscale_view()


def spread(ax, x, frame, colour, label: str, marker: str = "o") -> None:
    """A mean line over seeds with a min-max band (frame columns: mean, min, max, count) and
    nothing more where every point has one seed."""
    ax.plot(x, frame["mean"], color=colour, marker=marker, ms=4, label=label)
    if (frame["count"] > 1).any():
        ax.fill_between(x, frame["min"], frame["max"], color=colour, alpha=0.18, lw=0)


def varying(frame: pd.DataFrame, keys) -> list[str]:
    return [k for k in keys if k in frame and frame[k].nunique(dropna=False) > 1]


def sort_key(values: tuple) -> tuple:
    """Numbers in numeric order, then anything else by its text."""
    return tuple((0, v, "") if isinstance(v, numbers.Number) else (1, 0, str(v)) for v in values)


def evenly(values: list, most: int) -> list:
    """At most `most` of the sorted `values`, spread evenly, the first and last included."""
    if len(values) <= most:
        return values
    return [values[round(i * (len(values) - 1) / (most - 1))] for i in range(most)]
