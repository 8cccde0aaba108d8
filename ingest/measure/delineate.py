"""Wave boundaries in aligned beat windows: QRS onset/offset, P and T onset/peak/end.

The second half of measuring an ECG (after `ingest.measure.beats`, before `ingest.measure.features`).
Every function works on rows: each row is one lead of one beat window (or of the median
beat), all rows aligned so the QRS fiducial point sits at the same sample. The same code
therefore delineates the 12 median-beat leads and the hundred-odd single beats of a
record in one vectorised pass. Positions are sample indices into the row; -1 means "not
found", never a guess.

Methods, chosen because they are simple, published and need no training:
- QRS onset/offset: the 40 Hz low-passed slope of the row must stay below a threshold
  (10 % of the row's peak QRS slope, or 3x its slope noise) for 8 ms before the first,
  and after the last, large QRS slope. Requiring a quiet run keeps a momentary zero slope
  at the tip of a Q, R or S wave from ending the complex early; a quiet stretch of 30 ms
  after the fiducial point ends it for good, so the steep rise of a tall T that follows a
  narrow QRS closely is not taken for a late part of the QRS.
- P and T boundaries: the trapezium-area method (Vázquez-Seisdedos et al., "New approach
  for T-wave end detection on electrocardiogram: performance in noisy conditions",
  BioMedical Engineering OnLine 10:77, 2011; validated on the PhysioNet QT database): from the point
  of steepest slope on the wave's limb, the end is the point that maximises the area of a
  trapezium spanned with a reference point beyond the wave. It needs no threshold and is
  insensitive to the baseline. Onsets use the mirrored trapezium. The steepest point of a
  fall is looked for on the wave's own limb, before it is back to 20 % of its amplitude,
  so a closely following wave (the next P after a T) cannot lend it its slope.
Amplitudes are relative to the row's PR baseline (the mean of 16 ms just before the QRS
onset), so a P or T is delineated only when it stands clearly off that baseline. A P that
does not is absent (no amplitude: atrial fibrillation has no P). A T that does not is
FLAT, a finding rather than an absence: its amplitude is still measured (the largest
deflection where its peak is searched, an upper bound on its size) while its onset, peak
and end stay -1, since the boundaries of a wave lost in the noise would be guesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.measure.beats import gradient_rows, percentile_rows, samples

# QRS boundary: slope below this share of the peak QRS slope, sustained for QUIET_RUN_S.
QRS_EDGE_FRACTION = 0.1
QUIET_RUN_S = 0.008
# A quiet stretch this long after the fiducial point ends the complex: a big slope after it
# is the T (a tall T soon after a narrow QRS), not a late part of the QRS.
QRS_GAP_S = 0.03
# A slope this large (share of the peak QRS slope) is part of the QRS, not a P or T wave.
QRS_SIGNIFICANT_FRACTION = 0.3
# Smallest P and T waves worth delineating (mV): below them the boundaries are noise.
P_MIN_MV = 0.03
T_MIN_MV = 0.05
# Waves must also stand this many times above the row's noise level.
WAVE_SNR = 3.0
# A wave's falling limb ends, at the latest, where the wave is back to this share of its
# amplitude: its steepest fall is looked for before that point (see `_falling_limb_end`).
LIMB_END_FRACTION = 0.2
# A P wave that ends this close to the QRS onset has run into the QRS in that lead (a wave
# before the QRS, noise, a slurred onset), so where the P ends there is not known. The PR
# segment is normally 50-120 ms; on LUDB, leads that ended P 4-8 ms before the QRS put the
# global P offset up to 60 ms late (issue 10).
P_END_BEFORE_QRS_S = 0.010


@dataclass(frozen=True)
class QrsBounds:
    onset: np.ndarray  # int per row, -1 when not found
    offset: np.ndarray


@dataclass(frozen=True)
class Wave:
    """One P or T wave per row: boundaries, peak, and its signed amplitude (mV, PR baseline).

    A flat T (see the module docstring) has an amplitude and peak -1: `flat` tells those rows.
    """

    onset: np.ndarray  # int per row, -1 when not found
    peak: np.ndarray  # -1 when the wave is absent or too small to delineate
    end: np.ndarray
    amplitude: np.ndarray  # float per row, NaN when the wave is absent

    @property
    def flat(self) -> np.ndarray:
        """Bool per row: an amplitude was measured but the wave was too small to delineate."""
        return ~np.isnan(self.amplitude) & (self.peak < 0)


def span(length: int, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """(rows, length) mask of start <= index < stop, per row."""
    index = np.arange(length)[None, :]
    return (index >= np.asarray(start)[:, None]) & (index < np.asarray(stop)[:, None])


def argmax_where(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, index of the largest value inside mask; -1 for rows with an empty mask."""
    index = np.argmax(np.where(mask, values, -np.inf), axis=1)
    return np.where(mask.any(axis=1), index, -1)


def columns_between(start: np.ndarray, stop: np.ndarray, length: int) -> tuple[int, int, np.ndarray] | None:
    """The column range [lo, hi) covering every row's [start, stop), and the rows' mask in it.

    Searches look at a few hundred ms of a 1.15 s window: working on that slice only is
    what keeps a hundred-odd beat rows cheap. None when every row's range is empty.
    """
    start, stop = np.maximum(start, 0), np.minimum(stop, length)
    nonempty = stop > start
    if not nonempty.any():
        return None
    lo, hi = int(start[nonempty].min()), int(stop[nonempty].max())
    index = np.arange(lo, hi)[None, :]
    return lo, hi, (index >= start[:, None]) & (index < stop[:, None])


def argmax_between(values: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per row, index of the largest value in [start, stop); -1 where that range is empty."""
    columns = columns_between(start, stop, values.shape[1])
    if columns is None:
        return np.full(values.shape[0], -1)
    lo, hi, mask = columns
    return argmax_where(values[:, lo:hi], mask) + np.where(mask.any(axis=1), lo, 0)


def _first(mask: np.ndarray) -> np.ndarray:
    return np.where(mask.any(axis=1), np.argmax(mask, axis=1), -1)


def _last(mask: np.ndarray) -> np.ndarray:
    return np.where(mask.any(axis=1), mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1), -1)


def take(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """rows[i, index[i]] per row, NaN where index is -1."""
    index = np.asarray(index)
    values = rows[np.arange(rows.shape[0]), np.clip(index, 0, rows.shape[1] - 1)]
    return np.where(index >= 0, values, np.nan)


def _as_rows(value: int | np.ndarray, rows: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=int), (rows,)).copy()


def pr_baseline(rows: np.ndarray, qrs_onset: np.ndarray, fs: float) -> np.ndarray:
    """Per row, the mean level over [onset - 20 ms, onset - 4 ms): the PR-segment reference."""
    onset = np.asarray(qrs_onset)
    offsets = np.arange(-samples(0.02, fs), -samples(0.004, fs))
    index = onset[:, None] + offsets[None, :]
    level = np.take_along_axis(rows, np.clip(index, 0, rows.shape[1] - 1), axis=1).mean(axis=1)
    return np.where(onset + offsets[0] >= 0, level, np.nan)


def qrs_bounds(smooth: np.ndarray, fs: float, fiducial: int) -> QrsBounds:
    """Per-row QRS onset and offset around the fiducial sample (see the module docstring)."""
    rows, length = smooth.shape
    gradient = gradient_rows(smooth)
    # Slope noise (mV/s): a low percentile (isoelectric stretches); every 3rd sample is plenty for it.
    noise = percentile_rows(np.abs(gradient[:, ::3]) * fs, 20)
    # From here on only the 450 ms around the fiducial point matter.
    run = max(1, samples(QUIET_RUN_S, fs))
    lo = max(0, fiducial - samples(0.2, fs))
    hi = min(length, fiducial + samples(0.25, fs) + run)
    slope = np.abs(gradient[:, lo:hi]) * fs  # mV/s
    f = fiducial - lo
    width = hi - lo

    core = slope[:, max(0, f - samples(0.06, fs)):f + samples(0.06, fs)]
    peak_slope = core.max(axis=1)
    threshold = np.maximum(QRS_EDGE_FRACTION * peak_slope, 3.0 * noise)
    significant = slope >= QRS_SIGNIFICANT_FRACTION * peak_slope[:, None]
    significant[:, :max(0, f - samples(0.1, fs))] = False
    significant[:, f + samples(0.12, fs):] = False

    quiet = (slope < threshold[:, None]).astype(np.int32)
    counts = np.cumsum(np.pad(quiet, ((0, 0), (1, 0))), axis=1)
    quiet_run = np.zeros(quiet.shape, dtype=bool)  # quiet_run[j]: quiet over [j, j + run)
    quiet_run[:, :width - run + 1] = (counts[:, run:] - counts[:, :-run]) == run
    gap = max(run, samples(QRS_GAP_S, fs))
    long_quiet = np.zeros(quiet.shape, dtype=bool)  # quiet over [j, j + gap)
    long_quiet[:, :width - gap + 1] = (counts[:, gap:] - counts[:, :-gap]) == gap
    after_gap = _first(long_quiet & span(width, np.full(rows, f), np.full(rows, width)))
    significant &= ~span(width, np.where(after_gap >= 0, after_gap, width), np.full(rows, width))
    first_big, last_big = _first(significant), _last(significant)

    # Onset: the last sample of a quiet run ending before the first big slope.
    ends_quiet = np.zeros_like(quiet_run)
    ends_quiet[:, run - 1:] = quiet_run[:, :width - run + 1]
    onset = _last(ends_quiet & span(width, np.zeros(rows, dtype=int), first_big + 1))
    # Offset: the first sample of a quiet run after the last big slope (within 250 ms).
    offset = _first(quiet_run & span(width, last_big, np.full(rows, f + samples(0.25, fs))))
    found = (first_big >= 0) & (peak_slope > 0)
    onset = np.where(found & (onset >= 0), onset + lo, -1)
    offset = np.where((onset >= 0) & (offset >= 0), offset + lo, -1)
    return QrsBounds(onset=onset, offset=offset)


def _trapezium_end(y: np.ndarray, sign: np.ndarray, steepest: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Wave end after `steepest` (falling limb): argmax of the trapezium area up to `reference`."""
    found = steepest >= 0
    columns = columns_between(np.where(found, steepest, 0), np.where(found, reference + 1, 0), y.shape[1])
    if columns is None:
        return np.full(y.shape[0], -1)
    lo, hi, mask = columns
    index = np.arange(lo, hi)[None, :]
    level = take(y, steepest)[:, None]
    area = sign[:, None] * (level - y[:, lo:hi]) * (2 * reference[:, None] - index - steepest[:, None])
    end = argmax_where(area, mask)
    end = np.where(end >= 0, end + lo, -1)
    # At the reference point itself the wave has not ended inside the search: not found.
    return np.where(end < reference, end, -1)


def _trapezium_onset(y: np.ndarray, sign: np.ndarray, steepest: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Wave onset before `steepest` (rising limb): the mirrored trapezium from `reference`."""
    found = steepest >= 0
    columns = columns_between(np.where(found, reference, 0), np.where(found, steepest + 1, 0), y.shape[1])
    if columns is None:
        return np.full(y.shape[0], -1)
    lo, hi, mask = columns
    index = np.arange(lo, hi)[None, :]
    level = take(y, steepest)[:, None]
    area = sign[:, None] * (level - y[:, lo:hi]) * (index + steepest[:, None] - 2 * reference[:, None])
    onset = argmax_where(area, mask)
    onset = np.where(onset >= 0, onset + lo, -1)
    return np.where(onset > reference, onset, -1)


def _falling_limb_end(y: np.ndarray, sign: np.ndarray, amplitude: np.ndarray, peak: np.ndarray,
                      stop: np.ndarray) -> np.ndarray:
    """Per row, the first sample in [peak, stop) where the wave is back to LIMB_END_FRACTION of its amplitude.

    `stop` where it never gets there. The steepest point of a wave's fall lies before this
    sample (half-way down, for a rounded wave); a steeper slope after it belongs to the next
    wave: a T followed closely by the next P (short T-P interval: fast rate, long PR) had
    its end taken at the end of that P, 150-200 ms late.
    """
    columns = columns_between(peak, stop, y.shape[1])
    if columns is None:
        return stop
    lo, hi, mask = columns
    back = mask & (sign[:, None] * y[:, lo:hi] <= LIMB_END_FRACTION * np.abs(np.nan_to_num(amplitude))[:, None])
    return np.where(back.any(axis=1), np.argmax(back, axis=1) + lo, stop)


def _wave(y: np.ndarray, fs: float, peak_from: np.ndarray, peak_to: np.ndarray,
          rise_from: np.ndarray, fall_to: np.ndarray, limb_s: float, min_mv: float,
          noise_mv: np.ndarray, keep_flat: bool = False, turning_peak: bool = False,
          end_margin_s: float = 0.004) -> Wave:
    """Delineate the largest deflection of each row between peak_from and peak_to.

    rise_from/fall_to bound where the wave's onset and end may lie; limb_s is how far
    from the steepest point the trapezium reference is placed (about one limb's length).
    An end within end_margin_s of fall_to was cut there: not known.
    A deflection under min_mv (or WAVE_SNR x the noise) is not delineated; with keep_flat
    its amplitude is kept all the same (a flat wave), otherwise it is NaN (no wave).
    """
    usable = peak_to > peak_from
    size = np.abs(y)
    peak = argmax_between(size, np.where(usable, peak_from, 0), np.where(usable, peak_to, 0))
    if turning_peak:
        # The peak is a turning point inside the search: where the largest value sits on the
        # search's last sample, the deflection there is still rising beyond it (a U wave or the
        # next P beyond a flat T's window), so the largest turning point inside is taken.
        turning = np.zeros_like(size, dtype=bool)
        turning[:, 1:-1] = (size[:, 1:-1] >= size[:, :-2]) & (size[:, 1:-1] >= size[:, 2:])
        inner = argmax_between(np.where(turning, size, -1.0), np.where(usable, peak_from, 0),
                               np.where(usable, peak_to, 0))
        at_end = peak >= np.asarray(peak_to) - 1
        inside = (inner > np.asarray(peak_from)) & turning[np.arange(len(inner)), np.maximum(inner, 0)]
        peak = np.where(at_end & inside, inner, peak)
    amplitude = take(y, peak)
    present = (peak >= 0) & (np.abs(amplitude) >= np.maximum(min_mv, WAVE_SNR * noise_mv))
    sign = np.sign(np.nan_to_num(amplitude))
    slope = gradient_rows(y)
    limb = samples(limb_s, fs)
    nowhere = np.zeros_like(peak)

    fall_stop = np.where(present, np.minimum(peak + 2 * limb, fall_to), nowhere)
    fall_stop = np.where(present, _falling_limb_end(y, sign, amplitude, np.where(present, peak, nowhere), fall_stop)
                         + 1, nowhere)
    steep_fall = argmax_between(-sign[:, None] * slope, np.where(present, peak, nowhere),
                                np.minimum(fall_stop, np.where(present, np.minimum(peak + 2 * limb, fall_to), nowhere)))
    end = _trapezium_end(y, sign, steep_fall, np.minimum(steep_fall + limb, fall_to))

    steep_rise = argmax_between(sign[:, None] * slope, np.where(present, np.maximum(peak - 2 * limb, rise_from),
                                                                nowhere), np.where(present, peak + 1, nowhere))
    onset = _trapezium_onset(y, sign, steep_rise, np.maximum(steep_rise - limb, rise_from))
    # An onset at the very start of the search, or an end at its very end, was cut there (a P
    # running into the previous T, a T into the next P at fast rates): where the wave begins
    # or ends is not known.
    onset = np.where(onset > rise_from + samples(0.004, fs), onset, -1)
    end = np.where(end < fall_to - samples(end_margin_s, fs), end, -1)

    measured = present | (keep_flat & (peak >= 0))
    return Wave(onset=np.where(present, onset, -1), peak=np.where(present, peak, -1),
                end=np.where(present, end, -1), amplitude=np.where(measured, amplitude, np.nan))


def p_waves(smooth: np.ndarray, fs: float, qrs_onset: np.ndarray, previous_t_end: np.ndarray,
            noise_mv: np.ndarray | None = None) -> Wave:
    """The P wave of each row: its peak 30-320 ms before the QRS onset, after the previous T.

    previous_t_end: per row, where the previous beat's T wave ends in this row's coordinates
    (the QRS onset + QT - RR); at fast rates it closes the search, so a T is never taken
    for a P (a P hidden in the T is then simply not found). A P that ends within
    P_END_BEFORE_QRS_S of the QRS onset has no known end in that row.
    """
    rows = smooth.shape[0]
    onset = _as_rows(qrs_onset, rows)
    previous = _as_rows(previous_t_end, rows)
    noise = np.zeros(rows) if noise_mv is None else np.asarray(noise_mv)
    earliest = np.maximum(onset - samples(0.32, fs), previous + samples(0.02, fs))
    wave = _wave_in_reach(smooth, pr_baseline(smooth, onset, fs), onset >= 0, fs,
                          peak_from=np.maximum(earliest, 0), peak_to=onset - samples(0.03, fs),
                          rise_from=np.maximum(np.maximum(onset - samples(0.37, fs), previous), 0), fall_to=onset,
                          limb_s=0.05, min_mv=P_MIN_MV, noise_mv=noise, end_margin_s=P_END_BEFORE_QRS_S)
    return _without(wave, onset < 0)


def t_waves(smooth: np.ndarray, fs: float, qrs_onset: np.ndarray, qrs_offset: np.ndarray, rr_s: float,
            noise_mv: np.ndarray | None = None) -> Wave:
    """The T wave of each row: its peak 60 ms after the J point up to 0.55 s (or 0.6 RR) after the onset.

    A T under T_MIN_MV (or within the noise) is flat: amplitude measured, no onset, peak or end.
    """
    rows, length = smooth.shape
    onset, offset = _as_rows(qrs_onset, rows), _as_rows(qrs_offset, rows)
    noise = np.zeros(rows) if noise_mv is None else np.asarray(noise_mv)
    latest_peak = onset + samples(min(0.55, 0.6 * rr_s), fs)
    latest_end = np.minimum(onset + samples(min(0.75, 0.92 * rr_s), fs), length - 1)
    wave = _wave_in_reach(smooth, pr_baseline(smooth, onset, fs), (onset >= 0) & (offset >= 0), fs,
                          peak_from=offset + samples(0.06, fs), peak_to=latest_peak, rise_from=offset,
                          fall_to=latest_end, limb_s=0.1, min_mv=T_MIN_MV, noise_mv=noise,
                          keep_flat=True, turning_peak=True)
    return _without(wave, (onset < 0) | (offset < 0))


def _wave_in_reach(smooth: np.ndarray, baseline: np.ndarray, searched: np.ndarray, fs: float,
                   peak_from: np.ndarray, peak_to: np.ndarray, rise_from: np.ndarray, fall_to: np.ndarray,
                   **options: Any) -> Wave:
    """`_wave` on the rows less their PR baseline, worked out on the columns the searches reach only.

    A P search spans about a third of a beat window, a T search about half: the baseline
    subtraction, the slopes and the turning points over the rest of the window cost as much
    again, for a hundred-odd beat rows. One column more on each side keeps the slopes and
    turning points at the searches' edges what they are over the whole row, so the result is
    the same. Rows not `searched` (no QRS reference: the caller blanks them) search nothing.
    """
    rows, length = smooth.shape
    if not searched.any():
        return Wave(onset=np.full(rows, -1), peak=np.full(rows, -1), end=np.full(rows, -1),
                    amplitude=np.full(rows, np.nan))
    first = np.clip(np.minimum(rise_from, peak_from), 0, length)
    stop = np.clip(np.maximum(peak_to, fall_to + 1), 0, length)
    lo, hi = max(int(first[searched].min()) - 1, 0), min(int(stop[searched].max()) + 1, length)
    if hi <= lo:
        lo, hi = 0, length
    y = np.nan_to_num(smooth[:, lo:hi] - baseline[:, None])

    def local(index: np.ndarray) -> np.ndarray:
        return np.where(searched, np.asarray(index) - lo, 0)

    wave = _wave(y, fs, peak_from=local(peak_from), peak_to=local(peak_to), rise_from=local(rise_from),
                 fall_to=local(fall_to), **options)

    def back(index: np.ndarray) -> np.ndarray:
        return np.where(index >= 0, index + lo, -1)

    return Wave(onset=back(wave.onset), peak=back(wave.peak), end=back(wave.end), amplitude=wave.amplitude)


def _without(wave: Wave, missing: np.ndarray) -> Wave:
    """The wave with rows whose QRS reference was missing blanked out."""
    return Wave(onset=np.where(missing, -1, wave.onset), peak=np.where(missing, -1, wave.peak),
                end=np.where(missing, -1, wave.end), amplitude=np.where(missing, np.nan, wave.amplitude))
