"""DICOM waveform ECGs (12-lead ECG and General ECG storage) to a canonical `Ecg`.

    file --pydicom--> dataset --(SOP class check)--> multiplex groups
         --(RHYTHM group; else the longest non-median group)--> channels
         --(lead codes: MDC or SCPECG, else the code meaning; never the position)-->
         --(sensitivity units to mV; lead rule)--> 12 x N mV signal
    plus the MEDIAN BEAT group, demographics, the device's measurements (SCPECG-coded
    numeric annotations), its statements (text annotations) and its name.

Each channel's samples are scaled as pydicom's `waveform_array` scales them (sensitivity,
correction factor, baseline, in the channel's sensitivity units: `_decoded_channels`), and
those units converted to millivolts.
Optional attributes (filters, correction factor, device fields) may be missing; a
missing sensitivity unit on the rhythm is an error, since amplitudes would be guesses.
"""

from __future__ import annotations

import datetime as dt
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ingest.ecg import Demographics, Ecg, Measurements, SourceFormat
from ingest.errors import IngestError
from ingest.readers.demographics import parse_sex_noted
from ingest.readers.leads import NEGATIVE_AVR, TwelveLeads, assemble_12_lead, normalize_lead_name
from ingest.readers.limits import (
    DEFAULT_LIMITS,
    InputLimits,
    LimitExceeded,
    check_file_size,
    check_sampling_rate,
    check_signal_size,
    inflate_bounded,
    inflated_size,
)
from ingest.readers.dicom_scan import DatasetStart, count_elements, dataset_start

SUPPORTED_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
}

# Lead codes. MDC (ISO/IEEE 11073-10101, scheme "MDC", partition 2): "2:n".
_MDC_LEADS = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF", 65: NEGATIVE_AVR,
    112: "aVR", 113: "aVL", 114: "aVF",  # derived (computed by the device) augmented leads
}
_LEAD_BY_CODE: dict[str, str] = {}
for _n, _lead in _MDC_LEADS.items():
    _LEAD_BY_CODE[f"2:{_n}"] = _lead
    _LEAD_BY_CODE[str((2 << 16) + _n)] = _lead  # the same code as one context-free number
# SCPECG (scheme "SCPECG"): "5.6.3-9-n" with the same lead numbers for the 12 leads.
for _n in (1, 2, 3, 4, 5, 6, 7, 8, 61, 62, 63, 64):
    _LEAD_BY_CODE[f"5.6.3-9-{_n}"] = _MDC_LEADS[_n]

# Device measurements: SCPECG codes, and the code meanings other vendors use.
_MEASUREMENT_BY_CODE = {
    "5.10.2.1-3": "rr_ms", "5.13.5-7": "pr_ms", "5.13.5-9": "qrs_ms", "5.13.5-11": "qt_ms",
    "5.10.2.5-5": "qtc_ms", "5.10.3-11": "p_axis_deg", "5.10.3-13": "qrs_axis_deg",
    "5.10.3-15": "t_axis_deg",
}
_MEASUREMENT_BY_MEANING = {
    "rr interval": "rr_ms", "pr interval": "pr_ms", "qrs duration": "qrs_ms", "qt interval": "qt_ms",
    "qtc interval": "qtc_ms", "p axis": "p_axis_deg", "qrs axis": "qrs_axis_deg", "t axis": "t_axis_deg",
    "heart rate": "hr_bpm", "ventricular rate": "hr_bpm",
}
_UNIT_TO_MV = {"uv": 1e-3, "mv": 1.0, "v": 1e3, "nv": 1e-6}


# Waveform groups in one file: a rhythm, a median beat, perhaps a few more; never hundreds.
_MAX_WAVEFORM_GROUPS = 16
_DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian


def read_dicom(path: Path, limits: InputLimits = DEFAULT_LIMITS) -> Ecg:
    """Read a 12-lead or General ECG DICOM waveform file."""
    check_file_size(path, limits, what="DICOM file")
    _check_structure(path, limits)
    dataset = _load(path)
    sop_class = str(dataset.get("SOPClassUID", "") or dataset.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class not in SUPPORTED_SOP_CLASSES:
        raise IngestError(path, f"unsupported SOP class {sop_class or '(none)'} ({_uid_name(sop_class)}); "
                                f"readable: 12-lead ECG and General ECG waveform storage")
    groups = list(dataset.get("WaveformSequence", []) or [])
    if not groups:
        raise IngestError(path, "no waveform data (WaveformSequence is empty or missing)")
    if len(groups) > _MAX_WAVEFORM_GROUPS:
        raise IngestError(path, f"{len(groups)} waveform groups; an ECG has a few "
                                f"(at most {_MAX_WAVEFORM_GROUPS} read)")

    rhythm_index = _rhythm_group(groups, path)
    rhythm = groups[rhythm_index]
    signal, names = _group_signal(dataset, rhythm_index, path, limits)
    leads = assemble_12_lead(signal, names, path)
    provenance = {
        "reader": "dicom",
        "sop_class": SUPPORTED_SOP_CLASSES[sop_class],
        "multiplex_group": _label(rhythm) or f"#{rhythm_index}",
        **leads.provenance(),
    }
    if filters := _filter_settings(rhythm):
        provenance["filters"] = filters

    median, median_rate = _median_beat(dataset, groups, rhythm_index, path, provenance, limits)
    notes: list[str] = []
    demographics = _demographics(dataset, path, notes)
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    return Ecg(
        source_format=SourceFormat.DICOM,
        source_path=str(path),
        signal=leads.signal,
        sampling_rate_hz=float(rhythm.SamplingFrequency),
        lead_names=leads.lead_names,
        median_beat=median,
        median_beat_rate_hz=median_rate,
        demographics=demographics,
        device_measurements=_device_measurements(dataset),
        device_statements=_device_statements(dataset),
        device_name=_device_name(dataset),
        provenance=provenance,
    )


def _load(path: Path) -> Any:
    import pydicom  # here, so that reading other formats does not import pydicom

    try:
        return pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises OSError, ValueError, EOFError... for broken files
        raise IngestError(path, f"truncated or corrupt DICOM file ({type(exc).__name__}: {exc})") from exc


def _check_structure(path: Path, limits: InputLimits) -> None:
    """Count the file's data elements (and inflate a deflated dataset, bounded) before pydicom
    parses it: pydicom keeps every element as an object, so their number bounds its memory."""
    data = path.read_bytes()
    start = dataset_start(data)
    if start.transfer_syntax == _DEFLATED:  # pydicom would inflate it whole, unbounded
        # Counted first, keeping nothing, so that a bomb costs no memory; inflated (bounded) only if it fits.
        try:
            size = inflated_size(data[start.offset:], cap=limits.max_decompressed_bytes, wbits=-zlib.MAX_WBITS)
        except zlib.error as exc:
            raise IngestError(path, f"deflated DICOM dataset is not valid deflate data ({exc})") from exc
        if size is None:
            raise LimitExceeded(path, f"deflated DICOM dataset inflates to more than "
                                      f"{limits.max_decompressed_bytes / (1024 * 1024):.1f} MiB",
                                limit=f"max_decompressed_bytes={limits.max_decompressed_bytes}")
        data = inflate_bounded(data[start.offset:], path=path, limits=limits, what="deflated DICOM dataset",
                               wbits=-zlib.MAX_WBITS)
        start = DatasetStart(0, explicit_vr=True, little_endian=True, transfer_syntax=_DEFLATED)
    count = count_elements(data, start.offset, explicit_vr=start.explicit_vr, little_endian=start.little_endian,
                           cap=limits.max_dicom_elements)
    if count is None:
        raise LimitExceeded(path, f"DICOM file has more than {limits.max_dicom_elements:,} data elements",
                            limit=f"max_dicom_elements={limits.max_dicom_elements}")


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return name if name and name != uid else "unknown"


def _label(group: Any) -> str:
    return str(group.get("MultiplexGroupLabel", "") or "").strip()


def _is_median(group: Any) -> bool:
    return "MEDIAN" in _label(group).upper()


def _rhythm_group(groups: list[Any], path: Path) -> int:
    """The RHYTHM group; else the longest (in seconds) group that is not a median beat."""
    for index, group in enumerate(groups):
        if _label(group).upper() == "RHYTHM":
            return index
    candidates = [(index, group) for index, group in enumerate(groups) if not _is_median(group)]
    if not candidates:
        raise IngestError(path, "no rhythm waveform: the file holds only median beats")

    def seconds(item: tuple[int, Any]) -> float:
        group = item[1]
        rate = float(group.get("SamplingFrequency", 0) or 0)
        return int(group.get("NumberOfWaveformSamples", 0) or 0) / rate if rate > 0 else 0.0

    return max(candidates, key=seconds)[0]


def _channel_lead(channel: Any, position: int) -> str:
    """The lead name a channel is coded as; a descriptive label if it is none of the 12."""
    sources = channel.get("ChannelSourceSequence") or []
    if not sources:
        return f"channel {position + 1} (no source code)"
    source = sources[0]
    code = str(source.get("CodeValue", "") or "").strip()
    meaning = str(source.get("CodeMeaning", "") or "").strip()
    if code in _LEAD_BY_CODE:
        return _LEAD_BY_CODE[code]
    if meaning and normalize_lead_name(meaning) is not None:
        return meaning
    return meaning or code or f"channel {position + 1}"


def _channel_mv_factor(channel: Any) -> float | None:
    units = channel.get("ChannelSensitivityUnitsSequence") or []
    if not units or "ChannelSensitivity" not in channel:
        return None
    return _UNIT_TO_MV.get(str(units[0].get("CodeValue", "")).strip().lower())


def _group_signal(dataset: Any, index: int, path: Path,
                  limits: InputLimits) -> tuple[np.ndarray, list[str]]:
    """The (channels, samples) mV signal of one multiplex group and its channels' lead names."""
    group = dataset.WaveformSequence[index]
    label = _label(group) or f"#{index}"
    channels = list(group.get("ChannelDefinitionSequence", []) or [])
    n_channels = int(group.get("NumberOfWaveformChannels", 0) or 0)
    if not channels or len(channels) != n_channels:
        raise IngestError(path, f"waveform group {label}: {len(channels)} channel definitions "
                                f"for {n_channels} channels")
    check_sampling_rate(path, float(group.get("SamplingFrequency", 0) or 0), limits,
                        what=f"waveform group {label}")
    check_signal_size(path, channels=n_channels, samples_per_lead=int(group.get("NumberOfWaveformSamples", 0) or 0),
                      limits=limits, what=f"waveform group {label}")
    _check_data_length(group, label, path)
    names = [_channel_lead(channel, position) for position, channel in enumerate(channels)]
    to_mv = np.ones(n_channels)
    for position, channel in enumerate(channels):
        factor = _channel_mv_factor(channel)
        if factor is None:
            if normalize_lead_name(names[position]) is not None:
                raise IngestError(path, f"waveform group {label}: lead {names[position]} has no usable "
                                        f"sensitivity units")
            continue
        to_mv[position] = factor
    try:
        values = _decoded_channels(group, channels)
    except Exception as exc:
        raise IngestError(path, f"waveform group {label} could not be decoded ({exc})") from exc
    return np.ascontiguousarray((values * to_mv).T), names


def _decoded_channels(group: Any, channels: list[Any]) -> np.ndarray:
    """The group's samples (samples, channels) in each channel's sensitivity units.

    What pydicom's `waveform_array` gives (the same table of sample types, then per channel raw x
    sensitivity x correction factor + baseline, in that order, so the same numbers bit for bit), in
    whole-array operations: pydicom scales one strided channel column at a time, which cost a third
    of reading a 12-lead file."""
    from pydicom.waveforms.numpy_handler import WAVEFORM_DTYPES

    samples, count = int(group.NumberOfWaveformSamples), int(group.NumberOfWaveformChannels)
    dtype = WAVEFORM_DTYPES[(int(group.WaveformBitsAllocated), str(group.WaveformSampleInterpretation))]
    size = samples * count * np.dtype(dtype).itemsize
    raw = np.frombuffer(group.WaveformData[:size], dtype=dtype).reshape(samples, count)
    sensitivity, correction, baseline = (
        np.array([float(channel.get(keyword, default)) for channel in channels])
        for keyword, default in (("ChannelSensitivity", 1.0), ("ChannelSensitivityCorrectionFactor", 1.0),
                                 ("ChannelBaseline", 0.0)))
    return raw.astype(np.float64) * sensitivity * correction + baseline


def _filter_settings(group: Any) -> str | None:
    """The acquisition filters as text (e.g. "0.05-300 Hz"), from the first channel that states them.

    A reviewer needs them: a 40 Hz low-pass or a 0.5 Hz high-pass changes ST segments. Each
    attribute is optional (type 3), so any may be missing.
    """
    for channel in group.get("ChannelDefinitionSequence", []) or []:
        low, high = channel.get("FilterLowFrequency"), channel.get("FilterHighFrequency")
        notch = channel.get("NotchFilterFrequency")
        if low is None and high is None and notch is None:
            continue
        text = f"{_hz(low)}-{_hz(high)} Hz"
        if notch is not None and float(notch) > 0:
            text += f", notch {_hz(notch)} Hz"
        return text
    return None


def _hz(value: Any) -> str:
    return "?" if value is None else f"{float(value):g}"


def _check_data_length(group: Any, label: str, path: Path) -> None:
    """Reject a group whose WaveformData is shorter than its declared size (a cut file)."""
    data = group.get("WaveformData")
    if data is None:
        raise IngestError(path, f"waveform group {label} has no WaveformData")
    bits = int(group.get("WaveformBitsAllocated", 16) or 16)
    expected = int(group.NumberOfWaveformSamples) * int(group.NumberOfWaveformChannels) * bits // 8
    if len(data) < expected:
        raise IngestError(path, f"waveform group {label} is truncated ({len(data)} of {expected} bytes)")


def _median_beat(dataset: Any, groups: list[Any], rhythm_index: int, path: Path,
                 provenance: dict[str, str], limits: InputLimits) -> tuple[np.ndarray | None, float | None]:
    """The device's median (representative) beat in standard lead order, when present and usable."""
    for index, group in enumerate(groups):
        if index == rhythm_index or not _is_median(group):
            continue
        try:
            signal, names = _group_signal(dataset, index, path, limits)
            median: TwelveLeads = assemble_12_lead(signal, names, path)
        except IngestError as exc:
            provenance["median_beat"] = f"not used: {exc.reason}"
            return None, None
        if median.derived:
            provenance["median_beat_derived_leads"] = ",".join(median.derived)
        return median.signal, float(group.SamplingFrequency)
    return None, None


# --- demographics ---------------------------------------------------------------------------

def _text(dataset: Any, keyword: str) -> str | None:
    value = dataset.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def parse_da(value: str | None) -> dt.date | None:
    """A DICOM DA (YYYYMMDD, or the old YYYY.MM.DD)."""
    if not value:
        return None
    digits = re.sub(r"[^0-9]", "", value)
    try:
        return dt.datetime.strptime(digits[:8], "%Y%m%d").date()
    except ValueError:
        return None


def parse_dt(value: str | None) -> dt.datetime | None:
    """A DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX, any precision); the offset is dropped (local time)."""
    if not value:
        return None
    match = re.match(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", value.strip())
    if match is None:
        return None
    defaults = (0, 1, 1, 0, 0, 0)  # year, month, day, hour, minute, second when not given
    parts = [int(part) if part else default for part, default in zip(match.groups()[:6], defaults, strict=True)]
    micro = int((match[7] or "0").ljust(6, "0"))
    try:
        return dt.datetime(*parts, micro)
    except ValueError:
        return None


def _date_time(date: str | None, time: str | None) -> dt.datetime | None:
    """A DA + TM pair (TM may be HHMMSS.F or the old HH:MM:SS)."""
    if not date:
        return None
    return parse_dt(re.sub(r"[^0-9]", "", date)[:8] + re.sub(r"[:]", "", time or ""))


def _age_years(value: str | None) -> int | None:
    """A DICOM AS (`042Y`, `006M`, `010W`, `003D`) in whole years."""
    match = re.fullmatch(r"(\d{3})([DWMY])", value or "")
    if match is None:
        return None
    amount, unit = int(match[1]), match[2]
    return amount if unit == "Y" else int(amount / {"M": 12, "W": 52.18, "D": 365.25}[unit])


def _identity(dataset: Any, keyword: str, path: Path) -> str | None:
    """A field that names the patient or the order: exactly one value, or none.

    DICOM splits a value at backslashes into several (`123\\456` is two patient ids); which
    one is the patient cannot be guessed, and a report must never go to the wrong one.
    """
    from pydicom.multival import MultiValue

    value = dataset.get(keyword)
    if isinstance(value, MultiValue):
        if len(value) > 1:
            raise IngestError(path, f"{keyword} has {len(value)} values (one expected): the patient or order "
                                    "it names is ambiguous")
        value = value[0] if len(value) else None
    text = str(value).strip() if value is not None else ""
    return text or None


def _demographics(dataset: Any, path: Path, notes: list[str]) -> Demographics:
    acquired = (parse_dt(_text(dataset, "AcquisitionDateTime"))
                or _date_time(_text(dataset, "ContentDate"), _text(dataset, "ContentTime"))
                or _date_time(_text(dataset, "StudyDate"), _text(dataset, "StudyTime")))
    return Demographics(
        patient_id=_identity(dataset, "PatientID", path),
        patient_name=_identity(dataset, "PatientName", path),
        sex=parse_sex_noted(_text(dataset, "PatientSex"), notes),
        birth_date=parse_da(_text(dataset, "PatientBirthDate")),
        age_years=_age_years(_text(dataset, "PatientAge")),
        accession=_identity(dataset, "AccessionNumber", path),
        study_uid=_identity(dataset, "StudyInstanceUID", path),
        acquired_at=acquired,
    )


def _device_name(dataset: Any) -> str | None:
    parts = [_text(dataset, "Manufacturer"), _text(dataset, "ManufacturerModelName")]
    name = " ".join(part for part in parts if part)
    return name or None


# --- the device's own measurements and statements ---------------------------------------------

def _measurement_value(annotation: Any, key: str) -> float | None:
    """The numeric value of a measurement annotation in ms/deg/bpm; None if absent or a non-value."""
    try:
        value = float(annotation.NumericValue if not isinstance(annotation.NumericValue, list | tuple)
                      else annotation.NumericValue[0])
    except (TypeError, ValueError, IndexError):
        return None
    units = annotation.get("MeasurementUnitsCodeSequence") or []
    unit = str(units[0].get("CodeValue", "")).strip() if units else ""
    if key.endswith("_ms") and unit == "s":
        value *= 1000.0
    if key.endswith("_deg"):
        return value if -180.0 <= value <= 360.0 else None
    # A duration or rate of 0 (or an implausible one) means "not measured", never zero.
    return value if 0.0 < value < 5000.0 else None


def _is_global(annotation: Any) -> bool:
    """True unless the annotation points at particular channels (a per-lead measurement).

    ReferencedWaveformChannels holds (group, channel) pairs; channel 0 means the whole group.
    """
    references = list(annotation.get("ReferencedWaveformChannels") or [])
    return all(channel == 0 for channel in references[1::2])


def _device_measurements(dataset: Any) -> Measurements | None:
    """RR/PR/QRS/QT/QTc and P/QRS/T axes the device wrote as coded numeric annotations."""
    found: dict[str, float] = {}
    for annotation in dataset.get("WaveformAnnotationSequence", []) or []:
        names = annotation.get("ConceptNameCodeSequence") or []
        if not names or "NumericValue" not in annotation or not _is_global(annotation):
            continue
        code = str(names[0].get("CodeValue", "")).strip()
        meaning = str(names[0].get("CodeMeaning", "")).strip().lower()
        key = _MEASUREMENT_BY_CODE.get(code) or _MEASUREMENT_BY_MEANING.get(meaning)
        if key is None or key in found:
            continue
        value = _measurement_value(annotation, key)
        if value is not None:
            found[key] = value
    if not found:
        return None
    if "hr_bpm" not in found and "rr_ms" in found:
        found["hr_bpm"] = round(60000.0 / found["rr_ms"], 1)
    return Measurements(**found)


def _device_statements(dataset: Any) -> list[str]:
    """The device's interpretation statements: text annotations, and coded concepts' meanings."""
    statements: list[str] = []
    for annotation in dataset.get("WaveformAnnotationSequence", []) or []:
        text = str(annotation.get("UnformattedTextValue", "") or "").strip()
        if not text:
            concepts = annotation.get("ConceptCodeSequence") or []
            text = str(concepts[0].get("CodeMeaning", "") or "").strip() if concepts else ""
        if text:
            statements.append(text)
    return statements
