"""Grounding features of a 12-lead ECG: `measure(signal, fs) -> GroundingFeatures`.

What the interpreters reason on, the protocol reader thresholds, the HL7 draft reports
and the review page shows. The steps, each in its own module:

    signal (12 x N mV, STANDARD_LEADS order, maybe zero-padded at the end)
      ingest.beats         padding cut, flat leads set aside, QRS detection over all leads,
                           beats aligned and classified, PR-segment spline baseline removed,
                           median beat of the dominant beats
      ingest.delineate     per lead and per beat: QRS onset/offset, P and T onset/peak/end
      (this module)        leads combined into global fiducials, as devices do: QRS onset =
                           the earliest onset that other leads confirm, QRS offset and T end
                           the latest; P onset/offset alike among leads with a clear P
      ingest.beat_measures amplitudes, durations, ST level/slope, QRS labels per lead and beat
      (this module)        global intervals and axes, rhythm, voltages, notes

A number that cannot be trusted is None with a note saying why (a flat or noisy lead,
no T end, leads that disagree), never a plausible-looking guess.

Accuracy. IEC 60601-2-25:2011 (which absorbed IEC 60601-2-51) holds automated interval
measurements on the biological ECGs of the CSE database to mean differences from the
referee of about +-10 ms for PR, +-6 ms for QRS and +-12 ms for QT. The tests here compare
against the device measurements stored in a real Mortara ELI 250 record (a different
algorithm, not a referee) with wider bounds, and against synthetic ECGs whose intervals
are known by construction.

Speed: vectorised numpy/scipy throughout; a 10 s 12-lead ECG at 500 Hz takes a few ms on
one core (see benchmarks/features.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ingest.beat_measures import measure_rows, p_shape, qrs_label, st_form
from ingest.beats import (
    Beats,
    classify_and_align,
    complete,
    detect_qrs,
    filtfilt,
    flat_leads,
    in_noise,
    median_beat,
    qrs_band,
    qrs_energy,
    remove_baseline,
    samples,
    valid_length,
    window_extent,
    windows,
)
from ingest.delineate import P_MIN_MV, Wave, p_waves, qrs_bounds, t_waves
from ingest.ecg import STANDARD_LEADS, Measurements
from ingest.measured import BeatFeatures, GroundingFeatures, LeadFeatures, Rhythm, Voltages

# Shortest record worth measuring (s of signal before any zero padding).
MIN_RECORD_S = 2.0
# Leads with residual beat-to-beat noise above this share of their QRS amplitude are not measured.
MAX_NOISE_FRACTION = 0.25
# ... unless that residual is below this (mV): a lead with a tiny QRS and little noise is fine;
# and whatever its QRS, a lead whose beats scatter by more than NOISE_LIMIT_MV is not measured.
NOISE_FLOOR_MV = 0.05
NOISE_LIMIT_MV = 0.15
# Leads agreeing on a fiducial point: within this many ms of the leads' median.
AGREEMENT_MS = {"qrs_on": 30.0, "qrs_off": 40.0, "p_on": 40.0, "p_off": 40.0, "t_end": 50.0}
MIN_AGREEING_LEADS = 3
# RR coefficient of variation below which the rhythm is called regular.
REGULAR_RR_CV = 0.10
# Frontal axes need a net deflection (mV*s of area in I and aVF) of at least this size.
MIN_AXIS_AREA_MV_S = 0.002
LIMB_LEADS = STANDARD_LEADS[:6]
PRECORDIAL_LEADS = STANDARD_LEADS[6:]


@dataclass(frozen=True)
class _Fiducials:
    """Global fiducial samples in median-beat coordinates (None when not agreed)."""

    qrs_on: int | None
    qrs_off: int | None
    p_on: int | None
    p_off: int | None
    t_end: int | None


def measure(signal: np.ndarray, fs: float) -> GroundingFeatures:
    """Measure a (12, N) mV ECG in STANDARD_LEADS order sampled at fs Hz.

    Trailing all-zero samples (the padding of a short record) are ignored. Raises
    ValueError only for an argument that is not a 12-lead signal at all.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(STANDARD_LEADS):
        raise ValueError(f"expected a (12, samples) signal, got shape {x.shape}")
    if not (fs > 0 and math.isfinite(fs)):
        raise ValueError(f"invalid sampling rate {fs!r}")
    notes: list[str] = []
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    length = valid_length(x)
    if length < x.shape[1]:
        notes.append(f"trailing zero padding of {(x.shape[1] - length) / fs:.2f} s ignored")
    if length < samples(MIN_RECORD_S, fs):
        notes.append(f"only {length / fs:.2f} s of signal: nothing measured")
        return GroundingFeatures(notes=notes)
    return _measure(x[:, :length], float(fs), notes)


def _measure(x: np.ndarray, fs: float, notes: list[str]) -> GroundingFeatures:
    band = qrs_band(x, fs)
    flat = flat_leads(band)
    for lead in _names(flat):
        notes.append(f"lead {lead} is flat: not measured")
    if (~flat).sum() < 2:
        notes.append("fewer than two leads carry a signal: nothing measured")
        return GroundingFeatures(notes=notes)

    energy = qrs_energy(band[~flat], fs)
    detections = detect_qrs(energy, fs)
    noise = in_noise(energy, detections, fs)
    if noise.any():
        where = ", ".join(f"{t:.1f}" for t in detections[noise] / fs)
        notes.append(f"{int(noise.sum())} QRS detection(s) in noise (at {where} s) left out, "
                     "and the RR intervals across them")
    kept = detections[~noise]
    if kept.size < 2:
        notes.append("fewer than two QRS complexes found: nothing measured")
        return GroundingFeatures(rhythm=Rhythm(beat_count=int(kept.size)), notes=notes)
    # An RR interval counts only when no noisy detection lies between its two beats.
    after_noise = np.searchsorted(kept, detections[noise])
    rr_valid = np.ones(kept.size - 1, dtype=bool)
    rr_valid[after_noise[(after_noise >= 1) & (after_noise < kept.size)] - 1] = False
    if not rr_valid.any():
        notes.append("no RR interval free of noise: nothing measured")
        return GroundingFeatures(rhythm=Rhythm(beat_count=int(kept.size)), notes=notes)
    beats = classify_and_align(band[~flat], kept, fs)
    dominant_count = int(beats.dominant.sum())
    classified = int((~beats.edge).sum())
    if dominant_count < 2 or dominant_count < classified / 3:
        notes.append(f"no consistent QRS morphology ({dominant_count} of {classified} detections "
                     "alike): noise or artefact, nothing measured")
        return GroundingFeatures(notes=notes)
    if beats.ectopic.any():
        notes.append(f"{int(beats.ectopic.sum())} of {classified} beats differ from the dominant QRS "
                     "(ectopic or artefact): left out of the median beat")

    rr_beat = np.concatenate([[np.nan], np.where(rr_valid, np.diff(beats.fiducial), np.nan)]) * 1000.0 / fs
    rr_ms = rr_beat[np.isfinite(rr_beat)]  # the valid RR intervals
    rr_s = float(rr_ms.mean()) / 1000.0
    before, after = window_extent(rr_s, fs)
    whole = complete(beats.fiducial, before, after, x.shape[1])

    # First pass, on the signal as recorded: the QRS onset, to place the PR-segment baseline knots
    # (slopes, which find the onset, barely change with the baseline).
    rough = filtfilt(median_beat(windows(x, beats.fiducial, before, after), beats.dominant, whole),
                     "lowpass", 40.0, fs)
    rough_bounds = qrs_bounds(rough, fs, before)
    rough_on = _consensus(rough_bounds.onset[~flat], fs, "qrs_on", earliest=True)[0]
    onset_offset = (rough_on if rough_on is not None else before - samples(0.05, fs)) - before
    knots = beats.fiducial[beats.dominant] + onset_offset - samples(0.015, fs)
    corrected = remove_baseline(x, knots, fs)

    # Amplitudes on the signal as recorded, boundaries on a 40 Hz low-passed version.
    meas_signal = corrected
    smooth_signal = filtfilt(corrected, "lowpass", 40.0, fs)
    meas_beats = windows(meas_signal, beats.fiducial, before, after)  # (beats, 12, L)
    smooth_beats = windows(smooth_signal, beats.fiducial, before, after)
    meas_median = median_beat(meas_beats, beats.dominant, whole)
    smooth_median = median_beat(smooth_beats, beats.dominant, whole)

    noise_beat, noisy = _lead_noise(meas_beats, meas_median, beats.dominant & whole, flat, fs, before)
    for lead in _names(noisy & ~flat):
        notes.append(f"lead {lead} is too noisy: not measured")
    measured = ~flat & ~noisy
    if measured.sum() < MIN_AGREEING_LEADS:
        notes.append("fewer than three leads are clean enough to measure: nothing measured")
        return GroundingFeatures(rhythm=_rhythm(beats, rr_ms, fs, None, [], []), notes=notes)
    used = max(1, int((beats.dominant & whole).sum()) or dominant_count)
    noise_median = noise_beat / math.sqrt(used)

    # Median beats: per-lead boundaries, then the global fiducials.
    lead_bounds = qrs_bounds(smooth_median, fs, before)
    qrs_on, why_on = _consensus(lead_bounds.onset[measured], fs, "qrs_on", earliest=True)
    qrs_off, why_off = _consensus(lead_bounds.offset[measured], fs, "qrs_off", earliest=False)
    _note(notes, "QRS onset", why_on)
    _note(notes, "QRS offset", why_off)
    have_qrs = qrs_on is not None and qrs_off is not None
    on_rows = np.full(12, qrs_on if have_qrs else -1)
    off_rows = np.full(12, qrs_off if have_qrs else -1)
    t_median = _masked(t_waves(smooth_median, fs, on_rows, off_rows, rr_s, noise_median), measured)
    t_end, why_t = _consensus(t_median.end[measured], fs, "t_end", earliest=False)
    qt_samples = _qt_samples(qrs_on, t_end, rr_s, fs)
    # The previous beat's T ends QT - RR after this beat's QRS onset: the P search starts after it.
    previous_t_end = on_rows + qt_samples - round(rr_s * fs)
    p_median = _masked(p_waves(smooth_median, fs, on_rows, previous_t_end, noise_median), measured)
    clear_p = measured & (np.abs(np.nan_to_num(p_median.amplitude)) >= 1.5 * P_MIN_MV)
    p_on, why_p_on = _consensus(p_median.onset[clear_p], fs, "p_on", earliest=True)
    p_off, why_p_off = _consensus(p_median.end[clear_p], fs, "p_off", earliest=False)
    for lead in _names(measured & np.isnan(t_median.amplitude)):
        notes.append(f"no T wave found in {lead}")
    for lead in _names(measured & ~np.isnan(t_median.amplitude) & (t_median.end < 0)):
        notes.append(f"no T end found in {lead}")
    if have_qrs:
        _note(notes, "T end", why_t)

    beat_rows, p_present = _per_beat(meas_beats, smooth_beats, beats, whole, fs, before,
                                     (qrs_on, qrs_off) if have_qrs else None, rr_beat, rr_s, qt_samples,
                                     noise_beat, measured)
    p_fraction = _fraction(p_present)
    p_agreed = have_qrs and why_p_on is None and why_p_off is None
    if have_qrs and not clear_p.any():
        notes.append("no P wave found in the median beat: PR, P axis and P duration not measured")
    elif have_qrs and not p_agreed:
        notes.append(f"no P wave common to the leads (P onset: {why_p_on or 'found'}; "
                     f"P offset: {why_p_off or 'found'}): PR, P axis and P duration not measured")
    elif p_agreed and (p_fraction is None or p_fraction < 0.5):
        # At an irregular rate the previous T waves pile up before the QRS in the median beat.
        notes.append(f"no P wave found in most single beats ({p_fraction or 0:.0%}): the median beat's "
                     "P-like wave is not taken as a P; PR, P axis and P duration not measured")
        p_agreed = False
    if not p_agreed:
        p_median, clear_p = _masked(p_median, np.zeros(12, dtype=bool)), np.zeros(12, dtype=bool)
    fiducials = _Fiducials(qrs_on, qrs_off, p_on if p_agreed else None, p_off if p_agreed else None, t_end)

    median_rows = measure_rows(meas_median, smooth_median, fs, on_rows, off_rows, lead_bounds.onset,
                               lead_bounds.offset, p_median, t_median, np.full(12, rr_s))
    _blank(median_rows, ~measured)
    leads = _lead_features(median_rows, beat_rows, beats.fiducial.size, rr_beat, measured, meas_median,
                           smooth_median, noise_median, p_median, fiducials, fs)
    global_ = _global(fiducials, rr_s, fs, meas_median, measured, notes)
    p_positive = [lead for lead, ok, amp in zip(STANDARD_LEADS, clear_p, p_median.amplitude, strict=True)
                  if ok and amp > 0]
    p_negative = [lead for lead, ok, amp in zip(STANDARD_LEADS, clear_p, p_median.amplitude, strict=True)
                  if ok and amp < 0]
    return GroundingFeatures(
        global_=global_,
        rhythm=_rhythm(beats, rr_ms, fs, p_fraction, p_positive, p_negative),
        voltages=_voltages(leads),
        leads=leads,
        st_deviation_mv={lead: features.median.st_level_mv for lead, features in leads.items()
                         if features.median.st_level_mv is not None},
        leads_measured=_names(measured),
        notes=notes,
    )


def _qt_samples(qrs_on: int | None, t_end: int | None, rr_s: float, fs: float) -> int:
    """The QT in samples: as measured, or else what Bazett's formula gives at a QTc of 440 ms."""
    if qrs_on is not None and t_end is not None:
        return t_end - qrs_on
    return round(0.44 * math.sqrt(rr_s) * fs)


# --- leads: quality and agreement --------------------------------------------------------------

def _names(mask: np.ndarray) -> list[str]:
    return [lead for lead, flag in zip(STANDARD_LEADS, mask, strict=True) if flag]


def _note(notes: list[str], what: str, why: str | None) -> None:
    if why is not None:
        notes.append(f"{what} not measured: {why}")


def _lead_noise(beat_windows: np.ndarray, median: np.ndarray, use: np.ndarray, flat: np.ndarray,
                fs: float, fiducial: int) -> tuple[np.ndarray, np.ndarray]:
    """(noise per lead in mV, noisy per lead): beat-to-beat residual around the median beat.

    A lead is noisy when that residual is large next to its own QRS (its beats do not repeat)
    and not tiny, or when it is large whatever the QRS.
    """
    chosen = beat_windows[use] if use.sum() >= 2 else beat_windows
    # A robust spread (1.4826 x the median absolute residual, the SD for Gaussian noise): at an
    # irregular rate the neighbouring beats' waves fall into the windows at varying places,
    # and must not count as noise.
    deviation = np.abs(chosen[:, :, ::3] - median[None, :, ::3]).transpose(1, 0, 2).reshape(median.shape[0], -1)
    residual = 1.4826 * np.median(deviation, axis=1)
    half = samples(0.06, fs)
    qrs = median[:, fiducial - half:fiducial + half]
    qrs_size = qrs.max(axis=1) - qrs.min(axis=1)
    noisy = ~flat & ((residual > np.maximum(MAX_NOISE_FRACTION * qrs_size, NOISE_FLOOR_MV))
                     | (residual > NOISE_LIMIT_MV))
    return residual, noisy


def _consensus(positions: np.ndarray, fs: float, kind: str, earliest: bool) -> tuple[int | None, str | None]:
    """One global fiducial from per-lead positions (-1 = not found), as devices combine leads.

    Leads more than AGREEMENT_MS[kind] from the leads' median are outliers and ignored.
    With at least three agreeing leads the result is the earliest (or latest) of them; with
    six or more the second earliest (latest), so one stray lead cannot move it.
    Returns (position, None) or (None, reason).
    """
    found = positions[positions >= 0]
    if found.size < MIN_AGREEING_LEADS:
        return None, f"found in {found.size} lead(s), {MIN_AGREEING_LEADS} needed"
    tolerance = AGREEMENT_MS[kind] * fs / 1000.0
    agreeing = np.sort(found[np.abs(found - np.median(found)) <= tolerance])
    if agreeing.size < MIN_AGREEING_LEADS:
        return None, f"leads disagree by more than {AGREEMENT_MS[kind]:g} ms"
    k = 1 if agreeing.size >= 6 else 0
    return int(agreeing[k] if earliest else agreeing[-1 - k]), None


def _masked(wave: Wave, keep: np.ndarray) -> Wave:
    return Wave(onset=np.where(keep, wave.onset, -1), peak=np.where(keep, wave.peak, -1),
                end=np.where(keep, wave.end, -1), amplitude=np.where(keep, wave.amplitude, np.nan))


def _blank(rows: dict[str, np.ndarray], drop: np.ndarray) -> None:
    """Set the rows where `drop` is True to NaN in every measurement."""
    for values in rows.values():
        values[drop] = np.nan


# --- single beats ------------------------------------------------------------------------------

def _per_beat(meas_beats: np.ndarray, smooth_beats: np.ndarray, beats: Beats, whole: np.ndarray, fs: float,
              fiducial: int, qrs: tuple[int, int] | None, rr_beat: np.ndarray, rr_s: float, qt_samples: int,
              noise_beat: np.ndarray,
              measured: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Measurements of every lead of every beat, as (beats, 12) arrays, and P presence per beat.

    Dominant beats are measured inside the global QRS window (shifted with each beat);
    other beats (ectopics) inside their own per-lead QRS boundaries, without P, ST or T,
    since the dominant beat's windows do not fit them.
    """
    count, leads, length = meas_beats.shape
    meas_rows = meas_beats.reshape(count * leads, length)
    smooth_rows = smooth_beats.reshape(count * leads, length)
    bounds = qrs_bounds(smooth_rows, fs, fiducial)
    dominant_rows = np.repeat(beats.dominant, leads)
    if qrs is not None:  # the global QRS window of the median beat
        on = np.where(dominant_rows, qrs[0], bounds.onset)
        off = np.where(dominant_rows, qrs[1], bounds.offset)
    else:
        on, off = bounds.onset, bounds.offset
    noise = np.tile(noise_beat, count)
    # Each beat's preceding RR (the mean RR where unknown), in samples.
    rr_before = np.round(np.where(np.isnan(rr_beat), rr_s * 1000.0, rr_beat) * fs / 1000.0).astype(int)
    rr_rows = np.repeat(rr_before, leads)
    p = p_waves(smooth_rows, fs, on, on + qt_samples - rr_rows, noise)
    t = t_waves(smooth_rows, fs, on, off, rr_s, noise)
    rows = measure_rows(meas_rows, smooth_rows, fs, on, off, bounds.onset, bounds.offset, p, t, rr_rows / fs)
    # Ectopic beats: only their QRS. Beats cut by the record's start/end: nothing that fell outside.
    starts_cut = np.repeat(beats.fiducial - fiducial < 0, leads)
    ends_cut = np.repeat(~whole & ~(beats.fiducial - fiducial < 0), leads)
    lead_ok = np.tile(measured, count)
    for name, values in rows.items():
        values[~lead_ok] = np.nan
        if name.startswith(("p_", "pr_")):
            values[~dominant_rows | starts_cut] = np.nan
        if name.startswith(("t_", "st_", "qt")):
            values[~dominant_rows | ends_cut] = np.nan
    per_beat = {name: values.reshape(count, leads) for name, values in rows.items()}
    # A P wave is known to be there or not only where the record holds the 400 ms before the QRS.
    known = (beats.fiducial - samples(0.4, fs) >= 0) & ~beats.edge
    peaks = np.where(dominant_rows & ~starts_cut, p.peak, -1).reshape(count, leads)
    return per_beat, _p_presence(peaks, measured, fs, known)


def _p_presence(peaks: np.ndarray, measured: np.ndarray, fs: float, known: np.ndarray) -> np.ndarray:
    """Per beat 1.0 (a P wave) or 0.0 (none), NaN where unknown; peaks: (beats, 12) P peak samples.

    A beat has a P wave when several measured leads (3, or a quarter of them) found one within
    40 ms of each other: an atrial wave is seen at the same moment in many leads, while noise
    and fibrillation waves (which also raise the noise threshold they must clear) are not.
    """
    times = np.where(measured[None, :] & (peaks >= 0), peaks, np.nan).astype(float)
    found = np.isfinite(times).sum(axis=1)
    ordered = np.sort(times, axis=1)  # NaN last
    centre = np.take_along_axis(ordered, np.maximum(found - 1, 0)[:, None] // 2, axis=1)
    agreeing = (np.abs(times - centre) <= samples(0.04, fs)).sum(axis=1)
    present = agreeing >= max(3, int(measured.sum()) // 4)
    return np.where(known, present.astype(float), np.nan)


# --- assembling the output ---------------------------------------------------------------------

def _rounded(rows: dict[str, np.ndarray]) -> dict[str, list[float | None]]:
    """Each measurement rounded (ms 0.1, mV 0.001, mV/s 0.01) as Python floats, None for NaN."""
    out = {}
    for name, values in rows.items():
        digits = 2 if name.endswith("_per_s") else 3 if name.endswith("_mv") else 1
        rounded = np.round(np.asarray(values, dtype=float), digits)
        out[name] = [None if not math.isfinite(v) else v for v in rounded.ravel().tolist()]
    return out


def _beat(fields: dict[str, float | None]) -> BeatFeatures:
    return BeatFeatures(**fields, st_form=st_form(fields["st_slope_mv_per_s"]))


def _lead_features(median_rows: dict[str, np.ndarray], beat_rows: dict[str, np.ndarray], count: int,
                   rr_beat: np.ndarray, measured: np.ndarray, meas_median: np.ndarray, smooth_median: np.ndarray,
                   noise_median: np.ndarray, p_median: Wave, fiducials: _Fiducials,
                   fs: float) -> dict[str, LeadFeatures]:
    leads: dict[str, LeadFeatures] = {}
    medians = _rounded(median_rows)
    per_beat = _rounded({"rr_ms": np.repeat(rr_beat[:, None], 12, axis=1),
                         **beat_rows})  # each a flat list in (beat, lead) order
    for i, lead in enumerate(STANDARD_LEADS):
        if not measured[i]:
            leads[lead] = LeadFeatures(lead=lead)
            continue
        median = _beat({name: values[i] for name, values in medians.items()})
        beats = [_beat({name: values[b * 12 + i] for name, values in per_beat.items()}) for b in range(count)]
        morphology, notched, terminal = None, None, None
        if fiducials.qrs_on is not None and fiducials.qrs_off is not None:
            y = meas_median[i] - _level_before(meas_median[i], fiducials.qrs_on, fs)
            morphology = qrs_label(y[fiducials.qrs_on:fiducials.qrs_off + 1], fs)
            if fiducials.p_on is not None and fiducials.p_off is not None and np.isfinite(p_median.amplitude[i]):
                smooth = smooth_median[i] - _level_before(smooth_median[i], fiducials.qrs_on, fs)
                notched, terminal = p_shape(smooth[fiducials.p_on:fiducials.p_off + 1], fs,
                                            float(p_median.amplitude[i]), float(noise_median[i]))
                terminal = round(terminal, 3)
        leads[lead] = LeadFeatures(lead=lead, beats=beats, median=median, qrs_morphology=morphology,
                                   p_notched=notched, p_terminal_negative_mv=terminal)
    return leads


def _level_before(row: np.ndarray, qrs_on: int, fs: float) -> float:
    """The PR baseline of one row: the mean of the 16 ms ending 4 ms before the QRS onset."""
    start = max(0, qrs_on - samples(0.02, fs))
    stop = max(start + 1, qrs_on - samples(0.004, fs))
    return float(row[start:stop].mean())


def _global(fiducials: _Fiducials, rr_s: float, fs: float, meas_median: np.ndarray, measured: np.ndarray,
            notes: list[str]) -> Measurements:
    """Device-style global measurements from the global fiducials and the median beat."""
    def ms(start: int | None, stop: int | None) -> float | None:
        if start is None or stop is None or stop <= start:
            return None
        return round((stop - start) * 1000.0 / fs, 1)

    qt = ms(fiducials.qrs_on, fiducials.t_end)
    axes = {name: _axis(meas_median, measured, span, fiducials.qrs_on, fs)
            for name, span in (("p", (fiducials.p_on, fiducials.p_off)),
                               ("qrs", (fiducials.qrs_on, fiducials.qrs_off)),
                               ("t", (fiducials.qrs_off, fiducials.t_end)))}
    for name, (value, why) in axes.items():
        if value is None and why is not None:
            notes.append(f"{name.upper()} axis not measured: {why}")
    return Measurements(
        hr_bpm=round(60.0 / rr_s, 1),
        rr_ms=round(rr_s * 1000.0, 1),
        pr_ms=ms(fiducials.p_on, fiducials.qrs_on),
        qrs_ms=ms(fiducials.qrs_on, fiducials.qrs_off),
        qt_ms=qt,
        qtc_ms=None if qt is None else round(qt / math.sqrt(rr_s), 1),
        qtc_fridericia_ms=None if qt is None else round(qt / rr_s ** (1.0 / 3.0), 1),
        p_axis_deg=axes["p"][0],
        qrs_axis_deg=axes["qrs"][0],
        t_axis_deg=axes["t"][0],
    )


def _axis(meas_median: np.ndarray, measured: np.ndarray, span: tuple[int | None, int | None],
          qrs_on: int | None, fs: float) -> tuple[float | None, str | None]:
    """Frontal-plane axis (degrees, -180..180) from the net areas in I and aVF over a span.

    With Einthoven's triangle, lead I reads the x component and aVF (sqrt(3)/2) times the y
    component of the heart vector, hence the 2/sqrt(3) on aVF.
    """
    start, stop = span
    if start is None or stop is None or qrs_on is None or stop <= start:
        return None, None  # the interval itself was not measured; its note says why
    lead_i, lead_avf = STANDARD_LEADS.index("I"), STANDARD_LEADS.index("aVF")
    if not (measured[lead_i] and measured[lead_avf]):
        return None, "lead I or aVF not measured"
    areas = []
    for index in (lead_i, lead_avf):
        row = meas_median[index] - _level_before(meas_median[index], qrs_on, fs)
        areas.append(float(row[start:stop + 1].sum()) / fs)
    x, y = areas[0], areas[1] * 2.0 / math.sqrt(3.0)
    if math.hypot(x, y) < MIN_AXIS_AREA_MV_S:
        return None, "net deflection too small in I and aVF (indeterminate)"
    return round(math.degrees(math.atan2(y, x)), 1), None


def _rhythm(beats: Beats, rr_ms: np.ndarray, fs: float, p_fraction: float | None, p_positive: list[str],
            p_negative: list[str]) -> Rhythm:
    """Rate and rhythm from the valid RR intervals (ms) and the beats' P waves."""
    mean = float(rr_ms.mean()) if rr_ms.size else None
    sd = float(rr_ms.std(ddof=1)) if rr_ms.size >= 2 else None
    cv = sd / mean if sd is not None and mean else None
    return Rhythm(
        beat_count=int(beats.fiducial.size),
        rr_mean_ms=None if mean is None else round(mean, 1),
        rr_sd_ms=None if sd is None else round(sd, 1),
        rr_cv=None if cv is None else round(cv, 4),
        regular=None if cv is None else bool(cv < REGULAR_RR_CV),
        p_wave_fraction=p_fraction,
        p_positive_in=p_positive,
        p_negative_in=p_negative,
        beat_times_ms=[round(v, 1) for v in (beats.fiducial * 1000.0 / fs).tolist()],
        ectopic_count=int(beats.ectopic.sum()),
    )


def _fraction(p_present: np.ndarray) -> float | None:
    """Share of the beats (those whose P segment was recorded) that have a P wave."""
    known = p_present[~np.isnan(p_present)]
    return round(float(known.mean()), 3) if known.size else None


def _voltages(leads: dict[str, LeadFeatures]) -> Voltages:
    def median(lead: str, field: str) -> float | None:
        return getattr(leads[lead].median, field)

    r_v5, r_v6, s_v1 = median("V5", "r_amp_mv"), median("V6", "r_amp_mv"), median("V1", "s_amp_mv")
    lateral = [value for value in (r_v5, r_v6) if value is not None]
    limb = [median(lead, "qrs_amp_mv") for lead in LIMB_LEADS]
    precordial = [median(lead, "qrs_amp_mv") for lead in PRECORDIAL_LEADS]
    return Voltages(
        s_v1_mv=s_v1, r_v5_mv=r_v5, r_v6_mv=r_v6,
        r_i_mv=median("I", "r_amp_mv"), r_avl_mv=median("aVL", "r_amp_mv"),
        sokolow_lyon_mv=None if s_v1 is None or not lateral else round(s_v1 + max(lateral), 3),
        limb_qrs_max_mv=max((v for v in limb if v is not None), default=None),
        precordial_qrs_max_mv=max((v for v in precordial if v is not None), default=None),
    )
