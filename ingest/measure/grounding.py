"""From measured arrays to the typed `GroundingFeatures`: the last step of `ingest.measure.features`.

Rounds numbers once (ms to 0.1, mV to 0.001, mV/s to 0.01), turns NaN into None, builds the
per-lead and per-beat models, and derives the device-style global measurements (intervals
from the global fiducial points, frontal axes from net areas), the rhythm summary and the
hypertrophy/low-voltage voltages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ingest.measure.beat_measures import p_shape, qrs_label, st_form
from ingest.measure.beats import Beats, samples
from ingest.measure.delineate import Wave
from ingest.ecg import STANDARD_LEADS, Measurements
from ingest.measure.measured import BeatFeatures, LeadFeatures, Rhythm, Voltages

# RR coefficient of variation below which the rhythm is called regular.
REGULAR_RR_CV = 0.10
# Frontal axes need a net area (mV*s) in I and aVF of at least this size; below it the
# axis is indeterminate (a wave nearly perpendicular to the frontal plane, or absent).
MIN_AXIS_AREA_MV_S = 0.002
LIMB_LEADS = STANDARD_LEADS[:6]
PRECORDIAL_LEADS = STANDARD_LEADS[6:]


@dataclass(frozen=True)
class Fiducials:
    """Global fiducial samples in median-beat coordinates (None when the leads did not agree)."""

    qrs_on: int | None
    qrs_off: int | None
    p_on: int | None
    p_off: int | None
    t_end: int | None


def level_before(row: np.ndarray, qrs_on: int, fs: float) -> float:
    """The PR baseline of one row: the mean of the 16 ms ending 4 ms before the QRS onset."""
    start = max(0, qrs_on - samples(0.02, fs))
    stop = max(start + 1, qrs_on - samples(0.004, fs))
    return float(row[start:stop].mean())


def _rounded(rows: dict[str, np.ndarray]) -> dict[str, list[float | None]]:
    """Each measurement rounded for its unit, flattened to Python floats, None for NaN."""
    out = {}
    for name, values in rows.items():
        digits = 2 if name.endswith("_per_s") else 3 if name.endswith("_mv") else 1
        rounded = np.round(np.asarray(values, dtype=float), digits).ravel()
        flat = rounded.tolist()
        for index in np.flatnonzero(~np.isfinite(rounded)).tolist():  # only where needed: most values are finite
            flat[index] = None
        out[name] = flat
    return out


def _beat(fields: dict[str, float | None]) -> dict[str, float | str | None]:
    """One beat's fields with its ST form, for `BeatFeatures` (validated with the lead, in one call)."""
    fields["st_form"] = st_form(fields["st_slope_mv_per_s"])
    return fields


def lead_features(median_rows: dict[str, np.ndarray], beat_rows: dict[str, np.ndarray], rr_beat_ms: np.ndarray,
                  measured: np.ndarray, meas_median: np.ndarray, smooth_median: np.ndarray,
                  noise_median: np.ndarray, p_median: Wave, fiducials: Fiducials,
                  fs: float, qrs_only: np.ndarray | None = None) -> dict[str, LeadFeatures]:
    """LeadFeatures for the 12 leads: median-beat and per-beat measurements, QRS label, P shape.

    median_rows: name -> (12,) values; beat_rows: name -> (beats, 12) values; rr_beat_ms: the
    RR interval before each beat (NaN when unknown). Leads not measured stay empty; `qrs_only`
    leads (among the measured) get no P shape (their rows hold the QRS fields alone).
    """
    medians = _rounded(median_rows)
    per_beat = _rounded({"rr_ms": np.repeat(rr_beat_ms[:, None], 12, axis=1), **beat_rows})  # (beat, lead) order
    names = list(per_beat)
    leads: dict[str, LeadFeatures] = {}
    for i, lead in enumerate(STANDARD_LEADS):
        if not measured[i]:
            leads[lead] = LeadFeatures(lead=lead)
            continue
        median = _beat({name: values[i] for name, values in medians.items()})
        # This lead's column of every measurement, then one beat per row of those columns.
        columns = [per_beat[name][i::12] for name in names]
        beats = [_beat(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]
        morphology, notched, terminal = None, None, None
        if fiducials.qrs_on is not None and fiducials.qrs_off is not None:
            y = meas_median[i] - level_before(meas_median[i], fiducials.qrs_on, fs)
            morphology = qrs_label(y[fiducials.qrs_on:fiducials.qrs_off + 1], fs)
            p_read = qrs_only is None or not qrs_only[i]
            if p_read and fiducials.p_on is not None and fiducials.p_off is not None \
                    and np.isfinite(p_median.amplitude[i]):
                smooth = smooth_median[i] - level_before(smooth_median[i], fiducials.qrs_on, fs)
                notched, depth = p_shape(smooth[fiducials.p_on:fiducials.p_off + 1], fs,
                                         float(p_median.amplitude[i]), float(noise_median[i]))
                terminal = round(depth, 3)
        leads[lead] = LeadFeatures(lead=lead, beats=beats, median=median, qrs_morphology=morphology,
                                   p_notched=notched, p_terminal_negative_mv=terminal)
    return leads


def global_measurements(fiducials: Fiducials, rr_s: float, fs: float, meas_median: np.ndarray,
                        measured: np.ndarray, notes: list[str]) -> Measurements:
    """Device-style global measurements from the global fiducials and the median beat.

    Intervals run between global fiducial points (PR: P onset to QRS onset; QT: QRS onset to
    T end); QTc by Bazett (QT / sqrt(RR)) and Fridericia (QT / cbrt(RR)) with the mean RR.
    """
    def ms(start: int | None, stop: int | None) -> float | None:
        if start is None or stop is None or stop <= start:
            return None
        return round((stop - start) * 1000.0 / fs, 1)

    qt = ms(fiducials.qrs_on, fiducials.t_end)
    axes = {name: frontal_axis(meas_median, measured, span, fiducials.qrs_on, fs)
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


def frontal_axis(meas_median: np.ndarray, measured: np.ndarray, span: tuple[int | None, int | None],
                 qrs_on: int | None, fs: float) -> tuple[float | None, str | None]:
    """Frontal-plane axis (degrees, -180..180) from the net areas in I and aVF over a span.

    (value, None), or (None, why). The P axis uses the P wave, the QRS axis the QRS, the T
    axis the ST-T (J point to T end). With Einthoven's triangle lead I reads the x component
    of the heart vector and aVF sqrt(3)/2 times its y component, hence the 2/sqrt(3) on aVF.
    """
    start, stop = span
    if start is None or stop is None or qrs_on is None or stop <= start:
        return None, None  # the interval itself was not measured; its note says why
    lead_i, lead_avf = STANDARD_LEADS.index("I"), STANDARD_LEADS.index("aVF")
    if not (measured[lead_i] and measured[lead_avf]):
        return None, "lead I or aVF not measured"
    areas = []
    for index in (lead_i, lead_avf):
        row = meas_median[index] - level_before(meas_median[index], qrs_on, fs)
        areas.append(float(row[start:stop + 1].sum()) / fs)
    x, y = areas[0], areas[1] * 2.0 / math.sqrt(3.0)
    if math.hypot(x, y) < MIN_AXIS_AREA_MV_S:
        return None, "net deflection too small in I and aVF (indeterminate)"
    return round(math.degrees(math.atan2(y, x)), 1), None


def rhythm(beats: Beats, rr_ms: np.ndarray, fs: float, p_fraction: float | None, p_positive: list[str],
           p_negative: list[str], rr_beat_ms: np.ndarray | None = None,
           p_present: np.ndarray | None = None, beat_pr_ms: np.ndarray | None = None) -> Rhythm:
    """Rate and rhythm from the valid RR intervals (ms) and the beats' P waves.

    rr_beat_ms: the RR before each beat (NaN where unknown); p_present: 1.0 / 0.0 / NaN per beat;
    beat_pr_ms: each beat's PR (NaN where not timed).
    """
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
        rr_intervals_ms=[] if rr_beat_ms is None else
        [None if not math.isfinite(v) else round(v, 1) for v in rr_beat_ms.tolist()],
        ectopic_beats=beats.ectopic.tolist(),
        qrs_correlation=[round(float(value), 2) for value in beats.correlation.tolist()],
        p_present=[] if p_present is None else [None if not math.isfinite(v) else bool(v) for v in p_present.tolist()],
        beat_pr_ms=[] if beat_pr_ms is None else
        [None if not math.isfinite(v) else round(v, 1) for v in beat_pr_ms.tolist()],
    )


def voltages(leads: dict[str, LeadFeatures]) -> Voltages:
    """The hypertrophy and low-voltage numbers, from the median beats."""
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
