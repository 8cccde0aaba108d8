"""Philips XML (`<restingecgdata>`, Sierra ECG 1.03 and PhilipsECG 1.04.x) to a canonical `Ecg`.

    restingecgdata (a namespace, often UTF-16)
      dataacquisition@date,time     acquisition time; machine = the cart; signalcharacteristics
      patient/generalpatientdata    id, name, sex, age/years or dateofbirth (YYYY-MM-DD)
      interpretations/interpretation
        globalmeasurements (1.04) | interpretationmeasurements (1.03)   the device's measurements
        statement: statementcode, leftstatement, rightstatement         the device's statements
      waveforms/parsedwaveforms     base64, XLI-compressed (or raw) int16, lead after lead;
                                    `resolution` uV per bit; III, aVR, aVL, aVF stored as residuals
      waveforms/repbeats            representative (median) beats, raw base64 int16

XLI decoding and the limb-lead restoration are in `ingest.readers.philips_xli`. The tests check
our decoding against the independent `sierraecg` package on real cart files.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np

from ingest.ecg import STANDARD_LEADS, Demographics, DeviceStatement, Ecg, Measurements, SourceFormat
from ingest.errors import IngestError
from ingest.readers.archive_common import (
    MAX_CHANNELS,
    MAX_SAMPLES_PER_LEAD,
    check_count,
    decode_base64,
    local_name,
    measurement,
    parse_xml,
    to_float,
)
from ingest.readers.demographics import parse_sex_noted
from ingest.readers.leads import assemble_12_lead
from ingest.readers.philips_xli import XliError, restore_limb_leads, xli_decode

# Philips measurement tags (1.04 name | 1.03 name) -> canonical field.
_MEASUREMENTS = {
    "heartrate": "hr_bpm", "rrint": "rr_ms", "print": "pr_ms", "meanprint": "pr_ms", "qrsdur": "qrs_ms",
    "meanqrsdur": "qrs_ms", "qtint": "qt_ms", "meanqtint": "qt_ms", "qtcb": "qtc_ms", "meanqtc": "qtc_ms",
    "qtcf": "qtc_fridericia_ms", "pfrontaxis": "p_axis_deg", "qrsfrontaxis": "qrs_axis_deg",
    "tfrontaxis": "t_axis_deg",
}
_STANDARD_ACQUISITION = {"STD-12", "10-WIRE"}


def read_philips(path: Path) -> Ecg:
    """Read a Philips Sierra/PageWriter XML ECG."""
    root = _strip_namespaces(parse_xml(path))
    if root.tag != "restingecgdata":
        raise IngestError(path, f"not a Philips ECG XML (root element {root.tag})")
    version = _text(root, "documentinfo/documentversion") or "unknown"
    signal_info = root.find("dataacquisition/signalcharacteristics")
    waveforms = root.find("waveforms/parsedwaveforms")
    if waveforms is None:
        raise IngestError(path, "no waveforms (parsedwaveforms) in the Philips XML")

    rate = to_float(waveforms.get("samplespersecond")) or to_float(_text(signal_info, "samplingrate"))
    resolution = (to_float(waveforms.get("resolution")) or to_float(_text(signal_info, "resolution"))
                  or to_float(_text(signal_info, "signalresolution")))  # uV per bit (1.03 says signalresolution)
    duration_ms = to_float(waveforms.get("durationperchannel"))
    if not rate or rate <= 0 or not resolution or resolution <= 0 or not duration_ms:
        raise IngestError(path, "the waveforms lack a sample rate, a resolution or a duration")
    samples = int(round(duration_ms * rate / 1000))
    check_count("samples per lead", samples, MAX_SAMPLES_PER_LEAD, path)
    labels = _lead_labels(waveforms, signal_info, path)

    raw = _decode_leads(waveforms, len(labels), samples, path)
    signal = np.stack(raw).astype(np.float64) * (resolution / 1000.0)  # uV per bit -> mV
    leads = assemble_12_lead(signal, labels, path)
    provenance = {"reader": "philips", "document_version": version,
                  "compression": _compression(waveforms), **leads.provenance()}
    if filters := _filters(signal_info):
        provenance["filters"] = filters

    median, median_rate = _repbeats(root.find("waveforms/repbeats"), path, provenance)
    notes: list[str] = []
    demographics = _demographics(root, notes)
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    interpretation = root.find("interpretations/interpretation")
    machine = root.find("dataacquisition/machine")
    machine_name = (machine.text or "").strip() if machine is not None else ""
    return Ecg(
        source_format=SourceFormat.PHILIPS_XML,
        source_path=str(path),
        signal=leads.signal,
        sampling_rate_hz=float(rate),
        lead_names=leads.lead_names,
        median_beat=median,
        median_beat_rate_hz=median_rate,
        demographics=demographics,
        device_measurements=_measurements(interpretation, root),
        device_statements=_statements(interpretation, root),
        device_name=f"Philips {machine_name}" if machine_name else "Philips",
        provenance=provenance,
    )


def _strip_namespaces(root: Any) -> Any:
    """Philips files put every element in a default namespace; the tags are unique without it."""
    for element in root.iter():
        if isinstance(element.tag, str):
            element.tag = local_name(element)
    return root


def _text(element: Any, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    text = found.text.strip() if found is not None and found.text else ""
    return text or None


def _compression(waveforms: Any) -> str:
    return waveforms.get("compression") or waveforms.get("compressmethod") or "Uncompressed"


# --- waveforms ---------------------------------------------------------------------------------

def _lead_labels(waveforms: Any, signal_info: Any, path: Path) -> list[str]:
    """The leads' names: stated (1.04), else the standard order for a standard 12-lead (1.03)."""
    if labels := (waveforms.get("leadlabels") or "").split():
        count = int(to_float(waveforms.get("numberofleads")) or len(labels))
        check_count("number of leads", count, MAX_CHANNELS, path)
        return labels[:count]
    count = int(to_float(_text(signal_info, "numberchannelsallocated")) or 0)
    check_count("number of leads", count, MAX_CHANNELS, path)
    kind = (_text(signal_info, "acquisitiontype") or "").upper()
    if kind not in _STANDARD_ACQUISITION or count < 12:
        raise IngestError(path, f"leads are not named and the acquisition type '{kind}' with {count} channels "
                                f"is not a standard 12-lead")
    return list(STANDARD_LEADS) + [f"channel {index + 1}" for index in range(12, count)]


def _decode_leads(waveforms: Any, n_leads: int, samples: int, path: Path) -> list[np.ndarray]:
    """Each lead's int16 samples, XLI-decompressed (and limb leads restored) or raw."""
    if (waveforms.get("dataencoding") or "Base64") != "Base64":
        raise IngestError(path, f"waveform encoding {waveforms.get('dataencoding')} is not supported (Base64 is)")
    compression = _compression(waveforms).upper()
    budget = 4 * samples * n_leads + 4096  # XLI is smaller than raw; raw is 2 bytes a sample
    data = decode_base64(waveforms.text, "waveforms", path, max_bytes=budget)
    if compression in ("UNCOMPRESSED", "NONE"):
        if len(data) < 2 * samples * n_leads:
            raise IngestError(path, f"uncompressed waveforms hold {len(data)} bytes, {2 * samples * n_leads} expected")
        flat = np.frombuffer(data[: 2 * samples * n_leads], dtype="<i2").astype(np.int64)
        return list(flat.reshape(n_leads, samples))
    if compression != "XLI":
        raise IngestError(path, f"waveform compression {compression} is not supported (XLI or none)")
    try:
        decoded = xli_decode(data, n_leads, max_bytes_per_lead=2 * samples + 64)
    except XliError as exc:
        raise IngestError(path, f"XLI waveforms: {exc}") from exc
    short = [index + 1 for index, lead in enumerate(decoded) if lead.size < samples]
    if short:
        raise IngestError(path, f"XLI waveforms: lead(s) {short} hold fewer than {samples} samples")
    decoded = [lead[:samples] for lead in decoded]
    return restore_limb_leads(decoded) if n_leads >= 6 else decoded


def _repbeats(repbeats: Any, path: Path, provenance: dict[str, str]) -> tuple[np.ndarray | None, float | None]:
    """The representative beats (raw base64 int16) in standard lead order, when present and usable."""
    if repbeats is None:
        return None, None
    rate = to_float(repbeats.get("samplespersec"))
    resolution = to_float(repbeats.get("resolution"))
    if not rate or not resolution:
        provenance["median_beat"] = "not used: representative beats lack a rate or resolution"
        return None, None
    names, rows = [], []
    try:
        for beat in repbeats.findall("repbeat"):
            holder = beat.find("waveform")
            text = (holder if holder is not None else beat).text
            data = decode_base64(text, f"representative beat {beat.get('leadname')}", path,
                                 max_bytes=2 * MAX_SAMPLES_PER_LEAD)
            names.append(beat.get("leadname") or f"beat {len(names) + 1}")
            rows.append(np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64))
        length = min((row.size for row in rows), default=0)
        if length == 0:
            raise IngestError(path, "representative beats are empty")
        beats = assemble_12_lead(np.stack([row[:length] for row in rows]) * (resolution / 1000.0), names, path)
    except IngestError as exc:
        provenance["median_beat"] = f"not used: {exc.reason}"
        return None, None
    return beats.signal, float(rate)


def _filters(signal_info: Any) -> str | None:
    high, low = _text(signal_info, "hipass"), _text(signal_info, "lowpass")
    if high is None and low is None:
        band = _text(signal_info, "signalbandwidth")  # 1.03: "0.05-150"
        return f"{band} Hz" if band and re.fullmatch(r"[\d.]+-[\d.]+", band) else None
    notch = _text(signal_info, "acsetting")
    return f"{high or '?'}-{low or '?'} Hz" + (f", notch {notch} Hz" if notch and to_float(notch) else "")


# --- demographics ------------------------------------------------------------------------------

def _iso_date(text: str | None) -> dt.date | None:
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", (text or "").strip())
    if match is None:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _demographics(root: Any, notes: list[str]) -> Demographics:
    patient = root.find("patient/generalpatientdata")
    family, given = _text(patient, "name/lastname"), _text(patient, "name/firstname")
    birth_text = _text(patient, "age/dateofbirth")
    birth = _iso_date(birth_text)
    if birth_text and birth is None:
        notes.append("birth date is not a date (YYYY-MM-DD); dropped")
    age_text = _text(patient, "age/years")
    age = to_float(age_text)
    if age_text and age is None:
        notes.append("age is not a number; dropped")
    acquisition = root.find("dataacquisition")
    acquired = None
    if acquisition is not None and (date := _iso_date(acquisition.get("date"))) is not None:
        time = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", (acquisition.get("time") or "").strip())
        acquired = dt.datetime(date.year, date.month, date.day,
                               *((int(time[1]), int(time[2]), int(time[3] or 0)) if time else (0, 0, 0)))
    return Demographics(
        patient_id=_text(patient, "patientid"),
        patient_name="^".join(part for part in (family, given) if part) or None,
        sex=parse_sex_noted(_text(patient, "sex"), notes),
        birth_date=birth,
        age_years=int(age) if age is not None else None,
        acquired_at=acquired,
    )


# --- the device's measurements and statements --------------------------------------------------

def _measurements(interpretation: Any, root: Any) -> Measurements | None:
    """The interpretation's global measurements; the cross-lead ones when it has none."""
    candidates = []
    if interpretation is not None:
        candidates += [interpretation.find("globalmeasurements"), interpretation.find("interpretationmeasurements")]
    candidates += [root.find("internalmeasurements/crossleadmeasurements"), root.find("globalmeasurements")]
    for block in candidates:
        if block is None:
            continue
        found: dict[str, float] = {}
        for child in block:
            key = _MEASUREMENTS.get(child.tag)
            if key is not None and key not in found:
                value = measurement(to_float(child.text), key)
                if value is not None:
                    found[key] = value
        if found:
            return Measurements(**found)
    return None


def _statements(interpretation: Any, root: Any) -> list[DeviceStatement]:
    """The interpretation's statements; confirmed only when the document says it was confirmed."""
    if interpretation is None:
        return []
    status = " ".join(filter(None, [root.get("status"), _text(interpretation, "mdsignatureline")])).lower()
    confirmed = "confirmed" in status and "unconfirmed" not in status and "await" not in status
    statements = []
    for statement in interpretation.findall("statement"):
        text = _text(statement, "leftstatement")
        if text:
            statements.append(DeviceStatement(text=text, code=_text(statement, "statementcode"),
                                              detail=_text(statement, "rightstatement"), confirmed=confirmed))
    return statements
