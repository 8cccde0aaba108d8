"""Running the delineators on one record: ours (with the protocol reader) and neurokit2 beside it.

Both see the same input: the record read by `ingest.readers`, cut to the model window
(10 s at 500 Hz, `ingest.prepare.signal`), so both are judged on what the product measures.
Each returns a `RecordResult`: the global intervals and axes, the global wave boundaries of
each beat in ms from the record's start, and (ours only) the reader's labels.

neurokit2 (installed for tests and benchmarks only, never by the product) delineates one
lead at a time: its R peaks come from lead II, `ecg_delineate(method="dwt")` runs on each
chosen lead with those peaks, and a beat's global boundary is the median over the leads
that found it (neurokit2 has no multi-lead rule of its own; the median is the robust
choice). By default the leads are II, V2 and V5 (large P, QRS and T between them): all 12
take about 1.3 s per record on one core, four times longer, for much the same figures.
Its intervals are the medians over beats; it measures no axes.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ingest.ecg import STANDARD_LEADS, Demographics, Measurements
from ingest.errors import IngestError
from ingest.measure.measured import AtrialWaveLead, GroundingFeatures, PLock
from ingest.validation.labels import CRITICAL_FINDINGS, general_label
from ingest.validation.references import BOUNDARIES, Reference

NEUROKIT2_LEADS: tuple[str, ...] = ("II", "V2", "V5")
OURS = "ecg-worklist"
NEUROKIT2 = "neurokit2-dwt"
DELINEATORS: tuple[str, ...] = (OURS, NEUROKIT2)


class BeatBoundaries(BaseModel):
    """Global boundaries of one beat, ms from the record's start (None: not found)."""

    p_on: float | None = None
    p_off: float | None = None
    qrs_on: float | None = None
    qrs_off: float | None = None
    t_end: float | None = None

    def get(self, boundary: str) -> float | None:
        return getattr(self, boundary)


class RecordResult(BaseModel):
    """What one delineator made of one record."""

    key: str
    delineator: str
    error: str | None = None  # the record could not be read or measured at all
    measured: Measurements = Field(default_factory=Measurements)
    beats: list[BeatBoundaries] = Field(default_factory=list)
    # Ours only: each beat's boundaries as the median of the leads' own, the convention of LUDB's annotations
    # and of neurokit2's here (`WaveBoundaries.lead_median`); `beats` holds the device convention.
    lead_median_beats: list[BeatBoundaries] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)  # the protocol reader's (ours only)
    notes: list[str] = Field(default_factory=list)
    leads_measured: int | None = None
    p_wave_fraction: float | None = None
    atrial_waves: list[AtrialWaveLead] = Field(default_factory=list)
    p_lock: PLock | None = None
    # The critical findings the measured values alone raise in the worklist's triage (`reports.triage`,
    # what the review queue marks red before any reader): general labels (ours only).
    measured_critical: list[str] = Field(default_factory=list)
    seconds: float = 0.0


def model_window(reference: Reference, data_dir: Path, rate_hz: float | None = None) -> tuple[np.ndarray, float, object]:
    """(signal 12 x 5000 mV, fs, Ecg) of a record, as preparation makes it.

    rate_hz: present the record as a recording made at this rate (resampled from its own with the
    preparation's anti-aliased resampler, then back to the window's 500 Hz), to see how the figures
    hold for an archive recorded at 250 or 1000 Hz; None: as recorded. The Ecg says the rate given."""
    from ingest.prepare.signal import resample, to_model_window
    from ingest.readers.read import read_ecg

    ecg = read_ecg(reference.file(data_dir))
    if rate_hz is not None and ecg.signal is not None and ecg.sampling_rate_hz != rate_hz:
        ecg = ecg.model_copy(update={"signal": resample(ecg.signal, ecg.sampling_rate_hz, rate_hz),
                                     "sampling_rate_hz": float(rate_hz)})
    window = to_model_window(ecg)
    return np.asarray(window.signal, dtype=np.float64), float(window.sampling_rate_hz), ecg


def run_ours(reference: Reference, data_dir: Path, rate_hz: float | None = None) -> RecordResult:
    """Our measurement and protocol reading of one record (rate_hz: see `model_window`)."""
    from ingest.measure.features import measure
    from ingest.protocol import protocol_read

    started = time.perf_counter()
    try:
        signal, fs, ecg = model_window(reference, data_dir, rate_hz)
    except IngestError as exc:
        return RecordResult(key=reference.key, delineator=OURS, error=str(exc))
    features = measure(signal, fs, recorded_rate_hz=ecg.sampling_rate_hz)  # as `ingest.prepare` measures
    reading = protocol_read(features, ecg.demographics)
    critical = measured_critical(features, ecg.demographics)
    bounds = features.boundaries
    times = features.rhythm.beat_times_ms
    beats, lead_median_beats = [], []
    for index in bounds.dominant_beats:
        if index < len(times):
            beats.append(BeatBoundaries(**{name: _shifted(times[index], getattr(bounds, f"{name}_ms"))
                                           for name in BOUNDARIES}))
            if bounds.lead_median is not None:
                lead_median_beats.append(BeatBoundaries(**{
                    name: _shifted(times[index], getattr(bounds.lead_median, f"{name}_ms")) for name in BOUNDARIES}))
    return RecordResult(key=reference.key, delineator=OURS, measured=features.global_, beats=beats,
                        lead_median_beats=lead_median_beats,
                        labels=reading.labels, notes=features.notes, leads_measured=len(features.leads_measured),
                        p_wave_fraction=features.rhythm.p_wave_fraction, atrial_waves=features.rhythm.atrial_waves,
                        p_lock=features.rhythm.p_lock, measured_critical=critical,
                        seconds=time.perf_counter() - started)


def measured_critical(features: GroundingFeatures, demographics: Demographics | None) -> list[str]:
    """The critical findings of `reports.triage.measured_findings` that a reference can state (general
    labels; the extreme rates are the measured rate itself, which no reference names)."""
    # The harness reaches into the reports stage here on purpose: the review queue's red marks are what a
    # cardiologist sees first, so their false alarms on real records are scored beside the reader's.
    from reports.triage import measured_findings

    found = {general_label(finding.finding) for finding in measured_findings(features, demographics)}
    return sorted(found & set(CRITICAL_FINDINGS))


def _shifted(beat_ms: float, offset_ms: float | None) -> float | None:
    return None if offset_ms is None else round(beat_ms + offset_ms, 1)


# neurokit2's per-beat keys for our boundaries.
_NK_KEYS = {"p_on": "ECG_P_Onsets", "p_off": "ECG_P_Offsets", "qrs_on": "ECG_R_Onsets", "qrs_off": "ECG_R_Offsets",
            "t_end": "ECG_T_Offsets"}


def run_neurokit2(reference: Reference, data_dir: Path, leads: tuple[str, ...] = NEUROKIT2_LEADS,
                  rate_hz: float | None = None) -> RecordResult:
    """neurokit2's dwt delineation of one record (lead II peaks, `leads` delineated, median over them;
    rate_hz: see `model_window`)."""
    import neurokit2 as nk

    started = time.perf_counter()
    try:
        signal, fs, _ = model_window(reference, data_dir, rate_hz)
    except IngestError as exc:
        return RecordResult(key=reference.key, delineator=NEUROKIT2, error=str(exc))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lead_ii = nk.ecg_clean(signal[STANDARD_LEADS.index("II")], sampling_rate=int(fs))
            _, found = nk.ecg_peaks(lead_ii, sampling_rate=int(fs))
            peaks = np.asarray(found["ECG_R_Peaks"], dtype=int)
            if peaks.size < 3:
                return RecordResult(key=reference.key, delineator=NEUROKIT2, error="fewer than 3 R peaks found",
                                    seconds=time.perf_counter() - started)
            per_lead = np.full((len(leads), len(BOUNDARIES), peaks.size), np.nan)
            for row, lead in enumerate(leads):
                cleaned = nk.ecg_clean(signal[STANDARD_LEADS.index(lead)], sampling_rate=int(fs))
                try:
                    _, waves = nk.ecg_delineate(cleaned, peaks, sampling_rate=int(fs), method="dwt")
                except Exception:  # neurokit2 fails on some leads (flat, noisy): that lead found nothing
                    continue
                for b, name in enumerate(BOUNDARIES):
                    values = np.asarray(waves.get(_NK_KEYS[name], []), dtype=float)
                    if values.size == peaks.size:
                        per_lead[row, b] = values
    except Exception as exc:  # a crash of the open delineator is a result to count, not a harness failure
        return RecordResult(key=reference.key, delineator=NEUROKIT2, error=f"{type(exc).__name__}: {exc}",
                            seconds=time.perf_counter() - started)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN beats
        global_samples = np.nanmedian(per_lead, axis=0)  # (boundary, beat)
    to_ms = 1000.0 / fs
    beats = [BeatBoundaries(**{name: None if math.isnan(global_samples[b, i]) else round(global_samples[b, i] * to_ms, 1)
                               for b, name in enumerate(BOUNDARIES)}) for i in range(peaks.size)]
    rr_ms = np.diff(peaks) * to_ms
    return RecordResult(key=reference.key, delineator=NEUROKIT2, measured=_nk_intervals(beats, float(rr_ms.mean())),
                        beats=beats, seconds=time.perf_counter() - started)


def _nk_intervals(beats: list[BeatBoundaries], rr_ms: float) -> Measurements:
    """Global intervals as medians over beats; QTc by Bazett with the mean RR."""
    def median(start: str, stop: str) -> float | None:
        values = [b.get(stop) - b.get(start) for b in beats
                  if b.get(start) is not None and b.get(stop) is not None and b.get(stop) > b.get(start)]
        return round(float(np.median(values)), 1) if values else None

    qt = median("qrs_on", "t_end")
    return Measurements(hr_bpm=round(60000.0 / rr_ms, 1), rr_ms=round(rr_ms, 1), pr_ms=median("p_on", "qrs_on"),
                        qrs_ms=median("qrs_on", "qrs_off"), qt_ms=qt,
                        qtc_ms=None if qt is None else round(qt / math.sqrt(rr_ms / 1000.0), 1))
