"""The ECG for people: the stored signal drawn as SVG on millimetre paper, true to scale.

The model's input image (`ingest/prepare/render.py`, 4 px/mm) is sized for the model, not
for a cardiologist. This module draws the same standard layout as a vector image whose
user unit is one millimetre of paper:

    [1 mV cal] I    0-2.5 s | aVR 2.5-5 s | V1 5-7.5 s | V4 7.5-10 s
    [1 mV cal] II           | aVL         | V2         | V5
    [1 mV cal] III          | aVF         | V3         | V6
    [1 mV cal] II, the 10 s rhythm strip

- 25 mm/s and 10 mm/mV exactly: x = TRACE_X0_MM + 25 * t, y = baseline - 10 * mV, so any zoom
  keeps the scale and the browser's calipers turn millimetres back into ms and mV;
- the grid is the paper's: a line every 1 mm, a heavier one every 5 mm (200 ms, 0.5 mV),
  aligned so t = 0 and every baseline sit on a heavy line;
- every sample at the source's own rate is a polyline vertex (up to `MAX_DISPLAY_RATE_HZ`),
  so zooming in shows the recording, not a blurred picture of it; a gap (NaN) breaks the line;
- a lead label is placed where no trace passes: the space its box needs is checked against
  every polyline's extent over that width (`place_label`), moving down the row, then along it;
- presentation attributes only, no <style> and no script: the image is served under the
  app's strict Content-Security-Policy and is safe to open on its own.

Pure functions of the signal: `reports.review.ecg_source` reads the study's file and caches
the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np
from pydantic import BaseModel

from ingest.paper import COLUMN_S, LAYOUT, MM_PER_MV, MM_PER_S, RHYTHM_LEAD, RHYTHM_S

# Paper geometry, millimetres. x = 0 is the left edge, y = 0 the top edge (SVG's y grows down).
TRACE_X0_MM = 15.0  # t = 0 of every row; the calibration pulse sits left of it
PAPER_WIDTH_MM = TRACE_X0_MM + RHYTHM_S * MM_PER_S + 5.0  # 270
ROW_PITCH_MM = 40.0  # 4 mV between baselines, as a 12-lead printout spaces its rows
FIRST_BASELINE_MM = 30.0
BASELINES_MM = tuple(FIRST_BASELINE_MM + ROW_PITCH_MM * row for row in range(len(LAYOUT) + 1))  # 30 .. 150
PAPER_HEIGHT_MM = BASELINES_MM[-1] + ROW_PITCH_MM / 2 + 5.0  # 175
HEADER_Y_MM = 4.0  # the scale line's text baseline, above the first row's space

# The calibration pulse: 1 mV (10 mm) high, 0.2 s (5 mm) wide, as on paper.
CAL_RISE_X_MM, CAL_FALL_X_MM, CAL_START_X_MM, CAL_END_X_MM = 5.0, 10.0, 2.0, 13.0

LABEL_FONT_MM = 3.5
LABEL_CHAR_MM = 0.62 * LABEL_FONT_MM  # a generous advance width for the sans-serif capitals used
LABEL_PAD_MM = 0.6
LABEL_GAP_MM = 0.8  # clearance kept between a label's box and the nearest trace

# Above this rate the polyline would carry more vertices than any zoom can show apart
# (1000 Hz is 40 vertices per mm of paper); faster recordings are resampled for display.
MAX_DISPLAY_RATE_HZ = 1000.0

GRID_MINOR = "#f3c4c4"
GRID_MAJOR = "#e08a8a"
TRACE = "#111111"


class Geometry(BaseModel):
    """What a browser needs to turn a point on the image back into time and voltage."""

    width_mm: float = PAPER_WIDTH_MM
    height_mm: float = PAPER_HEIGHT_MM
    trace_x0_mm: float = TRACE_X0_MM
    mm_per_s: float = MM_PER_S
    mm_per_mv: float = MM_PER_MV


@dataclass(frozen=True)
class Box:
    """A label's rectangle on the paper (mm)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Trace:
    """One drawn piece of one lead: polyline vertices in paper millimetres."""

    lead: str
    x: np.ndarray
    y: np.ndarray
    rhythm: bool = False


def _fmt(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _points(x: np.ndarray, y: np.ndarray) -> str:
    return " ".join(f"{_fmt(a)},{_fmt(b)}" for a, b in zip(x.tolist(), y.tolist(), strict=True))


def _finite_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of consecutive finite samples (a gap in the data is a gap on paper)."""
    finite = np.isfinite(values)
    if finite.all():
        return [(0, len(values))] if len(values) else []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 2]


def traces_for(signal: np.ndarray, fs: float, lead_names: Sequence[str]) -> list[Trace]:
    """The 13 traces of the standard layout (12 panels + the rhythm strip) in paper millimetres.

    `signal` is (leads, samples) in mV at `fs` Hz with `lead_names` naming its rows; a lead
    the source lacks is left blank (never invented).
    """
    index = {name: row for row, name in enumerate(lead_names)}
    traces: list[Trace] = []

    def add(lead: str, t_from: float, t_to: float, baseline: float, rhythm: bool) -> None:
        if lead not in index:
            return
        first, last = int(round(t_from * fs)), min(signal.shape[1], int(round(t_to * fs)) + 1)
        if last - first < 2:
            return
        values = np.asarray(signal[index[lead], first:last], dtype=np.float64)
        times = np.arange(first, last, dtype=np.float64) / fs
        for start, stop in _finite_runs(values):
            traces.append(Trace(lead, TRACE_X0_MM + times[start:stop] * MM_PER_S,
                                baseline - values[start:stop] * MM_PER_MV, rhythm))

    for row, leads in enumerate(LAYOUT):
        for column, lead in enumerate(leads):
            add(lead, column * COLUMN_S, (column + 1) * COLUMN_S, BASELINES_MM[row], rhythm=False)
    add(RHYTHM_LEAD, 0.0, RHYTHM_S, BASELINES_MM[-1], rhythm=True)
    return traces


def _occupied(traces: Sequence[Trace], x_from: float, x_to: float) -> list[tuple[float, float]]:
    """Vertical extents (top, bottom) that traces cover somewhere between x_from and x_to.

    A polyline is continuous, so over a range of x it covers every y between its lowest and
    highest vertex there; the vertices just outside the range count too (the segments that
    cross its edges).
    """
    spans = []
    for trace in traces:
        if trace.x[0] > x_to or trace.x[-1] < x_from:
            continue
        first = max(0, int(np.searchsorted(trace.x, x_from, side="right")) - 1)
        last = min(len(trace.x), int(np.searchsorted(trace.x, x_to, side="left")) + 1)
        ys = trace.y[first:last]
        if len(ys):
            spans.append((float(ys.min()), float(ys.max())))
    return spans


def label_size(text: str) -> tuple[float, float]:
    return len(text) * LABEL_CHAR_MM + 2 * LABEL_PAD_MM, LABEL_FONT_MM + 2 * LABEL_PAD_MM


def _free_tops(spans: Sequence[tuple[float, float]], low: float, high: float, height: float) -> list[float]:
    """Tops of boxes `height` tall that fit between `low` and `high` touching no span (edges of each gap)."""
    edges = sorted((top - LABEL_GAP_MM, bottom + LABEL_GAP_MM) for top, bottom in spans)
    tops: list[float] = []
    cursor = low
    for top, bottom in [*edges, (high, high)]:
        if min(top, high) - cursor >= height:
            tops += [cursor, min(top, high) - height]
        cursor = max(cursor, bottom)
    return tops


def _fits(y: float, height: float, spans: Sequence[tuple[float, float]]) -> bool:
    return not any(y < bottom + LABEL_GAP_MM and top - LABEL_GAP_MM < y + height for top, bottom in spans)


def place_label(text: str, x_start: float, baseline: float, traces: Sequence[Trace],
                taken: Sequence[Box] = ()) -> Box:
    """Where the label of a panel that starts at `x_start` goes, touching no trace and no other label.

    Within the panel's own row, first: just above the 1 mV level, at the row's top, at its
    bottom, else the free gap nearest the 1 mV level; at the panel's start, then moved right
    2.5 mm at a time (up to 1.5 s into the panel). Only if the row has no room anywhere there,
    the free gap nearest the baseline on the whole paper. A panel whose traces fill the paper's
    whole height for 1.5 s keeps its label at the row's top.
    """
    width, height = label_size(text)
    row_top, row_bottom = baseline - ROW_PITCH_MM / 2, baseline + ROW_PITCH_MM / 2
    paper_top, paper_bottom = 5.0, PAPER_HEIGHT_MM - 0.5
    wanted = baseline - MM_PER_MV - 1.0 - height
    shifts = [x_start + 0.8 + 2.5 * step for step in range(int(1.5 * MM_PER_S / 2.5) + 1)]

    def spans_at(x: float) -> list[tuple[float, float]]:
        return _occupied(traces, x, x + width) + [
            (box.y, box.y + box.height) for box in taken if box.x < x + width and x < box.x + box.width]

    for low, high in ((row_top, row_bottom), (paper_top, paper_bottom)):
        for x in shifts:
            spans = spans_at(x)
            preferred = [wanted, row_top + 0.5, row_bottom - 0.5 - height] if low == row_top else []
            for y in preferred:
                if _fits(y, height, spans):
                    return Box(x, y, width, height)
            tops = _free_tops(spans, max(low, paper_top), min(high, paper_bottom), height)
            if tops:
                return Box(x, min(tops, key=lambda y: abs(y - wanted)), width, height)
    return Box(shifts[0], row_top + 0.5, width, height)


def _grid() -> list[str]:
    minor, major = [], []
    for step in range(int(PAPER_WIDTH_MM) + 1):
        (major if step % 5 == 0 else minor).append(f"M{step} 0V{_fmt(PAPER_HEIGHT_MM)}")
    for step in range(int(PAPER_HEIGHT_MM) + 1):
        (major if step % 5 == 0 else minor).append(f"M0 {step}H{_fmt(PAPER_WIDTH_MM)}")
    return [f'<path d="{"".join(minor)}" stroke="{GRID_MINOR}" stroke-width="0.08" fill="none"/>',
            f'<path d="{"".join(major)}" stroke="{GRID_MAJOR}" stroke-width="0.2" fill="none"/>']


def _calibration(baseline: float) -> str:
    top = baseline - MM_PER_MV  # 1 mV
    return (f'<path class="calibration" d="M{_fmt(CAL_START_X_MM)} {_fmt(baseline)}H{_fmt(CAL_RISE_X_MM)}'
            f'V{_fmt(top)}H{_fmt(CAL_FALL_X_MM)}V{_fmt(baseline)}H{_fmt(CAL_END_X_MM)}" stroke="{TRACE}" '
            'stroke-width="0.25" '
            'fill="none" stroke-linejoin="miter"/>')


def _label(text: str, box: Box) -> str:
    x, y = box.x + LABEL_PAD_MM, box.y + LABEL_PAD_MM + LABEL_FONT_MM * 0.8
    return (f'<text class="lead-label" x="{_fmt(x)}" y="{_fmt(y)}" font-size="{LABEL_FONT_MM}" '
            f'font-family="Helvetica, Arial, sans-serif" font-weight="700" fill="#0d2a4a" '
            f'data-box="{_fmt(box.x)} {_fmt(box.y)} {_fmt(box.width)} {_fmt(box.height)}">{escape(text)}</text>')


def render_svg(signal: np.ndarray, fs: float, lead_names: Sequence[str], *, caption: str = "") -> str:
    """The standard 12-lead layout of `signal` ((leads, samples) mV at `fs` Hz) as an SVG document."""
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"sampling rate must be positive and finite, got {fs!r}")
    traces = traces_for(signal, fs, lead_names)
    width, height = _fmt(PAPER_WIDTH_MM), _fmt(PAPER_HEIGHT_MM)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" '
        f'viewBox="0 0 {width} {height}" data-mm-per-s="{_fmt(MM_PER_S)}" data-mm-per-mv="{_fmt(MM_PER_MV)}" '
        f'data-trace-x0-mm="{_fmt(TRACE_X0_MM)}">',
        f'<rect width="{width}" height="{height}" fill="#fffafa"/>',
        *_grid(),
        f'<text x="{_fmt(TRACE_X0_MM)}" y="{HEADER_Y_MM}" font-size="3" font-family="Helvetica, Arial, sans-serif" '
        f'fill="#333">{escape(f"25 mm/s   10 mm/mV   {fs:g} Hz" + (f"   {caption}" if caption else ""))}</text>',
    ]
    for baseline in BASELINES_MM:
        parts.append(_calibration(baseline))
    for row in range(len(LAYOUT)):  # a short tick where one panel's lead gives way to the next
        for column in range(1, len(LAYOUT[row])):
            x = _fmt(TRACE_X0_MM + column * COLUMN_S * MM_PER_S)
            parts.append(f'<path d="M{x} {_fmt(BASELINES_MM[row] - 2)}V{_fmt(BASELINES_MM[row] + 2)}" '
                         f'stroke="{TRACE}" stroke-width="0.25"/>')
    for trace in traces:
        rhythm = ' data-rhythm="1"' if trace.rhythm else ""
        parts.append(f'<polyline class="trace" data-lead="{escape(trace.lead)}"{rhythm} '
                     f'points="{_points(trace.x, trace.y)}" '
                     f'fill="none" stroke="{TRACE}" stroke-width="0.22" stroke-linejoin="round"/>')
    placed: list[Box] = []
    panels = [(lead, TRACE_X0_MM + column * COLUMN_S * MM_PER_S, BASELINES_MM[row])
              for row, leads in enumerate(LAYOUT) for column, lead in enumerate(leads)]
    for lead, x_start, baseline in [*panels, (RHYTHM_LEAD, TRACE_X0_MM, BASELINES_MM[-1])]:
        placed.append(place_label(lead, x_start, baseline, traces, placed))
        parts.append(_label(lead, placed[-1]))
    parts.append("</svg>")
    return "\n".join(parts)
