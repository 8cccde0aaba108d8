"""Digitising a scanned page: traces in a page image back to leads in mV, only when confident.

    digitise_page(page) -> RasterPage: traces (when confident), whether the image looks like an
                           ECG at all, the quality figures and notes

The steps, each measured on the image itself (classical image processing, numpy/scipy, no model):

1. ink and grid: a trace is dark and grey, a grid is coloured or light. "Ink" is the darkness
   of a pixel's brightest channel (255 - max(R, G, B)), so a red, green or blue grid hardly
   counts as ink; the threshold between grid and trace is Otsu's on the ink of non-white pixels.
2. rotation: the angle (within +-6 degrees) at which the rows of non-white pixels (grid lines,
   baselines, text) line up best, i.e. the horizontal projection is sharpest; the image is
   turned back by it.
3. scale: the grid's period (FFT of the column and row profiles of the grid pixels) is 1 mm or
   5 mm, whichever agrees with the page's size; without a grid, the page's size itself.
4. rows: baselines are the levels the traces dwell at (peaks of the y-histogram of wide ink
   components); a standard layout is recognised by their number: 3 panel rows of 4 leads
   (I/aVR/V1/V4, II/aVL/V2/V5, III/aVF/V3/V6) and 0, 1 or 3 rhythm strips (II; V1, II, V5).
5. calibration: the 1 mV pulse at the left of each row (two vertical strokes and a top) gives
   the gain and the row's 0 mV; without it, the row's isoelectric level and 10 mm/mV.
6. time: 0 s where the rows start, and the axis is fitted through the panel separators (the
   short ticks at 2.5, 5 and 7.5 s) and the rows' end at 10 s, so a slightly wrong grid period
   cannot stretch the traces.
7. traces: per image column, the vertical runs of ink in the row's band; the run of each
   column is chosen by dynamic programming (the path that moves least from column to
   column), so a neighbouring row's QRS or text does not capture it; a long run (a steep
   stroke) gives its two ends in the direction of travel, a peak its tip.

Confidence test: the layout must be recognised, the scale known from the grid or a pulse,
every row found in at least 95 % of its columns with a thin line, the time axis consistent.
Anything less gives no signal (interpretation stays image-only) and a note saying which test
failed; `looks_like_ecg` still tells the non-ECG check that the page shows an ECG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.signal import find_peaks

from ingest.readers.pdf.document import PageContent
from ingest.readers.pdf.layout import PanelTrace

SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
PAGE_SECONDS = 10.0
PANEL_ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
STRIPS = {0: (), 1: ("II",), 3: ("V1", "II", "V5")}
MAX_ROTATION_DEG = 6.0
MIN_COVERAGE = 0.95
MAX_LINE_MM = 0.8  # a trace thicker than this (median run) is a smudge or a photo, not a line
_MAX_POINTS_FOR_ANGLE = 250_000
MIN_AGREEMENT_DB = 10.0  # a lead printed twice must read alike (panel vs rhythm strip)
BOUNDARY_GUARD_S = 0.014  # 0.35 mm at 25 mm/s: the separator tick and the pen's jump


@dataclass
class RasterPage:
    """What digitising one page image found."""

    traces: list[PanelTrace] = field(default_factory=list)
    confident: bool = False
    looks_like_ecg: bool = False
    trace_top: float | None = None  # display mm
    rotation_deg: float = 0.0
    pixels_per_mm: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    level: float  # px (y) where the trace dwells: its isoelectric line
    zero: float  # px (y) of 0 mV: the calibration pulse's foot, else the isoelectric line
    x_start: float  # first and last ink column of the row's trace
    x_end: float
    gain_px_per_mv: float | None  # from the row's calibration pulse


@dataclass(frozen=True)
class _Pulse:
    foot: float  # y of the foot's centre line
    height: float  # px from the foot's centre line to the top's
    right: float  # last column


def digitise_page(page: PageContent) -> RasterPage:
    """Digitise one page image; see the module's docstring for the steps and the confidence test."""
    result = RasterPage()
    rgb = np.asarray(page.render().convert("RGB"))
    # Per pixel, the brightest and the darkest channel (elementwise: reducing over a length-3
    # axis is several times slower in numpy).
    brightest = np.maximum(np.maximum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])
    darkest = np.minimum(np.minimum(rgb[:, :, 0], rgb[:, :, 1]), rgb[:, :, 2])
    angle = _rotation(darkest)
    result.rotation_deg = angle
    if abs(angle) >= 0.05:
        brightest, darkest = (np.asarray(Image.fromarray(channel).rotate(-angle, resample=Image.Resampling.BICUBIC,
                                                                         fillcolor=255))
                              for channel in (brightest, darkest))
    ink = ndimage.gaussian_filter(255.0 - brightest.astype(np.float32), 0.7)
    paper = ndimage.gaussian_filter(255.0 - darkest.astype(np.float32), 0.7)
    threshold = _otsu(ink[paper > 25.0]) if (paper > 25.0).any() else 128.0
    threshold = max(threshold, 35.0)
    mask = ink > threshold
    grid_map = (paper > 20.0) & ~mask
    prior = page.pixels_per_mm
    px_per_mm, grid_found = _grid_scale(grid_map, prior)
    result.pixels_per_mm = px_per_mm
    rows = _rows(mask, px_per_mm)
    result.looks_like_ecg = grid_found and len(rows) >= 3
    if rows:
        result.trace_top = (min(row.level for row in rows) - 15.0 * px_per_mm) / prior
    layout = _layout(len(rows))
    if layout is None:
        result.notes.append(f"page {page.index + 1} image: {len(rows)} trace row(s) found, not a standard "
                            "3x4 layout: not digitised (image-only)")
        return result
    if not grid_found and not any(row.gain_px_per_mv for row in rows):
        result.notes.append(f"page {page.index + 1} image: no grid and no calibration pulse to scale by: "
                            "not digitised (image-only)")
        return result
    traces, failures = _read_rows(mask, ink, rows, layout, px_per_mm, page.index)
    if failures:
        result.notes.append(f"page {page.index + 1} image: not digitised (image-only): {'; '.join(failures)}")
        return result
    result.traces = traces
    result.confident = True
    pulses = sum(row.gain_px_per_mv is not None for row in rows)
    result.notes.append(f"page {page.index + 1} image digitised: {len(rows)} rows (3x4"
                        f"{f' + {len(rows) - 3} rhythm strip(s)' if len(rows) > 3 else ''}, leads by the standard "
                        f"layout), rotation {angle:+.2f} deg, {px_per_mm:.2f} px/mm "
                        f"({'grid' if grid_found else 'page size'}), calibration pulse in {pulses} of {len(rows)} rows")
    return result


# --- image statistics ----------------------------------------------------------------------------

def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in 0-255."""
    counts, edges = np.histogram(values, bins=128, range=(0.0, 255.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    if total == 0:
        return 128.0
    mean = np.cumsum(counts * centres)
    between = (mean[-1] * weight / total - mean) ** 2 / np.maximum(weight * (total - weight), 1)
    return float(centres[int(np.argmax(between))])


def _rotation(darkest: np.ndarray) -> float:
    """The skew in degrees (counter-clockwise positive) that makes rows of dark pixels horizontal."""
    dark = darkest < 215
    ys, xs = np.nonzero(dark)
    if ys.size < 1000:
        return 0.0
    if ys.size > _MAX_POINTS_FOR_ANGLE:
        pick = np.random.default_rng(0).choice(ys.size, _MAX_POINTS_FOR_ANGLE, replace=False)
        ys, xs = ys[pick], xs[pick]
    xs = xs - xs.mean()

    def sharpness(angles: np.ndarray) -> np.ndarray:
        scores = []
        for angle in angles:
            t = np.deg2rad(angle)
            projected = np.round(ys * np.cos(t) + xs * np.sin(t)).astype(np.int64)
            counts = np.bincount(projected - projected.min())
            scores.append(float(np.dot(counts, counts)))
        return np.array(scores)

    coarse = np.arange(-MAX_ROTATION_DEG, MAX_ROTATION_DEG + 1e-9, 0.25)
    best = coarse[int(np.argmax(sharpness(coarse)))]
    fine = np.arange(best - 0.25, best + 0.25 + 1e-9, 0.02)
    return float(fine[int(np.argmax(sharpness(fine)))])


def _period(profile: np.ndarray, low: float, high: float) -> tuple[float | None, float]:
    """The dominant period (px) of a profile between low and high px, and its peak's strength
    (power at the period over the median power in the band)."""
    centred = profile - profile.mean()
    n = centred.size
    if n < 4 * high:
        return None, 0.0
    spectrum = np.abs(np.fft.rfft(centred * np.hanning(n))) ** 2
    frequencies = np.fft.rfftfreq(n)
    band = (frequencies >= 1.0 / high) & (frequencies <= 1.0 / low)
    if band.sum() < 5:
        return None, 0.0
    index = np.flatnonzero(band)
    peak = index[int(np.argmax(spectrum[index]))]
    strength = float(spectrum[peak] / max(np.median(spectrum[index]), 1e-12))
    # Parabolic interpolation of the peak for a sub-bin frequency.
    if 0 < peak < spectrum.size - 1:
        a, b, c = np.log(spectrum[peak - 1:peak + 2] + 1e-12)
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    else:
        shift = 0.0
    frequency = (peak + shift) / n
    return (1.0 / frequency if frequency > 0 else None), strength


def _grid_scale(grid_map: np.ndarray, prior: float) -> tuple[float, bool]:
    """Pixels per paper mm from the grid, and whether a grid was found; the page's scale otherwise.

    A grid is a square pattern: the same strong period across and down the page (a table's
    ruled rows or a photo's texture are periodic one way at most). The period is 1 mm or 5 mm,
    whichever agrees with the page's size.
    """
    periods = []
    for axis in (0, 1):
        period, strength = _period(grid_map.mean(axis=axis).astype(np.float64), 2.5, 8.0 * prior)
        if period is None or strength < 20.0:
            return prior, False
        periods.append(period)
    # The two directions must agree, up to a harmonic (one direction may ring stronger at half
    # or a fifth of the period, when the 1 mm lines are faint or the traces add their own rhythm).
    long, short = max(periods), min(periods)
    harmonic = round(long / short)
    if harmonic > 5 or abs(long / (short * harmonic) - 1.0) > 0.03:
        return prior, False
    period = long
    for mm in (1.0, 5.0):
        if 0.7 * prior <= period / mm <= 1.4 * prior:
            return period / mm, True
    return prior, False


# --- rows -----------------------------------------------------------------------------------------

def _rows(mask: np.ndarray, px_per_mm: float) -> list[_Row]:
    """Trace rows: the levels where wide ink dwells, each with its extent and calibration pulse."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return []
    slices = ndimage.find_objects(labels)
    widths = np.array([s[1].stop - s[1].start for s in slices])
    wide = np.flatnonzero(widths >= 30.0 * px_per_mm) + 1
    if wide.size == 0:
        return []
    trace_mask = np.isin(labels, wide)
    x_first = min(slices[label - 1][1].start for label in wide)
    levels = _dwell_levels(trace_mask, px_per_mm)
    pulses = _pulses(mask, labels, slices, x_first, px_per_mm)
    rows = []
    half = 1.5 * px_per_mm
    spacing = float(np.median(np.diff(levels))) if len(levels) > 1 else 30.0 * px_per_mm
    for level in levels:
        band = labels[max(0, int(level - half)):int(level + half) + 1]
        present = np.unique(band[np.isin(band, wide)])
        if present.size == 0:
            continue
        start = min(slices[label - 1][1].start for label in present)
        end = max(slices[label - 1][1].stop - 1 for label in present)
        if end - start < 60.0 * px_per_mm:
            continue
        near = [pulse for pulse in pulses if abs(pulse.foot - level) < 0.4 * spacing and pulse.right < start + px_per_mm]
        pulse = min(near, key=lambda pulse: abs(pulse.foot - level)) if near else _attached_pulse(mask, level, start,
                                                                                                   px_per_mm)
        rows.append(_Row(level=level, zero=pulse.foot if pulse else level, x_start=float(start), x_end=float(end),
                         gain_px_per_mv=pulse.height if pulse else None))
    return rows


def _dwell_levels(trace_mask: np.ndarray, px_per_mm: float) -> list[float]:
    """Rows' isoelectric levels: where the traces cover the most of the page's width.

    For each y, the share of 1 mm wide columns with trace ink within 0.5 mm of it; a trace
    spends most of its time on its baseline, so each row gives one peak. Rows of a standard
    layout are at least 15 mm apart.
    """
    bin_px = max(1, int(round(px_per_mm)))
    height, width = trace_mask.shape
    columns = width // bin_px
    binned = trace_mask[:, :columns * bin_px].reshape(height, columns, bin_px).any(axis=2)
    reach = max(1, int(round(0.5 * px_per_mm)))
    spread = ndimage.maximum_filter1d(binned.astype(np.uint8), size=2 * reach + 1, axis=0)
    coverage = spread.sum(axis=1).astype(np.float64)
    peaks, _ = find_peaks(coverage, distance=max(1, int(15.0 * px_per_mm)), height=0.3 * coverage.max())
    return [_refine_level(trace_mask, peak, px_per_mm) for peak in peaks]


def _refine_level(trace_mask: np.ndarray, peak: int, px_per_mm: float) -> float:
    """A row's isoelectric level to a fraction of a pixel: the ink centroid around the peak."""
    reach = max(2, int(0.5 * px_per_mm))
    lo, hi = max(0, peak - reach), min(trace_mask.shape[0], peak + reach + 1)
    counts = trace_mask[lo:hi].sum(axis=1).astype(np.float64)
    return float(np.dot(np.arange(lo, hi), counts) / counts.sum()) if counts.sum() else float(peak)


def _pulses(mask: np.ndarray, labels: np.ndarray, slices: list, x_first: int, px_per_mm: float) -> list[_Pulse]:
    """Calibration pulses standing left of the traces: components 2-12 mm wide and 4-23 mm tall,
    made of a foot, two vertical strokes and a top."""
    found = []
    for index, bounds in enumerate(slices):
        if bounds is None:
            continue
        rows, cols = bounds
        width, height = (cols.stop - cols.start) / px_per_mm, (rows.stop - rows.start) / px_per_mm
        if not (2.0 <= width <= 12.0 and 4.0 <= height <= 23.0):
            continue
        if cols.stop - 1 > x_first + px_per_mm or cols.start < x_first - 20.0 * px_per_mm:
            continue
        pulse = _pulse_shape(labels[bounds] == index + 1, rows.start, cols.start, px_per_mm)
        if pulse is not None:
            found.append(pulse)
    return found


def _attached_pulse(mask: np.ndarray, level: float, start: int, px_per_mm: float) -> _Pulse | None:
    """A pulse drawn so close to its row's trace that they touch: the first two tall stroke
    groups within the row's first 12 mm, and the block around them checked as a pulse."""
    x0, x1 = int(start), int(start + 12.0 * px_per_mm)
    y0 = int(max(0, level - 23.0 * px_per_mm))
    region = mask[y0:int(level + 3.0 * px_per_mm), x0:x1]
    if region.size == 0:
        return None
    has = region.any(axis=0)
    top = region.argmax(axis=0)
    bottom = region.shape[0] - 1 - region[::-1].argmax(axis=0)
    tall = np.flatnonzero(has & (bottom - top + 1 >= 4.0 * px_per_mm))
    if tall.size < 2:
        return None
    groups = np.split(tall, np.flatnonzero(np.diff(tall) > 2) + 1)
    if len(groups) < 2:
        return None
    first, second = groups[0], groups[1]
    rows = slice(max(0, int(top[first].min()) - 1), int(bottom[first].max()) + 2)
    columns = slice(0, min(region.shape[1], int(second.max() + 1.5 * px_per_mm)))
    return _pulse_shape(region[rows, columns], y0 + rows.start, x0, px_per_mm)


def _pulse_shape(block: np.ndarray, top: int, left: int, px_per_mm: float) -> _Pulse | None:
    """Foot and height of a pulse drawn in `block` (its component), or None if it is no pulse."""
    column_ink = block.sum(axis=0)
    strokes = np.flatnonzero(column_ink >= 0.8 * block.shape[0])
    if strokes.size < 2:
        return None
    groups = np.split(strokes, np.flatnonzero(np.diff(strokes) > 2) + 1)
    if len(groups) != 2:
        return None
    first, second = groups
    if not 2.0 <= (second.mean() - first.mean()) / px_per_mm <= 9.0:
        return None
    # Away from the strokes (their anti-aliased edges carry their height): the top's line
    # between them, in the upper 2 mm; the foot's line outside them, in the lower 2 mm.
    margin, reach = 2, int(round(2.0 * px_per_mm))
    between = block[:reach, first.max() + 1 + margin:second.min() - margin]
    lower = block[-reach:]
    outside = np.concatenate([lower[:, :max(0, first.min() - margin)], lower[:, second.max() + 1 + margin:]], axis=1)
    if between.size == 0 or not between.any():
        return None
    top_y = _centroid(between)
    if outside.size and outside.any():
        foot_y = block.shape[0] - reach + _centroid(outside)
    else:  # a pulse without a foot (GE MUSE): its strokes end on the baseline
        foot_y = float(np.flatnonzero(block[:, np.concatenate([first, second])].any(axis=1)).max())
    if foot_y - top_y < 3.5 * px_per_mm:
        return None
    return _Pulse(foot=top + foot_y, height=foot_y - top_y, right=float(left + block.shape[1] - 1))


def _centroid(block: np.ndarray) -> float:
    """Mean row index of the ink in a block (rows are y)."""
    counts = block.sum(axis=1).astype(np.float64)
    return float(np.dot(np.arange(counts.size), counts) / counts.sum()) if counts.sum() else block.shape[0] / 2


def _layout(count: int) -> tuple[tuple[str, ...], ...] | None:
    """Leads of each row, top to bottom, for a recognised number of rows."""
    strips = count - len(PANEL_ROWS)
    if strips not in STRIPS:
        return None
    return PANEL_ROWS + tuple((lead,) for lead in STRIPS[strips])


# --- traces -----------------------------------------------------------------------------------------

def _read_rows(mask: np.ndarray, ink: np.ndarray, rows: list[_Row], layout: tuple[tuple[str, ...], ...], px_per_mm: float,
               page_index: int) -> tuple[list[PanelTrace], list[str]]:
    """Each row's trace split into its panels, on a time axis common to the page."""
    failures: list[str] = []
    ordered = sorted(rows, key=lambda row: row.level)
    levels = [row.level for row in ordered]
    starts = np.array([row.x_start for row in ordered])
    ends = np.array([row.x_end for row in ordered])
    if np.ptp(starts) > 2.0 * px_per_mm or np.ptp(ends) > 2.0 * px_per_mm:
        failures.append("the rows do not start and end together")
    px_per_s = _time_axis(float(np.median(ends)), float(np.median(starts)), px_per_mm)
    if px_per_s is None:
        failures.append("the rows' length disagrees with 10 s at 25 mm/s on this grid")
        return [], failures
    x_origin = _time_origin(starts, ends, px_per_s, px_per_mm)
    traces: list[PanelTrace] = []
    for index, (row, leads) in enumerate(zip(ordered, layout, strict=True)):
        above = levels[index - 1] if index > 0 else row.level - 2.0 * (levels[1] - levels[0])
        below = levels[index + 1] if index + 1 < len(levels) else row.level + (levels[-1] - levels[-2])
        band = (int(max(0, (above + row.level) / 2)), int(min(mask.shape[0], (row.level + below) / 2)))
        xs, ys, coverage, thickness = _follow(mask, ink, band, int(np.ceil(x_origin)), int(round(row.x_end)),
                                              row.level)
        if coverage < MIN_COVERAGE:
            failures.append(f"row {index + 1} found in {coverage:.0%} of its columns")
            continue
        if thickness > MAX_LINE_MM * px_per_mm:
            failures.append(f"row {index + 1} is {thickness / px_per_mm:.1f} mm thick, not a line")
            continue
        gain = row.gain_px_per_mv or GAIN_MM_MV * px_per_mm
        seconds = (xs - x_origin) / px_per_s
        millivolts = (row.zero - ys) / gain
        if np.abs(millivolts).max() > 8.0:
            failures.append(f"row {index + 1} reaches {np.abs(millivolts).max():.0f} mV")
            continue
        traces += _panels(seconds, millivolts, leads, page_index)
    if not failures and (disagreement := _twice_printed_disagree(traces)) is not None:
        failures.append(disagreement)
    return traces, failures


def _twice_printed_disagree(traces: list[PanelTrace]) -> str | None:
    """A lead printed twice (II in its panel and in the rhythm strip) must read the same both
    times: if not, the time axis or the rows were read wrong, and nothing is trusted."""
    by_lead: dict[str, list[PanelTrace]] = {}
    for trace in traces:
        by_lead.setdefault(trace.lead, []).append(trace)
    for lead, printed in by_lead.items():
        if len(printed) < 2:
            continue
        strip, panel = sorted(printed, key=lambda trace: -trace.samples.size)[:2]
        offset = int(round((panel.start_s - strip.start_s) * 500.0))
        if offset < 0 or offset + panel.samples.size > strip.samples.size:
            continue
        same = strip.samples[offset:offset + panel.samples.size]
        inner = slice(10, -10)  # the panel's edges hold values; compare what was read
        power = float(np.mean(panel.samples[inner] ** 2))
        noise = float(np.mean((same[inner] - panel.samples[inner]) ** 2))
        if noise > 0 and power > 0 and 10 * np.log10(power / noise) < MIN_AGREEMENT_DB:
            return (f"lead {lead} reads differently in its panel and in the rhythm strip "
                    f"({10 * np.log10(power / noise):.1f} dB)")
    return None


def _panels(seconds: np.ndarray, millivolts: np.ndarray, leads: tuple[str, ...], page_index: int) -> list[PanelTrace]:
    """A row's trace cut into its panels, each sampled at 500 Hz over its whole span.

    Near a panel boundary the row holds the separator tick and the jump from one lead to the
    next (at the row's start, perhaps the calibration pulse), so points within
    BOUNDARY_GUARD_S of it are left out and the panel's edge holds its nearest read value.
    """
    panel = PAGE_SECONDS / len(leads)
    traces = []
    for column, lead in enumerate(leads):
        lo, hi = column * panel, (column + 1) * panel
        # The row's own ends too: a calibration pulse may touch its start.
        keep = (seconds >= lo + BOUNDARY_GUARD_S) & (seconds < hi - BOUNDARY_GUARD_S)
        if keep.sum() < 10:
            continue
        grid = np.arange(round(lo * 500.0), round(hi * 500.0)) / 500.0
        order = np.argsort(seconds[keep], kind="stable")
        samples = np.interp(grid, seconds[keep][order], millivolts[keep][order])
        traces.append(PanelTrace(lead=lead, start_s=float(grid[0]), samples=samples, page=page_index))
    return traces


def _time_origin(starts: np.ndarray, ends: np.ndarray, px_per_s: float, px_per_mm: float) -> float:
    """The column index (pixel centres at index + 0.5) where 0 s lies, to a fraction of a pixel.

    A row that runs the whole 10 s (a rhythm strip; with some exporters every row) tells best:
    its line sticks out of its true ends by its cap, as much on the left as on the right, so
    the middle of its first and last ink columns is the middle of the recording. Panel rows
    may stop a few samples short of 10 s (GE MUSE draws 2.476 s panels); without a full row,
    the rows' first ink column is the start.
    """
    span = (PAGE_SECONDS - 0.002) * px_per_s  # 10 s less one sample at 500 Hz
    drawn = ends + 1.0 - starts
    full = np.abs(drawn - span) <= 0.3 * px_per_mm
    if full.any():
        return float(np.median((starts[full] + ends[full] + 1.0 - span) / 2.0)) - 0.5
    # No row is exactly 10 s long: its start is hidden in a calibration pulse that touches it.
    # The longest-reaching row (the rhythm strip) still ends at 10 s: count back from its end,
    # less half a line (0.1 mm) for the cap.
    return float(ends.max() + 1.0 - 0.1 * px_per_mm - span) - 0.5


def _time_axis(x_end: float, x_origin: float, px_per_mm: float) -> float | None:
    """Pixels per second at 25 mm/s on this grid, if the rows' length agrees with 10 s (within 3 %,
    or up to 15 mm longer when the calibration pulse touches the trace)."""
    from_length = (x_end - x_origin) / PAGE_SECONDS
    from_grid = SPEED_MM_S * px_per_mm
    return from_grid if -0.03 <= from_length / from_grid - 1.0 <= 0.03 + 15.0 / (SPEED_MM_S * PAGE_SECONDS) else None


def _follow(mask: np.ndarray, ink: np.ndarray, band: tuple[int, int], x0: int, x1: int,
            baseline: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The trace through a row's band: points (x, y), the share of columns with ink, line thickness.

    Per column the vertical runs of ink are the candidates; dynamic programming picks one run
    per column so the path moves as little as possible between neighbouring columns.
    """
    top, bottom = band
    window = mask[top:bottom, x0:x1 + 1]
    height, width = window.shape
    padded = np.zeros((height + 2, width), dtype=bool)
    padded[1:-1] = window
    starts_y, starts_x = np.nonzero(padded[1:-1] & ~padded[:-2])
    ends_y, ends_x = np.nonzero(padded[1:-1] & ~padded[2:])
    order_s = np.lexsort((starts_y, starts_x))
    order_e = np.lexsort((ends_y, ends_x))
    run_x = starts_x[order_s]
    run_top = starts_y[order_s].astype(np.float64) + top
    run_bottom = ends_y[order_e].astype(np.float64) + top
    if run_x.size == 0:
        return np.zeros(0), np.zeros(0), 0.0, 0.0
    column_start = np.searchsorted(run_x, np.arange(width))
    column_stop = np.searchsorted(run_x, np.arange(width), side="right")

    # Dynamic programming over columns: cost of moving = vertical gap between the runs.
    previous_ids: np.ndarray | None = None
    previous_cost: np.ndarray | None = None
    back: list[tuple[np.ndarray, np.ndarray]] = []
    chosen_columns = []
    for column in range(width):
        ids = np.arange(column_start[column], column_stop[column])
        if ids.size == 0:
            continue
        if ids.size > 8:  # keep the runs nearest the baseline
            distance = np.abs((run_top[ids] + run_bottom[ids]) / 2 - baseline)
            ids = ids[np.argsort(distance)[:8]]
        if previous_ids is None:
            cost = 0.05 * np.abs((run_top[ids] + run_bottom[ids]) / 2 - baseline)
            link = np.full(ids.size, -1)
        else:
            gap = np.maximum(0.0, np.maximum(run_top[ids][:, None] - run_bottom[previous_ids][None, :],
                                             run_top[previous_ids][None, :] - run_bottom[ids][:, None]))
            total = previous_cost[None, :] + gap
            link = np.argmin(total, axis=1)
            cost = total[np.arange(ids.size), link]
        back.append((ids, link))
        chosen_columns.append(column)
        previous_ids, previous_cost = ids, cost
    # Walk back.
    path = np.empty(len(back), dtype=np.int64)
    k = int(np.argmin(previous_cost))
    for step in range(len(back) - 1, -1, -1):
        ids, link = back[step]
        path[step] = ids[k]
        k = int(link[k]) if link[k] >= 0 else 0
    columns = np.array(chosen_columns)
    tops, bottoms = run_top[path], run_bottom[path]
    lengths = bottoms - tops + 1
    # The pen's width: the short runs, where the line crosses its column flat (a noisy trace
    # moves within most columns, which lengthens their runs, but not all of them).
    thickness = float(np.percentile(lengths, 25))
    centres = _ink_centres(ink, columns + x0, tops, bottoms)
    xs, ys = _stroke_points(columns + x0, tops, bottoms, centres, thickness)
    return xs, ys, columns.size / max(width, 1), thickness


def _ink_centres(ink: np.ndarray, x: np.ndarray, tops: np.ndarray, bottoms: np.ndarray) -> np.ndarray:
    """The ink-weighted centre of each run, one pixel either side included: sub-pixel y."""
    lo = np.maximum(tops.astype(np.int64) - 1, 0)
    span = int((bottoms - tops).max()) + 3
    rows = lo[:, None] + np.arange(span)[None, :]
    inside = rows <= (bottoms.astype(np.int64) + 1)[:, None]
    rows = np.minimum(rows, ink.shape[0] - 1)
    weights = np.where(inside, ink[rows, x.astype(np.int64)[:, None]], 0.0)
    weights = np.maximum(weights - weights.min(axis=1, keepdims=True), 0.0)
    total = weights.sum(axis=1)
    centre = (weights * rows).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, centre, (tops + bottoms) / 2)


def _stroke_points(x: np.ndarray, tops: np.ndarray, bottoms: np.ndarray, centres: np.ndarray,
                   thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """One point per column: the centre of its run (where a line crossing the column is at the
    column's centre), except at a peak, whose tip is the run's far end less half the line."""
    half = thickness / 2
    before = np.concatenate([[centres[0]], centres[:-1]])
    after = np.concatenate([centres[1:], [centres[-1]]])
    long_run = (bottoms - tops + 1) > thickness + 1.0
    up_peak = long_run & (before > centres) & (after > centres)  # y grows downwards
    down_peak = long_run & (before < centres) & (after < centres)
    ys = np.where(up_peak, tops + half, np.where(down_peak, bottoms - half, centres))
    return x.astype(np.float64), ys.astype(np.float64)
