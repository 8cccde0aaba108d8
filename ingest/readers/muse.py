"""GE MUSE XML exports (`<RestingECG>`) to a canonical `Ecg`.

    RestingECG
      PatientDemographics      id, name, sex, birth date (MM-DD-YYYY), age (+ units)
      TestDemographics         acquisition date (MM-DD-YYYY) and time, device, MUSE status
      RestingECGMeasurements   12SL global measurements, as confirmed (Original... = the cart's)
      Diagnosis                statements as confirmed in MUSE; OriginalDiagnosis = the cart's
      Waveform (Rhythm|Median) LeadData per lead: base64 little-endian int16, units per bit,
                               byte count and CRC32 of the decoded bytes

A GE cart records 8 leads (I, II, V1-V6); III, aVR, aVL and aVF are derived by the lead rule
(`ingest.readers.leads`) and named in `provenance["derived_leads"]`. Each lead's bytes are
checked against the byte count and the CRC32 the file states, so a damaged export is refused
rather than read as a wrong signal. A statement is the run of `StmtText` pieces up to the one
flagged `ENDSLINE`, as MUSE prints them ("Lateral infarct" + ", age undetermined").
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ingest.ecg import Demographics, DeviceStatement, Ecg, Measurements, SourceFormat
from ingest.errors import IngestError
from ingest.readers.archive_common import (
    MAX_CHANNELS,
    MAX_SAMPLES_PER_LEAD,
    check_count,
    decode_base64,
    measurement,
    parse_xml,
    to_float,
)
from ingest.readers.demographics import parse_sex_noted
from ingest.readers.leads import assemble_12_lead

# MUSE measurement element -> canonical field.
_MEASUREMENTS = {
    "VentricularRate": "hr_bpm", "PRInterval": "pr_ms", "QRSDuration": "qrs_ms", "QTInterval": "qt_ms",
    "QTCorrected": "qtc_ms", "QTcFrederica": "qtc_fridericia_ms", "PAxis": "p_axis_deg",
    "RAxis": "qrs_axis_deg", "TAxis": "t_axis_deg",
}
_AMPLITUDE_TO_MV = {"MICROVOLTS": 1e-3, "MILLIVOLTS": 1.0, "NANOVOLTS": 1e-6}
_AGE_UNIT_YEARS = {"YEARS": 1.0, "MONTHS": 1 / 12, "WEEKS": 1 / 52.18, "DAYS": 1 / 365.25, "HOURS": 1 / 8766}


def read_muse(path: Path) -> Ecg:
    """Read a GE MUSE RestingECG XML export."""
    root = parse_xml(path)
    if root.tag != "RestingECG":
        raise IngestError(path, f"not a GE MUSE export (root element {root.tag})")
    waveforms = {(_text(wave, "WaveformType") or "").upper(): wave for wave in root.findall("Waveform")}
    if "RHYTHM" not in waveforms:
        raise IngestError(path, "no rhythm waveform (Waveform with WaveformType Rhythm) in the MUSE export")

    rhythm, rate, names = _waveform(waveforms["RHYTHM"], "rhythm", path)
    leads = assemble_12_lead(rhythm, names, path)
    provenance = {"reader": "muse", "muse_version": _text(root, "MuseInfo/MuseVersion") or "unknown",
                  "acquired_leads": ",".join(names), **leads.provenance()}
    if filters := _filters(waveforms["RHYTHM"]):
        provenance["filters"] = filters

    median, median_rate = None, None
    if "MEDIAN" in waveforms:
        try:
            beat, median_rate, beat_names = _waveform(waveforms["MEDIAN"], "median", path)
            median = assemble_12_lead(beat, beat_names, path).signal
        except IngestError as exc:
            provenance["median_beat"] = f"not used: {exc.reason}"
            median_rate = None

    notes: list[str] = []
    demographics = _demographics(root, notes)
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    status = (_text(root, "TestDemographics/Status") or "").upper()
    provenance["muse_status"] = status or "unknown"
    device = _text(root, "TestDemographics/AcquisitionDevice")
    return Ecg(
        source_format=SourceFormat.MUSE_XML,
        source_path=str(path),
        signal=leads.signal,
        sampling_rate_hz=rate,
        lead_names=leads.lead_names,
        median_beat=median,
        median_beat_rate_hz=median_rate,
        demographics=demographics,
        device_measurements=_measurements(root, "RestingECGMeasurements", root.find("QRSTimesTypes")),
        device_statements=_statements(root, confirmed_status=status == "CONFIRMED"),
        device_name=f"GE {device}" if device else "GE (MUSE)",
        provenance=provenance,
    )


def _text(element: Any, path: str) -> str | None:
    found = element.find(path)
    text = found.text.strip() if found is not None and found.text else ""
    return text or None


# --- waveforms ---------------------------------------------------------------------------------

def _waveform(wave: Any, label: str, path: Path) -> tuple[np.ndarray, float, list[str]]:
    """One Waveform element as a (leads, samples) mV signal, its rate in Hz and its lead names."""
    base, exponent = to_float(_text(wave, "SampleBase")), to_float(_text(wave, "SampleExponent")) or 0.0
    if not base or base <= 0:
        raise IngestError(path, f"{label} waveform has no sample rate (SampleBase)")
    rate = base * 10.0 ** exponent
    lead_elements = wave.findall("LeadData")
    check_count(f"{label} waveform: number of leads", len(lead_elements), MAX_CHANNELS, path)
    if not lead_elements:
        raise IngestError(path, f"{label} waveform has no LeadData")
    names, rows = [], []
    for lead in lead_elements:
        name = _text(lead, "LeadID") or f"lead {len(names) + 1} (no LeadID)"
        names.append(name)
        rows.append(_lead_samples(lead, f"{label} lead {name}", path))
    lengths = {row.size for row in rows}
    if len(lengths) != 1:
        raise IngestError(path, f"{label} waveform: leads have different lengths ({sorted(lengths)})")
    return np.stack(rows), rate, names


def _lead_samples(lead: Any, what: str, path: Path) -> np.ndarray:
    """One LeadData's samples in mV, after checking byte count, sample size and CRC32."""
    sample_size = int(to_float(_text(lead, "LeadSampleSize")) or 2)
    if sample_size != 2:
        raise IngestError(path, f"{what}: sample size {sample_size} bytes is not supported (GE writes 2)")
    count = int(to_float(_text(lead, "LeadSampleCountTotal")) or 0)
    check_count(f"{what}: sample count", count, MAX_SAMPLES_PER_LEAD, path)
    data = decode_base64(_text(lead, "WaveFormData"), what, path, max_bytes=2 * MAX_SAMPLES_PER_LEAD)
    stated_bytes = to_float(_text(lead, "LeadByteCountTotal"))
    if stated_bytes is not None and len(data) != int(stated_bytes):
        raise IngestError(path, f"{what}: {len(data)} bytes of data, the file states {int(stated_bytes)}")
    if count and len(data) != 2 * count:
        raise IngestError(path, f"{what}: {len(data) // 2} samples, the file states {count}")
    stated_crc = to_float(_text(lead, "LeadDataCRC32"))
    if stated_crc is not None and zlib.crc32(data) != int(stated_crc):
        raise IngestError(path, f"{what}: data fails its CRC32 check (damaged export)")
    units = (_text(lead, "LeadAmplitudeUnits") or "MICROVOLTS").upper()
    per_bit = to_float(_text(lead, "LeadAmplitudeUnitsPerBit"))
    if units not in _AMPLITUDE_TO_MV or not per_bit:
        raise IngestError(path, f"{what}: amplitude units '{units}' per bit {per_bit} are not a voltage scale")
    return np.frombuffer(data, dtype="<i2").astype(np.float64) * (per_bit * _AMPLITUDE_TO_MV[units])


def _filters(wave: Any) -> str | None:
    """Acquisition filters as text. MUSE states the high-pass in hundredths of a hertz (16 = 0.16 Hz)."""
    high_pass, low_pass = to_float(_text(wave, "HighPassFilter")), to_float(_text(wave, "LowPassFilter"))
    notch = to_float(_text(wave, "ACFilter"))
    if high_pass is None and low_pass is None:
        return None
    text = f"{'?' if high_pass is None else f'{high_pass / 100:g}'}-{'?' if low_pass is None else f'{low_pass:g}'} Hz"
    return text + (f", notch {notch:g} Hz" if notch else "")


# --- demographics ------------------------------------------------------------------------------

def _muse_date(text: str | None) -> dt.date | None:
    """MUSE writes dates as MM-DD-YYYY (US order), and placeholders such as XX-XX-XXXX."""
    match = re.fullmatch(r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})", (text or "").strip())
    if match is None:
        return None
    try:
        return dt.date(int(match[3]), int(match[1]), int(match[2]))
    except ValueError:
        return None


def _muse_datetime(date_text: str | None, time_text: str | None) -> dt.datetime | None:
    date = _muse_date(date_text)
    if date is None:
        return None
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", (time_text or "").strip())
    if match is None:
        return dt.datetime(date.year, date.month, date.day)
    try:
        return dt.datetime(date.year, date.month, date.day, int(match[1]), int(match[2]), int(match[3] or 0))
    except ValueError:
        return dt.datetime(date.year, date.month, date.day)


def _demographics(root: Any, notes: list[str]) -> Demographics:
    patient = root.find("PatientDemographics")
    test = root.find("TestDemographics")
    get = (lambda element, name: _text(element, name) if element is not None else None)
    family, given = get(patient, "PatientLastName"), get(patient, "PatientFirstName")
    birth_text = get(patient, "DateofBirth")
    birth = _muse_date(birth_text)
    if birth_text and birth is None:
        notes.append("birth date is not a date (MM-DD-YYYY); dropped")
    acquired = _muse_datetime(get(test, "AcquisitionDate"), get(test, "AcquisitionTime"))
    if get(test, "AcquisitionDate") and acquired is None:
        notes.append("acquisition date is not a date (MM-DD-YYYY); dropped")
    return Demographics(
        patient_id=get(patient, "PatientID"),
        patient_name="^".join(part for part in (family, given) if part) or None,
        sex=parse_sex_noted(get(patient, "Gender"), notes),
        birth_date=birth,
        age_years=_age_years(get(patient, "PatientAge"), get(patient, "AgeUnits"), notes),
        acquired_at=acquired,
    )


def _age_years(value: str | None, units: str | None, notes: list[str]) -> int | None:
    if value is None:
        return None
    number = to_float(value)
    factor = _AGE_UNIT_YEARS.get((units or "YEARS").strip().upper())
    if number is None or factor is None:
        notes.append("age is not a number in known units; dropped")
        return None
    return int(number * factor)


# --- the device's measurements and statements --------------------------------------------------

def _measurements(root: Any, section: str, qrs_times: Any) -> Measurements | None:
    element = root.find(section)
    if element is None:
        return None
    found = {key: value for tag, key in _MEASUREMENTS.items()
             if (value := measurement(to_float(_text(element, tag)), key)) is not None}
    if qrs_times is not None and (rr := measurement(to_float(_text(qrs_times, "GlobalRR")), "rr_ms")) is not None:
        found["rr_ms"] = rr
    return Measurements(**found) if found else None


def _statement_lines(diagnosis: Any) -> list[str]:
    """The statements of a Diagnosis element, joined into lines at each ENDSLINE flag."""
    lines: list[str] = []
    pieces: list[str] = []
    for statement in diagnosis.findall("DiagnosisStatement"):
        text = _text(statement, "StmtText")
        if text:
            pieces.append(text)
        flags = {(flag.text or "").strip().upper() for flag in statement.findall("StmtFlag")}
        if "ENDSLINE" in flags and pieces:
            lines.append(_join(pieces))
            pieces = []
    if pieces:
        lines.append(_join(pieces))
    return lines


def _join(pieces: list[str]) -> str:
    text = pieces[0]
    for piece in pieces[1:]:
        text += piece if piece[:1] in ",.;:)" else " " + piece
    return text


def _statements(root: Any, confirmed_status: bool) -> list[DeviceStatement]:
    """The cart's statements (OriginalDiagnosis), then MUSE's current ones (Diagnosis).

    The current ones are marked confirmed when the MUSE status is CONFIRMED; when they are
    unconfirmed and identical to the cart's, they are not repeated.
    """
    original = root.find("OriginalDiagnosis")
    current = root.find("Diagnosis")
    original_lines = _statement_lines(original) if original is not None else []
    current_lines = _statement_lines(current) if current is not None else []
    statements = [DeviceStatement(text=line, confirmed=False) for line in original_lines]
    if current_lines and (confirmed_status or current_lines != original_lines):
        statements += [DeviceStatement(text=line, confirmed=confirmed_status) for line in current_lines]
    return statements
