"""Beats of a 12-lead ECG: where they are, which look alike, and their median beat.

The first half of measuring an ECG (`ingest.measure.features` is the entry point):

    signal (12 x N mV)  --trailing zero padding cut, flat leads set aside----> usable leads
        --5-30 Hz band, slope^2 per lead, averaged over leads, 100 ms mean---> QRS energy
        --peaks above an adaptive threshold, T waves rejected, gaps searched-> R detections
        --detections with no quiet stretch around them flagged (artefact)----> in_noise
        --QRS templates correlated, beats re-aligned to the dominant one-----> fiducials, classes
        --baseline: a spline through each beat's PR segment------------------> corrected signal
        --windows around each fiducial, sample-wise median of dominant beats-> median beat

Everything is vectorised numpy/scipy over leads and beats: a 10 s 12-lead ECG takes a few
milliseconds. The detector combines all usable leads, so one lead with noise or a tiny QRS
does not lose beats, and normalises each lead so no single lead dominates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import butter, find_peaks, sosfilt, sosfilt_zi

try:  # the C loop behind scipy.signal.sosfilt, without its per-call checks and copies (see filtfilt)
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # a scipy that moved it: the public function, which gives the same numbers
    _sosfilt = None

# A lead whose QRS-band standard deviation is below this is flat (disconnected, or zero).
FLAT_LEAD_SD_MV = 0.004
# The QRS energy band: most QRS power lies in 5-30 Hz, most P/T power and baseline below it.
QRS_BAND_HZ = (5.0, 30.0)
# No two QRS complexes closer than this (300 bpm): the refractory period of the detector.
REFRACTORY_S = 0.2
# A detection is a beat when its energy reaches this share of the record's typical QRS energy.
DETECTION_FRACTION = 0.3
# A detection whose surroundings (see `in_noise`) carry this share of its own QRS energy
# sits in noise (an artefact burst), not on a QRS complex standing out of a quiet line.
NOISE_FLANK_FRACTION = 0.4
# Beats correlating at least this with the dominant QRS template share its morphology.
DOMINANT_CORRELATION = 0.9
# Beat window around each fiducial point: at most long enough for a PR of 350 ms before the
# QRS and a QT of 650 ms after it; at fast rates no longer than the beat itself.
WINDOW_BEFORE_S = 0.45
WINDOW_AFTER_S = 0.7


@dataclass(frozen=True)
class Beats:
    """Detected beats: fiducial sample of each (aligned on the dominant QRS) and its class."""

    fiducial: np.ndarray  # int sample index per beat, ascending
    dominant: np.ndarray  # bool per beat: QRS like the dominant (most common) morphology
    correlation: np.ndarray  # QRS correlation of each beat with the dominant template
    edge: np.ndarray  # bool per beat: its QRS is cut by the record's start or end (not classified)

    @property
    def ectopic(self) -> np.ndarray:
        """Whole beats whose QRS differs from the dominant one."""
        return ~self.dominant & ~self.edge


def samples(seconds: float, fs: float) -> int:
    """A duration in whole samples at fs."""
    return int(round(seconds * fs))


@lru_cache(maxsize=32)
def butter_sos(kind: str, cutoff: float | tuple[float, float], fs: float, order: int = 2) -> np.ndarray:
    """Butterworth second-order sections; cached because every ECG uses the same few filters."""
    return butter(order, cutoff, btype=kind, fs=fs, output="sos")


@lru_cache(maxsize=32)
def _steady_state(kind: str, cutoff: float | tuple[float, float], fs: float, order: int) -> np.ndarray:
    """The filter's state for a unit step (scipy's sosfilt_zi), cached with the filter itself."""
    return sosfilt_zi(butter_sos(kind, cutoff, fs, order))


def filtfilt(signal: np.ndarray, kind: str, cutoff: float | tuple[float, float], fs: float,
             order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth filter along the last axis (no delay, so no shifted boundaries).

    The ends are extended (odd reflection) by one period of the lowest cutoff, enough for
    the filter's start-up transient to die out before the real samples begin.

    This is scipy's sosfiltfilt step for step (odd extension; forward from the steady state
    of the first sample, backward from that of the last), so the same numbers, without
    working out the steady state and checking the arguments again on every call: on a 10 s
    ECG that cost as much as the filtering itself, and every ECG is filtered several times.
    """
    x = np.asarray(signal)
    lowest = min(cutoff) if isinstance(cutoff, tuple) else cutoff
    edge = min(x.shape[-1] - 1, samples(1.0 / lowest, fs))
    sos = butter_sos(kind, cutoff, float(fs), order)
    state = _steady_state(kind, cutoff, float(fs), order)
    extended = x if edge <= 0 else np.concatenate(
        (2 * x[..., :1] - x[..., edge:0:-1], x, 2 * x[..., -1:] - x[..., -2:-(edge + 2):-1]), axis=-1)
    forward = _sosfilt_from(sos, state, extended)
    zero_phase = _sosfilt_from(sos, state, forward[..., ::-1])[..., ::-1]
    return zero_phase[..., edge:-edge] if edge > 0 else zero_phase


def _sosfilt_from(sos: np.ndarray, state: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sosfilt along the last axis, from the steady state of each row's first sample (float64).

    scipy's sosfilt checks its arguments, works out a common type, moves axes and copies the
    input and the state on every call: a quarter of a millisecond each time, as much as the
    filtering of a 12-lead row block itself, and an ECG is filtered a dozen times. Its C loop,
    called on one float64 copy, gives the same numbers (tests/ingest_features/test_same_numbers_faster.py).
    """
    if _sosfilt is None:
        zi = state.reshape((state.shape[0],) + (1,) * (x.ndim - 1) + (2,)) * x[..., :1]
        return sosfilt(sos, x, axis=-1, zi=zi)[0]
    out = np.array(x, dtype=np.float64, order="C")  # filtered in place
    rows = out.reshape(-1, out.shape[-1])
    zi = np.ascontiguousarray(rows[:, None, :1] * state[None, :, :])  # (rows, sections, 2)
    _sosfilt(sos, rows, zi)
    return out


def valid_length(signal: np.ndarray) -> int:
    """Number of samples before the trailing all-zero padding (a short record padded to 10 s)."""
    nonzero = np.flatnonzero(np.any(signal != 0, axis=0))
    return int(nonzero[-1]) + 1 if nonzero.size else 0


def qrs_band(signal: np.ndarray, fs: float) -> np.ndarray:
    """The leads band-passed to QRS_BAND_HZ: QRS complexes kept, baseline and most of P/T removed."""
    return filtfilt(signal, "bandpass", QRS_BAND_HZ, fs)


def flat_leads(band: np.ndarray) -> np.ndarray:
    """Bool per lead: no QRS-band activity worth measuring (disconnected electrode, zeros)."""
    return band.std(axis=1) < FLAT_LEAD_SD_MV


def qrs_energy(band: np.ndarray, fs: float) -> np.ndarray:
    """One QRS-energy curve over the given QRS-band leads (rows), integrated over 100 ms.

    Each lead's slope is normalised by its own 99th percentile and clipped at twice that,
    so a lead with a large QRS, or a short artefact, cannot outweigh the others.
    """
    slope = np.diff(band, axis=1, prepend=band[:, :1])
    scale = percentile_rows(np.abs(slope[:, ::2]), 99)
    scale[scale <= 0] = np.inf
    energy = np.minimum((slope / scale[:, None]) ** 2, 4.0).mean(axis=0)
    width = max(1, samples(0.1, fs))
    running = np.cumsum(np.pad(energy, (width // 2 + 1, width - width // 2 - 1), mode="edge"))
    return (running[width:] - running[:-width]) / width  # centred moving average, same length


def detect_qrs(energy: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of QRS complexes in an energy curve (see `qrs_energy`).

    The threshold is a share of the 98th percentile of the curve, which lies inside the QRS
    complexes at any rate from 30 to 250 bpm. A detection much closer to the previous beat
    than the median RR (between the larger detections, so T waves detected with every QRS do
    not halve it) and smaller than it is a T wave and dropped; a gap longer than
    1.6 median RR is searched again at half the threshold (a beat of lower amplitude).
    """
    refractory = max(1, samples(REFRACTORY_S, fs))
    reference = float(percentile_rows(energy, 98))
    if reference <= 0:
        return np.zeros(0, dtype=int)
    threshold = DETECTION_FRACTION * reference
    peaks, props = find_peaks(energy, height=threshold, distance=refractory)
    heights = props["peak_heights"]
    if peaks.size >= 3:
        # The RR of the QRS complexes alone: when every T wave was detected too, the median of all
        # intervals is half the RR and no T would be "much closer than the RR" to its QRS.
        large = peaks[heights >= 0.5 * percentile_rows(heights, 90)]
        rr = np.median(np.diff(large)) if large.size >= 3 else np.median(np.diff(peaks))
        keep = np.ones(peaks.size, dtype=bool)
        for i in range(1, peaks.size):
            previous = i - 1
            while previous >= 0 and not keep[previous]:
                previous -= 1
            if previous < 0:
                continue
            close = peaks[i] - peaks[previous] < min(0.36 * fs, 0.6 * rr)
            if close:
                smaller = i if heights[i] < heights[previous] else previous
                keep[smaller] = False
        peaks, heights = peaks[keep], heights[keep]
    if peaks.size >= 3:
        peaks = _search_back(energy, peaks, threshold / 2, refractory)
    return peaks


def _search_back(energy: np.ndarray, peaks: np.ndarray, threshold: float, refractory: int) -> np.ndarray:
    """Add the largest energy peak inside each gap longer than 1.6 median RR, if above threshold."""
    rr = float(np.median(np.diff(peaks)))
    added = []
    for start, stop in zip(peaks[:-1], peaks[1:], strict=True):
        if stop - start <= 1.6 * rr:
            continue
        lo, hi = start + refractory, stop - refractory
        if hi <= lo:
            continue
        candidates, props = find_peaks(energy[lo:hi], height=threshold, distance=refractory)
        if candidates.size:
            added.append(lo + candidates[np.argmax(props["peak_heights"])])
    return np.sort(np.concatenate([peaks, np.asarray(added, dtype=int)])) if added else peaks


def window_extent(rr_s: float, fs: float) -> tuple[int, int]:
    """(samples before, samples after) the fiducial point of each beat window at this RR.

    At slow rates the fixed maximum; at fast rates about one RR in all, since the previous
    beat's T and the next beat's QRS bound the searches anyway (and shorter windows keep
    the per-beat work constant as the number of beats grows).
    """
    before = min(WINDOW_BEFORE_S, max(0.25, 0.75 * rr_s))
    after = min(WINDOW_AFTER_S, max(0.4, rr_s))
    return samples(before, fs), samples(after, fs)


def in_noise(energy: np.ndarray, detections: np.ndarray, fs: float) -> np.ndarray:
    """Bool per detection: its QRS-energy peak does not stand out from its surroundings.

    A QRS complex (normal or ectopic) is a short burst of energy between quiet stretches;
    a detection inside an artefact has as much energy around it as at its peak. "Around"
    is up to 350 ms either side, but never closer than 120 ms to this or another detection,
    so the neighbouring beats of a fast rhythm do not count as noise (above ~250 bpm there
    is no quiet stretch left to judge by, and nothing is called noise).
    """
    gap, far = samples(0.12, fs), samples(0.35, fs)
    previous = np.concatenate([[-far], detections[:-1]])
    following = np.concatenate([detections[1:], [energy.size + far]])
    noisy = np.zeros(detections.size, dtype=bool)
    for i, peak in enumerate(detections):
        left = energy[max(0, peak - far, previous[i] + gap):max(0, peak - gap)]
        right = energy[peak + gap:min(peak + far, following[i] - gap)]
        flanks = np.concatenate([left, right])
        if flanks.size and energy[peak] > 0:
            noisy[i] = median_of(flanks) > NOISE_FLANK_FRACTION * energy[peak]
    return noisy


def windows(signal: np.ndarray, centres: np.ndarray, before: int, after: int) -> np.ndarray:
    """(beats, leads, before+after) windows around centres.

    Beyond the record's ends the first/last sample is repeated: a flat extension in which
    no wave is found. `complete` tells which windows lie wholly inside the record.
    """
    padded = np.pad(signal, ((0, 0), (before, after)), mode="edge")
    width = before + after
    starts = np.asarray(centres).tolist()  # into padded: window i is padded[:, starts[i]:starts[i] + width]
    if not all(0 <= start <= signal.shape[1] for start in starts):  # never for a detected beat; as before
        index = np.asarray(centres)[:, None, None] + np.arange(width)[None, None, :]
        return padded[np.arange(signal.shape[0])[None, :, None], index]
    # One slice copy per beat: four times faster than one fancy-indexed gather of every sample.
    out = np.empty((len(starts), signal.shape[0], width), dtype=padded.dtype)
    for i, start in enumerate(starts):
        out[i] = padded[:, start:start + width]
    return out


def complete(centres: np.ndarray, before: int, after: int, length: int) -> np.ndarray:
    """Bool per beat: its window lies wholly inside a record of `length` samples."""
    return (centres - before >= 0) & (centres + after <= length)


def _normalised(rows: np.ndarray) -> np.ndarray:
    """Rows minus their mean, divided by their norm (zero rows stay zero)."""
    centred = rows - rows.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    return centred / np.where(norm > 0, norm, 1.0)


def lagged_correlation(segments: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Correlation of a multi-lead template with each beat's segment at every lag.

    segments: (beats, leads, width + lags - 1); template: (leads, width). Each lead of the
    template and of each window is centred on its own mean (so baseline offsets do not
    count), and the leads are pooled into one Pearson coefficient. Returns (beats, lags).
    Window sums come from cumulative sums, so no window is ever copied.
    """
    width = template.shape[-1]
    centred = template - template.mean(axis=-1, keepdims=True)
    views = np.lib.stride_tricks.sliding_window_view(segments, width, axis=2)  # (b, leads, lags, w)
    # The template is centred, so a window's mean does not change its dot product with it.
    dots = np.einsum("blkw,lw->bk", views, centred)
    padded = np.pad(segments, ((0, 0), (0, 0), (1, 0)))
    total, squares = np.cumsum(padded, axis=2), np.cumsum(padded ** 2, axis=2)
    window_sum = total[:, :, width:] - total[:, :, :-width]
    window_squares = squares[:, :, width:] - squares[:, :, :-width]
    energy = np.maximum(window_squares - window_sum ** 2 / width, 0.0).sum(axis=1)
    norms = np.sqrt(energy) * np.linalg.norm(centred)
    return dots / np.where(norms > 0, norms, np.inf)


def classify_and_align(band: np.ndarray, detections: np.ndarray, fs: float) -> Beats:
    """Align every beat on the dominant QRS shape and mark which beats share it.

    band: the QRS-band leads. The QRS windows (all leads, +-60 ms) are correlated with one
    another; the beat most like the others (the medoid) picks the dominant class, whose
    median is the template. Every beat is then shifted (up to +-20 ms) to its best match
    with the template: the median beat is only as sharp as this alignment.
    """
    half = samples(0.06, fs)
    shift = samples(0.02, fs)
    edge = ~complete(detections, half + shift, half + shift, band.shape[1])
    # Each beat's own energy peak is within a few ms of its QRS: start from it.
    qrs = windows(band, detections, half + shift, half + shift)
    core = qrs[:, :, shift:shift + 2 * half]
    unit = _normalised(core.reshape(len(detections), -1))
    similarity = unit @ unit.T
    similarity[:, edge] = 0.0  # a cut-off QRS neither chooses nor joins the dominant class
    medoid = int(np.argmax(np.where(edge, -np.inf, similarity.sum(axis=1))))
    members = (similarity[medoid] >= 0.8) & ~edge
    members[medoid] = True
    template = median_along_first(core[members])  # (leads, 2*half)

    scores = lagged_correlation(qrs, template)  # (beats, 2*shift + 1)
    best = np.argmax(scores, axis=1)
    correlation = scores[np.arange(len(detections)), best]
    # A beat detected within 20 ms of either end may align to a point outside the record:
    # keep it inside (such a beat is an edge beat, never dominant, so it is not measured).
    fiducial = np.clip(detections + best - shift, 0, band.shape[1] - 1)
    return Beats(fiducial=fiducial.astype(int), dominant=(correlation >= DOMINANT_CORRELATION) & ~edge,
                 correlation=correlation, edge=edge)


def remove_baseline(signal: np.ndarray, knots: np.ndarray, fs: float) -> np.ndarray:
    """Subtract a cubic spline through the isoelectric level at each knot (PR segments).

    Each knot's level is the mean of 20 ms around it, so noise does not move the baseline.
    Outside the first and last knot the baseline is held at their level. With fewer than
    two knots only the single level (or nothing) is subtracted.
    """
    n = signal.shape[1]
    half = max(1, samples(0.01, fs))
    knots = knots[(knots - half >= 0) & (knots + half < n)]
    if knots.size == 0:
        return signal - np.median(signal, axis=1, keepdims=True)
    around = knots[:, None] + np.arange(-half, half + 1)[None, :]
    levels = signal[:, around].mean(axis=2)  # (leads, knots)
    if knots.size == 1:
        return signal - levels
    spline = CubicSpline(knots, levels, axis=1, bc_type="natural")
    t = np.clip(np.arange(n), knots[0], knots[-1])
    return signal - spline(t)


def median_beat(beat_windows: np.ndarray, use: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """(leads, samples) sample-wise median of the chosen beats' windows.

    Only windows wholly inside the record (`whole`) are used, unless none of the chosen
    beats has one (a very short record): then their edge-extended windows are used.
    """
    chosen = use & whole
    if not chosen.any():
        chosen = use
    return median_along_first(beat_windows[chosen])


def median_along_first(stack: np.ndarray) -> np.ndarray:
    """np.median(stack, axis=0), by sorting: about 3x faster for a few beats x 12 leads x samples."""
    ordered = np.sort(stack, axis=0)
    middle = ordered.shape[0] // 2
    if ordered.shape[0] % 2:
        return ordered[middle]
    return 0.5 * (ordered[middle - 1] + ordered[middle])


def nan_as_zero(values: np.ndarray) -> np.ndarray:
    """np.nan_to_num for an array that holds no infinities (every signal's were zeroed when
    `measure` began): a copy with NaN as 0, in one pass where nan_to_num makes three (NaN, +inf,
    -inf); half its cost on the beats-by-leads windows of every ECG."""
    out = np.array(values)  # a copy, of the same type
    out[np.isnan(out)] = 0.0
    return out


def median_of(values: np.ndarray) -> float:
    """np.median of a short 1-D array, by sorting: a fraction of np.median's cost on the few
    dozen values a beat's flanks hold. NaN where any value is NaN, as np.median."""
    ordered = np.sort(values)
    if np.isnan(ordered[-1]):  # NaN sorts last
        return float("nan")
    middle = ordered.size // 2
    return float(ordered[middle]) if ordered.size % 2 else float(0.5 * (ordered[middle - 1] + ordered[middle]))


def percentile_rows(values: np.ndarray, q: float) -> np.ndarray:
    """np.percentile(values, q, axis=-1) (its default "linear" method), the same numbers.

    numpy's percentile checks its arguments, moves axes and partitions at four places on every
    call: 30-90 us however few the values, called several times per ECG. This partitions at the
    two order statistics the percentile lies between and interpolates as numpy's `_lerp` does
    (from the upper one when the weight is 0.5 or more), so the results are equal bit for bit.
    Values holding a NaN (which numpy answers with NaN) go to numpy itself.
    """
    values = np.asarray(values, dtype=np.float64)
    count = values.shape[-1]
    position = (count - 1) * (q / 100)  # numpy's virtual index for "linear"
    if count == 0 or position >= count - 1 or np.isnan(values).any():
        return np.percentile(values, q, axis=-1)
    below = math.floor(position)
    weight = position - below
    ordered = np.partition(values, (below, below + 1), axis=-1)
    low, high = ordered[..., below], ordered[..., below + 1]
    step = high - low
    return high - step * (1 - weight) if weight >= 0.5 else low + step * weight


def gradient_rows(rows: np.ndarray) -> np.ndarray:
    """np.gradient(rows, axis=-1) at unit spacing: central differences inside, one-sided at the
    two ends, the same arithmetic (a half of each central difference), without numpy's generic
    n-dimensional set-up on each call."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.shape[-1] < 2:
        return np.gradient(rows, axis=-1)  # numpy's own error for too few samples
    out = np.empty_like(rows)
    out[..., 1:-1] = (rows[..., 2:] - rows[..., :-2]) / 2.0
    out[..., 0] = rows[..., 1] - rows[..., 0]
    out[..., -1] = rows[..., -1] - rows[..., -2]
    return out


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """np.nanmedian(values, axis=1) of a small 2-D array, by sorting (NaN, without a warning, for a
    row with no value). For so few values numpy goes through masked arrays: ~0.3 ms a call."""
    ordered = np.sort(values, axis=1)  # NaN last
    count = np.count_nonzero(~np.isnan(values), axis=1)
    rows = np.arange(values.shape[0])
    low = ordered[rows, np.maximum((count - 1) // 2, 0)]
    high = ordered[rows, count // 2]
    return np.where(count > 0, (low + high) / 2.0, np.nan)
