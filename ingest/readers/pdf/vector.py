"""Vector-trace recovery: the signal back from a PDF that draws its traces as paths.

    recover_vector_page(page) -> VectorPage: the page's traces as PanelTraces, what the page
                                 shows (grid, pulses, traces), and notes

Most cart and ECG-management exports (GE MUSE and CardioSoft, Schiller, Philips, Mortara)
draw every lead as a polyline of the recorded samples. Reading those points back is exact
up to the drawing's precision, once three things are known, each from the page itself:

- which lead a trace is: the lead label printed at the start of its panel (the nearest
  label within a few millimetres of the trace's first point). A page that prints no text at
  all may still be read by the standard 3x4 (+ rhythm), 6x2 or 12x1 arrangement; a trace
  whose label is not one of the twelve (V4r, V7) is left out;
- the scale: millimetres from the grid's pitch (1 mm or 5 mm lines; a page scaled to fit
  has a pitch of, e.g., 0.95 mm), millivolts from the calibration pulse (a 1 mV step: its
  height is the gain), seconds from the paper speed the page prints (25 mm/s when it prints
  none). The printed gain is used where no pulse is drawn;
- where 0 mV is: the foot of the row's calibration pulse (devices draw each lead around the
  row's baseline); without a pulse, the trace's median.

Subpaths that continue one another (a trace split into pieces, a pulse drawn as separate
strokes) are joined first. A page whose "traces" have no lead labels and no standard
arrangement (a chart, a drawing) gives no signal.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.readers.pdf.document import PageContent, Polyline, Word
from ingest.readers.pdf.layout import (
    DEFAULT_GAIN_MM_MV,
    DEFAULT_SPEED_MM_S,
    PageScale,
    PanelTrace,
    paper_scale,
    sample_polyline,
)
from ingest.readers.pdf.text import lead_label

# A trace: at least this many points, this wide (mm on the page), mostly drawn left to right.
MIN_TRACE_POINTS = 16
MIN_TRACE_WIDTH_MM = 12.0
MAX_BACKWARD_FRACTION = 0.05
# A panel shorter than this (s) is a median complex or a marker, not a stretch of recording.
MIN_PANEL_S = 1.2
# A subpath continues the previous one when it starts on the point where that one ended (an
# exporter splitting a long path repeats the point); the next panel of a row starts one
# sample further on, so it is never joined by this rule.
_JOIN_MM = 0.01
_STRAIGHT_MM = 0.05

STANDARD_ARRANGEMENTS: dict[tuple[int, int], tuple[tuple[str, ...], ...]] = {
    # (rows of panels, panels per row) -> leads row by row, left to right
    (3, 4): (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6")),
    (6, 2): (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6")),
    (12, 1): tuple((lead,) for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")),
}
# Full-width rhythm strips under a 3x4 page, by how many there are (GE prints V1, II, V5).
RHYTHM_STRIPS = {1: ("II",), 2: ("II", "V5"), 3: ("V1", "II", "V5")}


@dataclass(frozen=True)
class Pulse:
    """A calibration pulse: a step of 1 mV. base_y is 0 mV of its row, height the gain (page mm)."""

    colour: tuple[int, int, int]
    x0: float
    x1: float
    base_y: float
    height: float


@dataclass(frozen=True)
class Trace:
    points: np.ndarray  # (n, 2) display mm
    colour: tuple[int, int, int] = (0, 0, 0)

    # Cached: leads are named by comparing every trace with every label and every other trace.
    @functools.cached_property
    def x0(self) -> float:
        return float(self.points[:, 0].min())

    @functools.cached_property
    def x1(self) -> float:
        return float(self.points[:, 0].max())

    @functools.cached_property
    def baseline(self) -> float:
        return float(np.median(self.points[:, 1]))


@dataclass
class VectorPage:
    """What the vector reading of one page found."""

    traces: list[PanelTrace] = field(default_factory=list)
    trace_top: float | None = None  # where the traces begin (display mm): the header is above it
    grid_pitch_mm: float | None = None  # only a pitch of 1 or 5 mm (within 25 %) counts as an ECG grid
    pulses: int = 0
    candidate_traces: int = 0
    trace_rows: int = 0  # distinct rows (baselines at least 8 mm apart) the candidate traces lie in
    scale: PageScale | None = None
    notes: list[str] = field(default_factory=list)


def recover_vector_page(page: PageContent) -> VectorPage:
    """The traces a page draws, as leads in mV on the page's time axis."""
    result = VectorPage()
    labels = [word for word in page.words if lead_label(word.text) is not None]
    chains = _chains(page.paths, labels)
    grid = [chain for chain in chains if _is_grid_line(chain)]
    pitch = _grid_pitch(grid)
    ecg_pitch = pitch is not None and any(0.8 * mm <= pitch <= 1.25 * mm for mm in (1.0, 5.0))
    result.grid_pitch_mm = pitch if ecg_pitch else None
    pulses = [pulse for chain in chains if (pulse := _pulse(chain)) is not None]
    result.pulses = len(pulses)
    # The grid's colours: those of many straight lines (a single black frame line is no grid).
    per_colour = Counter(chain.colour for chain in grid)
    grid_colours = {colour for colour, count in per_colour.items() if count >= 10}
    traces = [Trace(chain.points, chain.colour) for chain in chains
              if chain.colour not in grid_colours and _is_trace(chain)]
    result.candidate_traces = len(traces)
    if not traces:
        return result
    baselines = np.sort([trace.baseline for trace in traces])
    result.trace_rows = 1 + int((np.diff(baselines) >= 8.0).sum())
    # Where the header ends: 8 mm over the first row's baseline (not the highest point of a
    # trace: a tall R wave of the first row may reach up beside the header's text).
    result.trace_top = min(trace.baseline for trace in traces) - 8.0
    scale = _page_scale(page.words, result.grid_pitch_mm, pulses)
    result.scale = scale
    named, how = _name_traces(traces, page.words)
    if not named:
        if traces:
            result.notes.append(f"page {page.index + 1}: {len(traces)} drawn trace(s) without lead labels "
                                "or a standard arrangement: not read as leads")
        return result
    x_origin = min(trace.x0 for trace, _ in named)
    # Pulses mark each row's 0 mV only when there is one per row (a single legend pulse, as
    # Schiller prints, gives the gain and nothing about where any row's 0 mV lies).
    row_spacing = _row_spacing([trace for trace, _ in named])
    per_row = len(pulses) >= 0.5 * _count_rows([trace for trace, _ in named], row_spacing)
    zero_pulses = pulses if per_row else []
    for trace, lead in named:
        pulse = _row_pulse(trace, zero_pulses, row_spacing)
        gain_page_mm = pulse.height if pulse is not None else scale.gain_mm_mv / scale.mm_per_page_mm
        base = pulse.base_y if pulse is not None else isoelectric_level(trace.points[:, 1], gain_page_mm)
        seconds = (trace.points[:, 0] - x_origin) * scale.mm_per_page_mm / scale.speed_mm_s
        millivolts = (base - trace.points[:, 1]) / gain_page_mm
        start, samples = sample_polyline(seconds, millivolts)
        if samples.size / 500.0 < MIN_PANEL_S:
            continue
        result.traces.append(PanelTrace(lead=lead, start_s=start, samples=samples, page=page.index))
    with_pulse = sum(_row_pulse(trace, zero_pulses, row_spacing) is not None for trace, _ in named)
    result.notes.append(
        f"page {page.index + 1}: {len(result.traces)} trace(s) read as leads ({how}); "
        f"{scale.speed_mm_s:g} mm/s ({scale.speed_source}), {scale.gain_mm_mv:.3g} mm/mV ({scale.gain_source}); "
        f"0 mV from a calibration pulse for {with_pulse} of {len(named)}, else the trace's isoelectric level"
        + (f"; grid pitch {result.grid_pitch_mm:.2f} mm" if result.grid_pitch_mm else "; no vector grid"))
    return result


# --- shapes ---------------------------------------------------------------------------------------

def _chains(paths: Sequence[Polyline], labels: Sequence[Word] = ()) -> list[Polyline]:
    """Consecutive subpaths of one colour whose ends meet, joined into one polyline each,
    except where a lead label starts just right of the meeting point (a new panel)."""
    chains: list[Polyline] = []
    for path in paths:
        if chains and chains[-1].colour == path.colour and not chains[-1].closed:
            last = chains[-1].points[-1]
            meets = math.hypot(path.points[0, 0] - last[0], path.points[0, 1] - last[1]) <= _JOIN_MM
            if meets and not _label_starts_at(last, labels):
                chains[-1] = Polyline(np.vstack([chains[-1].points, path.points[1:]]), path.colour, path.closed)
                continue
        chains.append(path)
    return chains


def _label_starts_at(point: np.ndarray, labels: Sequence[Word]) -> bool:
    """Whether a lead label starts just right of `point` (so a new panel begins there)."""
    return any(-1.0 <= word.box[0] - point[0] <= 5.0 and abs(word.centre[1] - point[1]) <= 15.0 for word in labels)


def _is_grid_line(chain: Polyline) -> bool:
    """A straight horizontal or vertical line at least 10 mm long."""
    if len(chain.points) > 3:
        return False
    dx, dy = chain.x_extent, chain.y_extent
    return (dx <= _STRAIGHT_MM and dy >= 10.0) or (dy <= _STRAIGHT_MM and dx >= 10.0)


def _grid_pitch(grid: Sequence[Polyline]) -> float | None:
    """The grid's line spacing in page mm (the smallest spacing that recurs), if there is a grid."""
    xs = np.array([chain.points[0, 0] for chain in grid if chain.x_extent <= _STRAIGHT_MM])
    if xs.size < 10:
        return None
    positions = np.unique(np.round(xs, 2))
    gaps = np.diff(positions)
    gaps = gaps[gaps > 0.3]
    if gaps.size < 8:
        return None
    smallest = np.percentile(gaps, 10)
    common = gaps[np.abs(gaps - smallest) <= 0.1 * smallest]
    return float(np.median(common)) if common.size >= 0.3 * gaps.size else None


def _pulse(chain: Polyline) -> Pulse | None:
    """A calibration pulse: 1.5-15 mm wide, 2.5-42 mm tall, its points on two levels only."""
    points = chain.points
    if len(points) < 4 or len(points) > 400:
        return None
    width, height = chain.x_extent, chain.y_extent
    if not (1.5 <= width <= 15.0 and 2.5 <= height <= 42.0):
        return None
    y = points[:, 1]
    top, base = float(y.min()), float(y.max())
    on_levels = (np.abs(y - top) <= 0.05 * height) | (np.abs(y - base) <= 0.05 * height)
    if on_levels.mean() < 0.9 or not (np.abs(y - top) <= 0.05 * height).any():
        return None
    return Pulse(colour=chain.colour, x0=float(points[:, 0].min()), x1=float(points[:, 0].max()), base_y=base,
                 height=base - top)


def _is_trace(chain: Polyline) -> bool:
    points = chain.points
    # A flat lead (aVL on a 60-degree axis) is still a trace: many points on one level, where
    # a grid line has two.
    if len(points) < MIN_TRACE_POINTS or chain.x_extent < MIN_TRACE_WIDTH_MM:
        return False
    steps = np.diff(points[:, 0])
    return float((steps < -0.05).mean()) <= MAX_BACKWARD_FRACTION


# --- leads and scale -----------------------------------------------------------------------------

def _name_traces(traces: Sequence[Trace], words: Sequence[Word]) -> tuple[list[tuple[Trace, str]], str]:
    """Each trace with its lead: by the nearest printed label, else by a standard arrangement."""
    labels = [(word, lead) for word in words if (lead := lead_label(word.text)) is not None]
    if labels:
        return _by_labels(traces, labels), "leads by their printed labels"
    if not words:
        named = _by_arrangement(traces)
        return named, "leads by the standard layout (the page prints no labels)"
    return [], ""


def _by_labels(traces: Sequence[Trace], labels: Sequence[tuple[Word, str]]) -> list[tuple[Trace, str]]:
    """Greedy nearest pairing of labels and trace starts (each used once)."""
    row_gap = _row_spacing(traces)
    pairs = []
    for t_index, trace in enumerate(traces):
        for l_index, (word, _lead) in enumerate(labels):
            dx = word.box[0] - trace.x0
            dy = abs(word.centre[1] - trace.baseline)
            if -20.0 <= dx <= 10.0 and dy <= 0.6 * row_gap:
                pairs.append((dy + 0.5 * abs(dx), t_index, l_index))
    named: list[tuple[Trace, str]] = []
    used_traces, used_labels = set(), set()
    for _, t_index, l_index in sorted(pairs):
        if t_index in used_traces or l_index in used_labels:
            continue
        used_traces.add(t_index)
        used_labels.add(l_index)
        named.append((traces[t_index], labels[l_index][1]))
    return named


def _row_spacing(traces: Sequence[Trace]) -> float:
    """The distance between neighbouring rows of traces (30 mm when there is one row)."""
    baselines = np.unique(np.round([trace.baseline for trace in traces], 0))
    gaps = np.diff(baselines)
    gaps = gaps[gaps > 5.0]
    return float(np.median(gaps)) if gaps.size else 30.0


def _by_arrangement(traces: Sequence[Trace]) -> list[tuple[Trace, str]]:
    """Leads by position when the page has rows x columns of a standard arrangement."""
    spacing = _row_spacing(traces)
    rows: list[list[Trace]] = []
    for trace in sorted(traces, key=lambda trace: trace.baseline):
        if rows and abs(trace.baseline - np.median([t.baseline for t in rows[-1]])) < 0.5 * spacing:
            rows[-1].append(trace)
        else:
            rows.append([trace])
    rows = [sorted(row, key=lambda trace: trace.x0) for row in rows]
    widest = max(len(row) for row in rows)
    panel_rows = [row for row in rows if len(row) == widest]
    strips = [row for row in rows if len(row) == 1 and widest > 1]
    layout = STANDARD_ARRANGEMENTS.get((len(panel_rows), widest))
    if layout is None or len(panel_rows) + len(strips) != len(rows):
        return []
    if strips and (widest != 4 or len(strips) not in RHYTHM_STRIPS):
        return []
    named = [(trace, lead) for row, leads in zip(panel_rows, layout, strict=True)
             for trace, lead in zip(row, leads, strict=True)]
    if strips:
        named += [(row[0], lead) for row, lead in zip(strips, RHYTHM_STRIPS[len(strips)], strict=True)]
    return named


def _page_scale(words: Sequence[Word], pitch: float | None, pulses: Sequence[Pulse]) -> PageScale:
    """Speed, gain and paper mm per page mm, each from the best source the page offers."""
    speed, gain = paper_scale(words)
    mm_per_page_mm, scale_known = 1.0, False
    if pitch is not None:
        for paper_pitch in (1.0, 5.0):
            if 0.8 * paper_pitch <= pitch <= 1.25 * paper_pitch:
                mm_per_page_mm, scale_known = paper_pitch / pitch, True
    pulse_height = float(np.median([pulse.height for pulse in pulses])) if pulses else None
    if not scale_known and pulse_height is not None and gain is not None:
        ratio = gain / pulse_height  # a page printed at 95 % shows a 9.5 mm pulse for 10 mm/mV
        if 0.8 <= ratio <= 1.25:
            mm_per_page_mm = ratio
    if pulse_height is not None:
        gain_mm_mv, gain_source = pulse_height * mm_per_page_mm, "calibration pulse"
    elif gain is not None:
        gain_mm_mv, gain_source = gain, "printed on the page"
    else:
        gain_mm_mv, gain_source = DEFAULT_GAIN_MM_MV, "assumed: neither pulse nor gain printed"
    return PageScale(speed_mm_s=speed or DEFAULT_SPEED_MM_S, gain_mm_mv=gain_mm_mv, mm_per_page_mm=mm_per_page_mm,
                     speed_source="printed on the page" if speed else "assumed: no speed printed",
                     gain_source=gain_source)


def isoelectric_level(y: np.ndarray, mm_per_mv: float) -> float:
    """The level a trace dwells at most (its PR and TP segments): the mode of its y values.

    Used as 0 mV where no calibration pulse marks the row's baseline; closer to the device's
    zero than the median, which T waves and ST shifts pull away. Weighted by time, so the
    many points of a steep QRS stroke do not count more than a flat stretch.
    """
    bin_mm = max(0.02 * mm_per_mv, 1e-3)  # 0.02 mV
    edges = np.arange(y.min() - bin_mm, y.max() + 2 * bin_mm, bin_mm)
    if edges.size < 3:
        return float(np.median(y))
    counts, _ = np.histogram(y, bins=edges)
    smooth = np.convolve(counts, np.ones(5) / 5, mode="same")
    peak = int(np.argmax(smooth))
    coarse = (edges[peak] + edges[peak + 1]) / 2
    # Refined: the median of the points within 0.05 mV of the coarse mode.
    near = y[np.abs(y - coarse) <= 2.5 * bin_mm]
    return float(np.median(near)) if near.size else float(coarse)


def _count_rows(traces: Sequence[Trace], spacing: float) -> int:
    """How many rows the traces lie in (baselines less than half a row apart share one)."""
    baselines = np.sort([trace.baseline for trace in traces])
    return 1 + int((np.diff(baselines) > 0.5 * spacing).sum()) if baselines.size else 0


def _row_pulse(trace: Trace, pulses: Sequence[Pulse], row_spacing: float) -> Pulse | None:
    """The calibration pulse of a trace's row: drawn in the trace's colour, left of it, its foot
    nearer the trace's baseline than any other pulse's and within 40 % of a row."""
    best = None
    for pulse in pulses:
        if pulse.x0 > trace.x0 + 1.0 or pulse.colour != trace.colour:
            continue
        distance = abs(pulse.base_y - trace.baseline)
        if distance <= 0.4 * row_spacing and (best is None or distance < best[0]):
            best = (distance, pulse)
    return best[1] if best else None
