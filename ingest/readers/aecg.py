"""HL7 v3 annotated ECG (FDA aECG, `<AnnotatedECG xmlns="urn:hl7-org:v3">`) to a canonical `Ecg`.

    AnnotatedECG
      effectiveTime (center | low)                        acquisition time, YYYYMMDDHHMMSS
      componentOf/.../trialSubject                        subject id, name (initials), sex, birth
      controlVariable: LOINC 21612-7                      reported age
      component/series (code RHYTHM)
        author/.../manufacturedSeriesDevice               the device
        component/sequenceSet/component/sequence
          TIME_ABSOLUTE (GLIST_TS increment)              sample interval
          MDC_ECG_LEAD_x (SLIST_PQ origin, scale, digits) one lead: value = origin + scale * digit
        subjectOf/annotationSet                           annotations (device's or a reader's)
        derivation/derivedSeries (REPRESENTATIVE_BEAT)    the median beat and its annotations

Annotations: the global measurements (MDC_ECG_TIME_PD_*, MDC_ECG_ANGLE_*_FRONT, heart rate)
are taken from the device's annotation set (the representative beat's first, then the
rhythm's), and the interpretation and rhythm statements from every set, marked confirmed when
a person authored the set. What else the sets hold (beats, waves, their positions) is counted
in `provenance["annotations"]`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ingest.ecg import Demographics, DeviceStatement, Ecg, Measurements, SourceFormat
from ingest.errors import IngestError
from ingest.readers.archive_common import (
    MAX_CHANNELS,
    MAX_SAMPLES_PER_LEAD,
    check_count,
    local_name,
    measurement,
    parse_xml,
    to_float,
)
from ingest.readers.demographics import parse_sex_noted
from ingest.readers.leads import assemble_12_lead

_TO_MV = {"uV": 1e-3, "mV": 1.0, "V": 1e3, "nV": 1e-6}
_TO_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_MEASUREMENTS = {
    "MDC_ECG_HEART_RATE": "hr_bpm", "MDC_ECG_TIME_PD_RR": "rr_ms", "MDC_ECG_TIME_PD_PR": "pr_ms",
    "MDC_ECG_TIME_PD_QRS": "qrs_ms", "MDC_ECG_TIME_PD_QT": "qt_ms", "MDC_ECG_TIME_PD_QTc": "qtc_ms",
    "MDC_ECG_TIME_PD_QTcB": "qtc_ms", "MDC_ECG_TIME_PD_QTcF": "qtc_fridericia_ms",
    "MDC_ECG_ANGLE_P_FRONT": "p_axis_deg", "MDC_ECG_ANGLE_QRS_FRONT": "qrs_axis_deg",
    "MDC_ECG_ANGLE_T_FRONT": "t_axis_deg",
}
_STATEMENT_CODES = ("MDC_ECG_INTERPRETATION", "MDC_ECG_RHY")
_MAX_DIGIT_CHARS = 12  # characters a sample takes at most in <digits>, separator included


def read_aecg(path: Path) -> Ecg:
    """Read an HL7 aECG file: the rhythm series, its representative beat and annotations."""
    root = parse_xml(path)
    for element in root.iter():
        if isinstance(element.tag, str):
            element.tag = local_name(element)
    if root.tag != "AnnotatedECG":
        raise IngestError(path, f"not an HL7 aECG (root element {root.tag})")
    series = [s for s in root.findall("component/series") if _code(s) == "RHYTHM"] or root.findall("component/series")
    if not series:
        raise IngestError(path, "no waveform series in the aECG")
    rhythm = series[0]
    signal, rate, names = _sequence_set(rhythm, "rhythm", path)
    leads = assemble_12_lead(signal, names, path)
    provenance = {"reader": "aecg", "acquired_leads": ",".join(names), **leads.provenance()}

    median, median_rate = None, None
    derived = rhythm.find("derivation/derivedSeries")
    if derived is not None:
        try:
            beat, median_rate, beat_names = _sequence_set(derived, "representative beat", path)
            median = assemble_12_lead(beat, beat_names, path).signal
        except IngestError as exc:
            provenance["median_beat"] = f"not used: {exc.reason}"
            median_rate = None

    sets = [(s, _authored_by_device(s)) for holder in (derived, rhythm) if holder is not None
            for s in holder.findall("subjectOf/annotationSet")]
    provenance["annotations"] = _annotation_summary(sets)
    notes: list[str] = []
    demographics = _demographics(root, notes)
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    return Ecg(
        source_format=SourceFormat.HL7_AECG,
        source_path=str(path),
        signal=leads.signal,
        sampling_rate_hz=rate,
        lead_names=leads.lead_names,
        median_beat=median,
        median_beat_rate_hz=median_rate,
        demographics=demographics,
        device_measurements=_measurements(sets),
        device_statements=_statements(sets),
        device_name=_device(rhythm),
        provenance=provenance,
    )


def _code(element: Any) -> str:
    code = element.find("code")
    return (code.get("code") or "") if code is not None else ""


# --- waveforms ---------------------------------------------------------------------------------

def _sequence_set(series: Any, label: str, path: Path) -> tuple[np.ndarray, float, list[str]]:
    """The leads of a series' first sequence set as (leads, samples) mV, the rate and lead names."""
    sequences = series.findall("component/sequenceSet/component/sequence")
    check_count(f"{label}: number of sequences", len(sequences), MAX_CHANNELS + 1, path)
    rate, names, rows = None, [], []
    for sequence in sequences:
        code, value = _code(sequence), sequence.find("value")
        if value is None:
            continue
        if code.startswith("TIME_"):
            increment = value.find("increment")
            step = to_float(increment.get("value")) if increment is not None else None
            unit = _TO_SECONDS.get(increment.get("unit", "s")) if increment is not None else None
            if step and unit and step > 0:
                rate = 1.0 / (step * unit)
            continue
        names.append(code.removeprefix("MDC_ECG_LEAD_") or f"sequence {len(names) + 1}")
        rows.append(_digits_mv(value, f"{label} lead {names[-1]}", path))
    if rate is None:
        raise IngestError(path, f"{label}: no time sequence with a sample interval")
    if not rows:
        raise IngestError(path, f"{label}: no lead sequences")
    lengths = {row.size for row in rows}
    if len(lengths) != 1:
        raise IngestError(path, f"{label}: leads have different lengths ({sorted(lengths)})")
    return np.stack(rows), rate, names


def _digits_mv(value: Any, what: str, path: Path) -> np.ndarray:
    """An SLIST_PQ sequence in mV: origin + scale * digits, units from origin and scale."""
    origin, scale, digits = value.find("origin"), value.find("scale"), value.find("digits")
    if scale is None or digits is None:
        raise IngestError(path, f"{what}: not an SLIST_PQ sequence (scale and digits needed)")
    text = digits.text or ""
    check_count(f"{what}: digits text length", len(text), MAX_SAMPLES_PER_LEAD * _MAX_DIGIT_CHARS, path)
    try:
        samples = np.array(text.split(), dtype=np.float64)
    except ValueError as exc:
        raise IngestError(path, f"{what}: digits are not numbers") from exc
    check_count(f"{what}: samples", samples.size, MAX_SAMPLES_PER_LEAD, path)
    scale_value, scale_unit = to_float(scale.get("value")), _TO_MV.get(scale.get("unit", ""))
    origin_value = to_float(origin.get("value")) if origin is not None else 0.0
    origin_unit = _TO_MV.get(origin.get("unit", scale.get("unit", ""))) if origin is not None else scale_unit
    if scale_value is None or scale_unit is None or origin_value is None or origin_unit is None:
        raise IngestError(path, f"{what}: scale or origin is not a voltage")
    return origin_value * origin_unit + samples * (scale_value * scale_unit)


# --- annotations -------------------------------------------------------------------------------

def _authored_by_device(annotation_set: Any) -> bool:
    return annotation_set.find("author/assignedEntity/assignedAuthorType/assignedDevice") is not None


def _annotations(annotation_set: Any) -> list[Any]:
    return list(annotation_set.iter("annotation"))


def _annotation_summary(sets: list[tuple[Any, bool]]) -> str:
    counts = Counter(_code(annotation) for annotation_set, _ in sets for annotation in _annotations(annotation_set))
    by_device = sum(1 for _, device in sets if device)
    parts = ", ".join(f"{code} x{count}" for code, count in counts.most_common())
    return f"{len(sets)} annotation sets ({by_device} by the device): {parts or 'none'}"


def _measurements(sets: list[tuple[Any, bool]]) -> Measurements | None:
    """Global measurements, from the device's annotation sets first (the representative beat's first)."""
    found: dict[str, float] = {}
    for annotation_set, _ in sorted(sets, key=lambda item: not item[1]):
        for annotation in _annotations(annotation_set):
            key = _MEASUREMENTS.get(_code(annotation))
            value = annotation.find("value")
            if key is None or key in found or value is None:
                continue
            number, unit = to_float(value.get("value")), value.get("unit", "")
            if number is not None and key.endswith("_ms") and unit == "s":
                number *= 1000.0
            if (number := measurement(number, key)) is not None:
                found[key] = number
        if found:
            break  # one set's measurements, never a mixture of a device's and a reader's
    return Measurements(**found) if found else None


def _statements(sets: list[tuple[Any, bool]]) -> list[DeviceStatement]:
    statements: list[DeviceStatement] = []
    for annotation_set, by_device in sets:
        for annotation in _annotations(annotation_set):
            code, value = _code(annotation), annotation.find("value")
            if value is None or not code.startswith(_STATEMENT_CODES):
                continue
            text = (value.text or "").strip() or value.get("displayName") or value.get("code") or ""
            if text:
                statement = DeviceStatement(text=text, code=value.get("code"), confirmed=not by_device)
                if statement not in statements:
                    statements.append(statement)
    return statements


def _device(series: Any) -> str | None:
    device = series.find("author/seriesAuthor/manufacturedSeriesDevice/manufacturerModelName")
    maker = series.find("author/seriesAuthor/manufacturerOrganization/name")
    parts = [(element.text or "").strip() for element in (maker, device) if element is not None]
    return " ".join(part for part in parts if part) or None


# --- demographics ------------------------------------------------------------------------------

def _ts(text: str | None) -> dt.datetime | None:
    """An HL7 v3 TS (YYYYMMDD[HHMM[SS[.F]]][+ZZZZ]) as a local time; None if not one."""
    match = re.match(r"(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?", (text or "").strip())
    if match is None:
        return None
    try:
        return dt.datetime(*(int(part) if part else 0 for part in match.groups()))
    except ValueError:
        return None


def _demographics(root: Any, notes: list[str]) -> Demographics:
    time = root.find("effectiveTime/center")
    if time is None:
        time = root.find("effectiveTime/low")
    subject = next(root.iter("trialSubject"), None)
    person = subject.find("subjectDemographicPerson") if subject is not None else None
    subject_id = subject.find("id") if subject is not None else None
    gender = person.find("administrativeGenderCode") if person is not None else None
    birth = person.find("birthTime") if person is not None else None
    birth_time = _ts(birth.get("value")) if birth is not None else None
    if birth is not None and birth.get("value") and birth_time is None:
        notes.append("birth time is not an HL7 timestamp; dropped")
    name = person.find("name") if person is not None else None
    return Demographics(
        patient_id=subject_id.get("extension") if subject_id is not None else None,
        patient_name=(name.text or "").strip() or None if name is not None else None,
        sex=parse_sex_noted(gender.get("code") if gender is not None else None, notes),
        birth_date=birth_time.date() if birth_time else None,
        age_years=_reported_age(root, notes),
        acquired_at=_ts(time.get("value")) if time is not None else None,
    )


def _reported_age(root: Any, notes: list[str]) -> int | None:
    """The LOINC 21612-7 "Reported Age" control variable, in years."""
    for observation in root.iter("relatedObservation"):
        code = observation.find("code")
        if code is None or code.get("code") != "21612-7":
            continue
        value = observation.find("value")
        number = to_float(value.get("value")) if value is not None else None
        factor = {"a": 1.0, "mo": 1 / 12, "wk": 1 / 52.18, "d": 1 / 365.25}.get(value.get("unit", "a")) \
            if value is not None else None
        if number is None or factor is None:
            notes.append("reported age is not a number in known units; dropped")
            return None
        return int(number * factor)
    return None
