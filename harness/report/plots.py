"""A call's timeline as a small PNG: packets received and lost per second on
the left, MOS and jitter over time on the right, events as labelled vertical
lines on both. Matplotlib's Agg canvas only (no pyplot: no display, no global
backend switch), fixed fonts and no PNG timestamp, so the same samples give the same bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

WIDTH_PX, HEIGHT_PX, DPI = 800, 300, 100
# The y axes reach this much above the data: the legends live there.
LEGEND_HEADROOM = 1.35

# One colour per event kind; unknown kinds are grey.
EVENT_COLOURS = {
    "connected": "#1e7b34",
    "ice-restart": "#c25e00",
    "path-change": "#6a3d9a",
    "policy-swap": "#8c564b",
    "fault": "#b42318",
    "failed": "#000000",
}
# Event labels sit above the axes in up to LABEL_ROWS rows of LABEL_ROW_PT points;
# a label's width is guessed as LABEL_CHAR_WIDTH (a fraction of the axes' width) a character.
LABEL_ROWS, LABEL_ROW_PT, LABEL_CHAR_WIDTH = 3, 9, 0.016
FORWARD, REVERSE = "caller→callee", "callee→caller"


@dataclass(frozen=True)
class Series:
    """One direction's per-second samples, as columns (NaN where not recorded)."""

    t: list[float]
    received: list[float]
    lost: list[float]
    jitter_ms: list[float]
    mos: list[float]

    def __bool__(self) -> bool:
        return bool(self.t)


@dataclass(frozen=True)
class Marker:
    t: float
    kind: str
    label: str


def series_from(samples: object) -> Series:
    """The usable samples of a timeline (a list of dicts with at least a numeric
    ``t``), sorted by time; anything else is ignored."""
    rows: list[tuple[float, float, float, float, float]] = []
    if isinstance(samples, Sequence) and not isinstance(samples, str | bytes):
        for sample in samples:
            if not isinstance(sample, Mapping):
                continue
            t = number(sample.get("t"))
            if t is None:
                continue
            rows.append((t, _nan(sample.get("received")), _nan(sample.get("lost")),
                         _nan(sample.get("jitter_ms")), _nan(sample.get("mos"))))
    rows.sort(key=lambda row: row[0])
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    return Series(*(list(c) for c in columns))


def markers_from(events: object, failed_at_s: object = None,
                 failure_kind: object = None) -> list[Marker]:
    """Event markers, plus one for the recorded failure time when no "failed"
    event says so already."""
    markers: list[Marker] = []
    if isinstance(events, Sequence) and not isinstance(events, str | bytes):
        for event in events:
            if not isinstance(event, Mapping):
                continue
            t = number(event.get("t"))
            if t is None:
                continue
            kind = str(event.get("kind") or "event")
            markers.append(Marker(t, kind, kind))
    failed = number(failed_at_s)
    if failed is not None and not any(m.kind == "failed" for m in markers):
        label = f"failed: {failure_kind}" if failure_kind else "failed"
        markers.append(Marker(failed, "failed", label))
    markers.sort(key=lambda m: (m.t, m.kind))
    return markers


def timeline_png(timeline: object, timeline_reverse: object = None, events: object = None,
                 *, failed_at_s: object = None, failure_kind: object = None) -> bytes | None:
    """The PNG (about 800×300) of a call's timeline, or None when there is no
    usable sample in either direction."""
    forward, reverse = series_from(timeline), series_from(timeline_reverse)
    if not forward and not reverse:
        return None
    markers = markers_from(events, failed_at_s, failure_kind)
    with matplotlib.rc_context({
        "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs everywhere
        "font.size": 8,
        "axes.spines.top": False,
        "path.simplify": False,
    }):
        figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
        FigureCanvasAgg(figure)
        packets, quality = figure.subplots(1, 2)
        _plot_packets(packets, forward, reverse)
        jitter = _plot_quality(quality, forward, reverse)
        span = _span(forward, reverse, markers)
        placed = _place_labels(markers, span)
        for axes in (packets, quality):
            axes.set_xlim(*span)
            axes.set_xlabel("seconds since call start")
            axes.grid(True, color="#dddddd", linewidth=0.5)
            _draw_markers(axes, placed)
        jitter.set_xlim(*span)
        # Room above the axes for the label rows in use (points → pixels → fraction).
        rows = 1 + max((p.row for p in placed), default=-1)
        top_px = 10 + (LABEL_ROW_PT * rows + 2) * DPI / 72
        figure.subplots_adjust(left=0.07, right=0.93, top=1 - top_px / HEIGHT_PX, bottom=0.15,
                               wspace=0.30)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _plot_packets(axes: Axes, forward: Series, reverse: Series) -> None:
    """Received packets as lines, lost ones as filled steps (one artist each:
    a bar per second is slow to draw)."""
    axes.set_ylabel("packets / s")
    for series, name, style, lost_colour in ((forward, FORWARD, "-", "#d62728"),
                                             (reverse, REVERSE, "--", "#ff7f0e")):
        if not series:
            continue
        axes.plot(series.t, series.received, style, color="#1f77b4", linewidth=1.2,
                  label=f"received {name}")
        axes.fill_between(series.t, series.lost, step="mid", color=lost_colour, alpha=0.45,
                          linewidth=0, label=f"lost {name}")
    # Headroom at the top for the legend, so that it hides no data.
    top = max([1.0] + [v for s in (forward, reverse) for v in s.received + s.lost
                       if not math.isnan(v)])
    axes.set_ylim(0, top * LEGEND_HEADROOM)
    axes.legend(loc="upper center", fontsize=6, framealpha=0.8, ncols=2)


def _plot_quality(axes: Axes, forward: Series, reverse: Series) -> Axes:
    axes.set_ylim(1.0, 1.0 + 4.0 * LEGEND_HEADROOM)
    axes.set_yticks([1, 2, 3, 4, 5])
    axes.set_ylabel("MOS", color="#1f77b4")
    jitter = axes.twinx()
    jitter.set_ylabel("jitter (ms)", color="#c25e00")
    top = 0.0
    for series, name, style in ((forward, FORWARD, "-"), (reverse, REVERSE, "--")):
        if not series:
            continue
        axes.plot(series.t, series.mos, style, color="#1f77b4", linewidth=1.2, marker=".",
                  markersize=3, label=f"MOS {name}")
        jitter.plot(series.t, series.jitter_ms, style, color="#c25e00", linewidth=1.0,
                    label=f"jitter {name}")
        top = max([top] + [v for v in series.jitter_ms if not math.isnan(v)])
    jitter.set_ylim(0.0, max(top, 4.0) * LEGEND_HEADROOM)
    jitter.spines["top"].set_visible(False)
    lines = axes.get_legend_handles_labels()
    more = jitter.get_legend_handles_labels()
    axes.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center", fontsize=6,
                framealpha=0.8, ncols=2)
    return jitter


@dataclass(frozen=True)
class Placed:
    marker: Marker
    row: int
    right_aligned: bool


def _place_labels(markers: Sequence[Marker], span: tuple[float, float]) -> list[Placed]:
    """Give each label a row so that labels don't overlap (rows wrap around
    after LABEL_ROWS); near the right edge a label ends at its line."""
    row_ends = [-math.inf] * LABEL_ROWS
    placed: list[Placed] = []
    for marker in markers:
        start = (marker.t - span[0]) / (span[1] - span[0])
        width = LABEL_CHAR_WIDTH * (len(marker.label) + 1)
        left = start - width if start + width > 1.05 else start
        row = next((i for i, end in enumerate(row_ends) if end < left), len(placed) % LABEL_ROWS)
        row_ends[row] = left + width
        placed.append(Placed(marker, row, left != start))
    return placed


def _draw_markers(axes: Axes, placed: Sequence[Placed]) -> None:
    for item in placed:
        colour = EVENT_COLOURS.get(item.marker.kind, "#777777")
        axes.axvline(item.marker.t, color=colour, linewidth=1.0, linestyle=":")
        axes.annotate(item.marker.label, xy=(item.marker.t, 1.0),
                      xycoords=("data", "axes fraction"),
                      xytext=(0, 2 + LABEL_ROW_PT * item.row), textcoords="offset points",
                      fontsize=6, color=colour, ha="right" if item.right_aligned else "left",
                      va="bottom", annotation_clip=False)


def _span(forward: Series, reverse: Series,
          markers: Sequence[Marker]) -> tuple[float, float]:
    times = forward.t + reverse.t + [m.t for m in markers]
    low, high = min(times), max(times)
    low = min(low, 0.0)
    if high - low < 1.0:
        high = low + 1.0
    pad = (high - low) * 0.02
    return low - pad, high + pad


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (null, text, bool, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _nan(value: Any) -> float:
    result = number(value)
    return math.nan if result is None else result
