"""Numbers from delineated rows: wave amplitudes, durations, ST level and slope, QRS labels.

Third step of measuring an ECG (`ingest.measure.beats` finds and aligns the beats,
`ingest.measure.delineate` finds the wave boundaries, `ingest.measure.features` combines the leads).
Like `ingest.measure.delineate`, everything works on rows (one lead of one beat, or of the
median beat) and returns one value per row, NaN where a wave is missing; the caller
turns NaN into None.

Conventions:
- amplitudes in mV relative to the PR baseline of the row (the mean of 16 ms before
  the QRS onset); Q and S are depths (positive numbers), P and T are signed;
- QRS amplitudes are taken inside the QRS window given (the global one for the median
  beat, so all leads share one J point); the Q wave is the initial negative deflection
  before the FIRST R (the clinical definition, `q_waves`), R the tallest positive one;
- ST level at J + 60 ms, ST slope a least-squares line over J + 20..80 ms.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from ingest.measure.beats import samples
from ingest.measure.delineate import Wave, columns_between, argmax_where, pr_baseline, span, take

# Deflections smaller than this are noise, not a Q wave or an R wave.
MIN_DEFLECTION_MV = 0.03
# ST segment: level at J + 60 ms; slope fitted over J + 20 to J + 80 ms.
ST_LEVEL_AFTER_J_S = 0.06
ST_SLOPE_SPAN_S = (0.02, 0.08)
# ST slopes within +-this are "horizontal" (0.04 mV over the 40 ms the slope is read on).
HORIZONTAL_ST_MV_PER_S = 1.0
# A P notch must be at least this deep (mV), besides 20 % of the P amplitude.
NOTCH_MIN_MV = 0.02
# QRS labels: a deflection counts from this size (and 5 % of the largest); it is written
# in capitals (R, S, Q) when at least half the largest deflection of the complex.
LABEL_MIN_MV = 0.04
LABEL_CAPITAL_FRACTION = 0.5


# The measurements of the QRS alone (`measure_rows`' names): what a lead too noisy for the small P, ST and T
# waves still gives, its QRS standing far out of the noise (`ingest.measure.features`, QRS-only leads).
QRS_FIELDS: tuple[str, ...] = ("q_amp_mv", "q_dur_ms", "r_amp_mv", "s_amp_mv", "qrs_amp_mv", "qrs_net_mv",
                               "qrs_dur_ms")


def _ms(count: np.ndarray, fs: float) -> np.ndarray:
    return np.asarray(count, dtype=float) * 1000.0 / fs


def _interval(start: np.ndarray, stop: np.ndarray, fs: float) -> np.ndarray:
    """stop - start in ms; NaN unless both are found and stop is after start."""
    good = (start >= 0) & (stop > start)
    return np.where(good, _ms(stop - start, fs), np.nan)


def q_waves(y: np.ndarray, window: np.ndarray, local_on: np.ndarray, local_off: np.ndarray,
            fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth mV, duration ms, QS) of each row's Q wave; y: QRS columns relative to the PR baseline.

    The clinical Q wave: the initial negative deflection of the QRS, BEFORE THE FIRST R (the
    first sample MIN_DEFLECTION_MV above the baseline), not before the tallest R. So in an
    rSR' the S between r and R' is not a Q, and a small initial r above that noise threshold
    means there is no Q at all. A complex that never rises above it is QS: its whole negative
    deflection is the Q (and the S). A dip under it is no Q (depth 0). The threshold is a
    fixed one, not a multiple of the lead's noise estimate: that estimate includes slow
    residual wander, which does not hide a 10 ms deflection, and would turn small r waves
    into QS complexes.
    The Q lasts from where the signal leaves the baseline downwards (10 % of its depth: the
    QRS onset itself is found a few ms early) until it climbs back through the baseline
    (the QRS offset for a QS).
    """
    length = y.shape[1]
    above = window & (y >= MIN_DEFLECTION_MV)
    has_r = above.any(axis=1)
    first_r = np.where(has_r, np.argmax(above, axis=1), local_off)
    qs = window.any(axis=1) & ~has_r
    initial = window & span(length, local_on, first_r + 1)
    q_at = argmax_where(-y, initial)
    depth = np.maximum(take(-y, q_at), 0.0)
    depth = np.where(depth >= MIN_DEFLECTION_MV, depth, 0.0)
    left = span(length, local_on, q_at + 1) & (-y >= 0.1 * depth[:, None])
    q_start = np.where(left.any(axis=1), np.argmax(left, axis=1), local_on)
    climbed = span(length, q_at, first_r + 1) & (y >= 0)
    q_end = np.where(climbed.any(axis=1), np.argmax(climbed, axis=1), first_r)
    q_end = np.where(qs, local_off, q_end)
    duration = np.where(depth > 0, _ms(q_end - q_start, fs), 0.0)
    return depth, duration, qs


def measure_rows(meas: np.ndarray, smooth: np.ndarray, fs: float, qrs_on: np.ndarray, qrs_off: np.ndarray,
                 lead_on: np.ndarray, lead_off: np.ndarray, p: Wave, t: Wave,
                 rr_s: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row measurements named as the fields of `ingest.measure.measured.BeatFeatures`.

    meas: rows for amplitudes (the signal's full band); smooth: 40 Hz rows for ST and slopes;
    qrs_on/qrs_off: the QRS window for amplitudes and the J point; lead_on/lead_off:
    the row's own QRS boundaries for its QRS duration; p, t: delineated waves;
    rr_s: the RR interval (s) each row's QTc is corrected with.
    """
    has_qrs = (qrs_on >= 0) & (qrs_off > qrs_on)
    empty = np.zeros_like(qrs_on)
    columns = columns_between(np.where(has_qrs, qrs_on, empty), np.where(has_qrs, qrs_off + 1, empty), meas.shape[1])
    lo, hi, window = columns if columns is not None else (0, 1, np.zeros((meas.shape[0], 1), dtype=bool))
    # Only the QRS columns are needed: y is the QRS part of each row, relative to its PR baseline.
    y = meas[:, lo:hi] - pr_baseline(meas, qrs_on, fs)[:, None]
    r_at = argmax_where(y, window)
    r_amp = np.maximum(take(y, r_at), 0.0)
    local_on, local_off = qrs_on - lo, qrs_off - lo
    s_at = argmax_where(-y, window & span(hi - lo, r_at, local_off + 1))
    s_amp = np.maximum(take(-y, s_at), 0.0)
    lowest = np.maximum(-np.where(window, y, np.inf).min(axis=1), 0.0)
    q_amp, q_dur, qs = q_waves(y, window, local_on, local_off, fs)
    # A QS complex has no R wave: its one negative deflection is both the Q and the S.
    s_amp = np.where(qs, lowest, s_amp)
    qrs_amp = np.where(window, y, -np.inf).max(axis=1) + lowest

    j = np.where(has_qrs, qrs_off, -1)
    smooth_base = pr_baseline(smooth, qrs_on, fs)
    st_level = take(smooth, np.where(j >= 0, j + samples(ST_LEVEL_AFTER_J_S, fs), -1)) - smooth_base
    st_j = take(smooth, j) - smooth_base
    st_slope = _st_slope(smooth, j, fs)  # a slope: the baseline level does not matter
    return {
        "p_amp_mv": p.amplitude,
        "p_dur_ms": _interval(p.onset, p.end, fs),
        "pr_ms": _interval(p.onset, qrs_on, fs),
        "q_amp_mv": np.where(has_qrs, q_amp, np.nan),
        "q_dur_ms": np.where(has_qrs, q_dur, np.nan),
        "r_amp_mv": np.where(has_qrs, r_amp, np.nan),
        "s_amp_mv": np.where(has_qrs, s_amp, np.nan),
        "qrs_amp_mv": np.where(has_qrs, qrs_amp, np.nan),
        "qrs_net_mv": np.where(has_qrs, r_amp - np.maximum(q_amp, s_amp), np.nan),
        "qrs_dur_ms": _interval(lead_on, lead_off, fs),
        "t_amp_mv": t.amplitude,
        "t_dur_ms": _interval(t.onset, t.end, fs),
        "st_dur_ms": _interval(j, t.onset, fs),
        "st_level_mv": st_level,
        "st_j_mv": st_j,
        "st_slope_mv_per_s": st_slope,
        "qt_ms": _interval(qrs_on, t.end, fs),
        "qtc_ms": _interval(qrs_on, t.end, fs) / np.sqrt(rr_s),
    }


def _st_slope(ys: np.ndarray, j: np.ndarray, fs: float) -> np.ndarray:
    """Least-squares slope (mV/s) of each row over J + 20..80 ms; NaN without a J point."""
    start, stop = (samples(s, fs) for s in ST_SLOPE_SPAN_S)
    offsets = np.arange(start, stop + 1)
    index = np.clip(j[:, None] + offsets[None, :], 0, ys.shape[1] - 1)
    segment = np.take_along_axis(ys, index, axis=1)
    time = (offsets - offsets.mean()) / fs
    slope = (segment - segment.mean(axis=1, keepdims=True)) @ time / (time @ time)
    fits = (j >= 0) & (j + stop < ys.shape[1])
    return np.where(fits, slope, np.nan)


def st_form(slope_mv_per_s: float | None) -> str | None:
    """"upsloping", "horizontal" or "downsloping" from the ST slope."""
    if slope_mv_per_s is None:
        return None
    if slope_mv_per_s > HORIZONTAL_ST_MV_PER_S:
        return "upsloping"
    if slope_mv_per_s < -HORIZONTAL_ST_MV_PER_S:
        return "downsloping"
    return "horizontal"


def qrs_label(y: np.ndarray, fs: float) -> str | None:
    """The QRS morphology of one lead's complex (baseline-relative samples from onset to offset).

    The complex is cut where it crosses the baseline; each piece large enough (and at least
    6 ms long) is one wave. Negative waves before the first positive one are Q, positive
    waves R, R', R'', negative waves after an R are S, S'. A single negative wave is QS.
    Small waves (under half the largest) are lower case: rS, qR, Rs, rSR'...
    """
    if y.size < 3:
        return None
    pieces = np.split(y, np.flatnonzero(np.diff(np.sign(y)) != 0) + 1)
    extremes = []
    for number, piece in enumerate(pieces):
        at = int(np.argmax(np.abs(piece)))
        # A last piece that has not come back towards the baseline by the J point (ST elevation
        # or depression), or a first one already far from it at the onset, has no peak of its
        # own: a drifting edge, not a wave.
        edge = len(pieces) > 1 and (
            (number == 0 and abs(piece[0]) >= 0.8 * abs(piece[at]))
            or (number == len(pieces) - 1 and abs(piece[-1]) >= 0.8 * abs(piece[at])))
        if piece.size >= max(1, samples(0.006, fs)) and not edge:
            extremes.append(piece[at])
    largest = max((abs(value) for value in extremes), default=0.0)
    if largest < LABEL_MIN_MV:
        return None
    waves: list[float] = []
    for value in extremes:
        if abs(value) < max(LABEL_MIN_MV, 0.05 * largest):
            continue
        if waves and np.sign(waves[-1]) == np.sign(value):  # a dropped wave between: merge
            waves[-1] = value if abs(value) > abs(waves[-1]) else waves[-1]
        else:
            waves.append(float(value))
    if len(waves) == 1 and waves[0] < 0:
        return "QS"
    label, r_count, s_count = "", 0, 0
    for value in waves:
        if value > 0:
            letter, primes = "R", r_count
            r_count += 1
        elif r_count == 0:
            letter, primes = "Q", 0
        else:
            letter, primes = "S", s_count
            s_count += 1
        if abs(value) < LABEL_CAPITAL_FRACTION * largest:
            letter = letter.lower()
        label += letter + "'" * primes
    return label or None


def p_shape(y: np.ndarray, fs: float, amplitude: float, noise_mv: float) -> tuple[bool, float]:
    """(notched, terminal negative depth in mV) of one lead's P wave (baseline-relative samples).

    Notched: two humps of the P's polarity at least 40 ms apart, each at least half the P
    amplitude, with a dip between them of at least 20 % of it, 0.02 mV and 3x the noise
    (a visible notch, not a ripple). The terminal
    negative depth is how far the second half of a biphasic P (positive first half) goes
    below the baseline, V1's sign of left atrial abnormality; 0 for other P waves.
    """
    sign = 1.0 if amplitude >= 0 else -1.0
    humps, _ = find_peaks(sign * y, height=0.5 * abs(amplitude), distance=max(1, samples(0.04, fs)),
                          prominence=max(0.2 * abs(amplitude), NOTCH_MIN_MV, 3.0 * noise_mv))
    notched = humps.size >= 2
    # Terminal negativity belongs to a biphasic P: a positive first half, a negative second one.
    half = y.size // 2
    first_positive = half > 0 and y[:half].max() >= max(MIN_DEFLECTION_MV, 3.0 * noise_mv)
    terminal = float(max(0.0, -y[half:].min())) if first_positive else 0.0
    return notched, terminal
