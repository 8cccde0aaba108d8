"""A one-screen summary of one ECG: what was read, what was measured, what the device said.

`summarize(ecg, prepared)` is what `ecg-worklist inspect FILE` prints (as text or JSON)
and what a person checks first when a file lands in quarantine or a draft looks odd.
`measurements` are ours (from `prepared.features`), `device_measurements` are the
acquiring device's own (DICOM annotations); both stay None where nothing was measured.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from ingest.ecg import Ecg, Measurements, Sex, SourceFormat
from ingest.prepare import PreparedEcg


class InspectDemographics(BaseModel):
    patient_id: str | None = None
    patient_name: str | None = None
    sex: Sex = Sex.UNKNOWN
    birth_date: dt.date | None = None
    age_years: int | None = None
    accession: str | None = None
    study_uid: str | None = None
    acquired_at: dt.datetime | None = None


class InspectMeasurements(BaseModel):
    """The global measurements a report shows; None where not measured."""

    hr_bpm: float | None = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_ms: float | None = None
    p_axis_deg: float | None = None
    qrs_axis_deg: float | None = None
    t_axis_deg: float | None = None

    @classmethod
    def of(cls, measurements: Measurements) -> InspectMeasurements:
        return cls.model_validate(measurements.model_dump(include=set(cls.model_fields)))


class InspectSummary(BaseModel):
    source_path: str
    source_format: SourceFormat
    leads: list[str]
    sampling_rate_hz: float | None
    duration_s: float | None
    n_samples: int | None
    has_signal: bool
    has_image: bool
    n_pages: int
    demographics: InspectDemographics
    measurements: InspectMeasurements  # ours, from the prepared features (nulls without them)
    device_measurements: InspectMeasurements | None  # the acquiring device's, when it stored them
    device_statements: list[str] = Field(default_factory=list)  # texts; " [confirmed]" marks a confirmed one
    device_name: str | None = None
    derived_leads: list[str] = Field(default_factory=list)
    missing_leads: list[str] = Field(default_factory=list)
    prepared: bool = False  # whether preparation (window, image, features) ran
    notes: list[str] = Field(default_factory=list)


def _provenance_notes(ecg: Ecg) -> list[str]:
    """Provenance entries a person should see (how the leads were obtained, what was dropped)."""
    keys = ("filters", "dropped_channels", "lead_notes", "median_beat", "demographics_notes")
    return [f"{key.replace('_', ' ')}: {ecg.provenance[key]}" for key in keys if key in ecg.provenance]


def summarize(ecg: Ecg, prepared: PreparedEcg | None = None) -> InspectSummary:
    """Summarise a read ECG and, when given, its preparation."""
    features = prepared.features if prepared is not None else None
    measurements = InspectMeasurements.of(features.global_) if features is not None else InspectMeasurements()
    notes = _provenance_notes(ecg)
    if prepared is not None:
        notes += [note for note in (prepared.window_note, *prepared.notes) if note]
        if features is not None:
            notes += features.notes
        has_image = "image" in prepared.modalities
    else:
        has_image = bool(ecg.pages)
    derived = ecg.provenance.get("derived_leads", "")
    return InspectSummary(
        source_path=ecg.source_path,
        source_format=ecg.source_format,
        leads=list(ecg.lead_names),
        sampling_rate_hz=ecg.sampling_rate_hz,
        duration_s=ecg.duration_s,
        n_samples=int(ecg.signal.shape[1]) if ecg.signal is not None else None,
        has_signal=ecg.has_signal,
        has_image=has_image,
        n_pages=len(ecg.pages),
        demographics=InspectDemographics.model_validate(ecg.demographics.model_dump()),
        measurements=measurements,
        device_measurements=InspectMeasurements.of(ecg.device_measurements) if ecg.device_measurements else None,
        device_statements=[statement.text + (" [confirmed]" if statement.confirmed else "")
                           for statement in ecg.device_statements],
        device_name=ecg.device_name,
        derived_leads=derived.split(",") if derived else [],
        missing_leads=ecg.missing_leads,
        prepared=prepared is not None,
        notes=notes,
    )


def _value(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = f"{value:.0f}" if value == round(value) else f"{value:.1f}"
    return f"{value}{unit}"


def format_summary(summary: InspectSummary) -> str:
    """The summary as aligned text lines for a terminal."""
    d = summary.demographics
    lines = [
        f"file          {summary.source_path}",
        f"format        {summary.source_format.value}"
        + (f" ({summary.device_name})" if summary.device_name else ""),
    ]
    if summary.has_signal:
        lines.append(f"signal        {len(summary.leads)} leads x {summary.n_samples} samples, "
                     f"{_value(summary.sampling_rate_hz, ' Hz')}, {_value(summary.duration_s, ' s')}")
        lines.append(f"leads         {' '.join(summary.leads)}"
                     + (f"  (derived: {', '.join(summary.derived_leads)})" if summary.derived_leads else ""))
    else:
        lines.append(f"signal        none ({summary.n_pages} page image(s))")
    lines += [
        f"patient       id {_value(d.patient_id)}, name {_value(d.patient_name)}, sex {d.sex.value}, "
        f"born {_value(d.birth_date)}, age {_value(d.age_years)}",
        f"study         accession {_value(d.accession)}, acquired {_value(d.acquired_at)}",
    ]

    def row(label: str, m: InspectMeasurements | None) -> str:
        if m is None:
            return f"{label:<14}-"
        return (f"{label:<14}HR {_value(m.hr_bpm)} bpm  PR {_value(m.pr_ms)}  QRS {_value(m.qrs_ms)}  "
                f"QT {_value(m.qt_ms)}  QTc {_value(m.qtc_ms)} ms  axes P {_value(m.p_axis_deg)}  "
                f"QRS {_value(m.qrs_axis_deg)}  T {_value(m.t_axis_deg)}")

    lines.append(row("measured", summary.measurements if summary.prepared else None))
    lines.append(row("device", summary.device_measurements))
    if summary.device_statements:
        lines.append(f"device says   {' / '.join(summary.device_statements)}")
    lines += [f"note          {note}" for note in summary.notes]
    return "\n".join(lines)
