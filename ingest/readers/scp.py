"""SCP-ECG files (EN 1064 / ISO 11073-91064) to a canonical `Ecg`.

    file header: CRC (2) + file length (4), then sections, each with a 16-byte header
    (CRC 2, id 2, length 4, version 1, protocol 1, reserved 6); all integers little-endian.
    section 0   pointers: id (2), length (4), 1-based byte index (4) of every section
    section 1   patient data, tagged: tag (1), length (2), value; 255 ends
    section 2   Huffman tables; 19999 = the standard's default table (absent: raw 16-bit data)
    section 3   leads: count, flags (bit 0: reference-beat subtraction), start, end, lead code
    section 6   rhythm: AVM (nV per unit), sample interval (us), difference coding (0/1/2),
                bimodal flag, bytes per lead, then each lead's data
    section 7   global measurements: average RR, and P/QRS/T onsets, offsets and axes (29999
                or 0 = undefined)
    section 8   interpretive statements as text (with the confirmed flag)
    section 11  universal statement codes (with the confirmed flag)

Read here: uncompressed and default-table Huffman rhythm data, first and second differences.
Refused with a reason (never guessed): custom Huffman tables, bimodal compression and
reference-beat subtraction, none of which our real sample files use.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.ecg import Demographics, DeviceStatement, Ecg, Measurements, SourceFormat
from ingest.errors import IngestError
from ingest.readers.archive_common import MAX_CHANNELS, MAX_SAMPLES_PER_LEAD, check_count, measurement, read_bounded
from ingest.readers.demographics import parse_sex_noted
from ingest.readers.leads import NEGATIVE_AVR, assemble_12_lead

_SECTION_HEADER = 16
_DEFAULT_HUFFMAN = 19999
_UNDEFINED = 29999
# SCP lead codes (section 3) for the twelve leads.
_LEADS = {1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
          61: "III", 62: "aVR", 63: "aVL", 64: "aVF", 65: NEGATIVE_AVR}
_SEX = {0: "U", 1: "M", 2: "F", 9: "U"}
_AGE_UNITS = {0: 1.0, 1: 1.0, 2: 1 / 12, 3: 1 / 52.18, 4: 1 / 365.25, 5: 1 / 8766}
# The standard's default Huffman table: (code bits, code, value); the two escape codes are
# followed by the value itself as an 8- or 16-bit signed integer.
_DEFAULT_CODES = [(1, 0b0, 0)] + [
    (bits, code, value)
    for magnitude in range(1, 9)
    for bits, code, value in (
        (magnitude + 2, ((1 << (magnitude + 1)) - 2) << 1, magnitude),
        (magnitude + 2, (((1 << (magnitude + 1)) - 2) << 1) | 1, -magnitude),
    )
]
_ESCAPE_8, _ESCAPE_16 = (10, 0b1111111110), (10, 0b1111111111)


@dataclass
class _Lead:
    name: str
    start: int
    end: int


def read_scp(path: Path) -> Ecg:
    """Read an SCP-ECG file."""
    data = read_bounded(path)
    sections = _sections(data, path)
    if 3 not in sections or 6 not in sections:
        raise IngestError(path, "no lead definition (section 3) or rhythm data (section 6)")
    leads, reference_beat = _lead_definitions(sections[3], path)
    if reference_beat:
        raise IngestError(path, "reference-beat subtraction is not supported yet (section 3 flag set)")
    huffman = _huffman_mode(sections.get(2), path)
    signal, rate = _rhythm(sections[6], leads, huffman, path)
    twelve = assemble_12_lead(signal, [lead.name for lead in leads], path)

    notes: list[str] = []
    demographics, device = _patient(sections.get(1), notes, path)
    provenance = {"reader": "scp", "huffman": huffman, "acquired_leads": ",".join(lead.name for lead in leads),
                  "sections": ",".join(str(number) for number in sorted(sections)), **twelve.provenance()}
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    return Ecg(
        source_format=SourceFormat.SCP_ECG,
        source_path=str(path),
        signal=twelve.signal,
        sampling_rate_hz=rate,
        lead_names=twelve.lead_names,
        demographics=demographics,
        device_measurements=_measurements(sections.get(7)),
        device_statements=_text_statements(sections.get(8)) + _coded_statements(sections.get(11)),
        device_name=device,
        provenance=provenance,
    )


# --- sections ----------------------------------------------------------------------------------

def _sections(data: bytes, path: Path) -> dict[int, bytes]:
    """Each present section's data (after its 16-byte header), located through section 0."""
    if len(data) < 6 + _SECTION_HEADER or data[16:22] != b"SCPECG":
        raise IngestError(path, "not an SCP-ECG file (no section 0 marked SCPECG)")
    stated_length = struct.unpack_from("<I", data, 2)[0]
    if stated_length > len(data):
        raise IngestError(path, f"truncated SCP-ECG file ({len(data)} of {stated_length} bytes)")
    pointer_length = struct.unpack_from("<I", data, 10)[0]
    if pointer_length < _SECTION_HEADER or 6 + pointer_length > len(data):
        raise IngestError(path, "section 0 (pointers) is damaged")
    sections: dict[int, bytes] = {}
    for offset in range(6 + _SECTION_HEADER, 6 + pointer_length - 9, 10):
        number, length, index = struct.unpack_from("<HII", data, offset)
        if length == 0 or number == 0:
            continue
        start = index - 1
        if index == 0 or start + length > len(data) or length < _SECTION_HEADER:
            raise IngestError(path, f"section {number} lies outside the file or is too short")
        if struct.unpack_from("<H", data, start + 2)[0] != number:
            raise IngestError(path, f"section {number}: its header names another section")
        sections[number] = data[start + _SECTION_HEADER: start + length]
    return sections


def _lead_definitions(section: bytes, path: Path) -> tuple[list[_Lead], bool]:
    if len(section) < 2:
        raise IngestError(path, "section 3 (leads) is empty")
    count, flags = section[0], section[1]
    check_count("number of leads", count, MAX_CHANNELS, path)
    if len(section) < 2 + 9 * count:
        raise IngestError(path, "section 3 (leads) is cut short")
    leads = []
    for index in range(count):
        start, end, code = struct.unpack_from("<IIB", section, 2 + 9 * index)
        leads.append(_Lead(_LEADS.get(code, f"SCP lead code {code}"), start, end))
    return leads, bool(flags & 0x01)


def _huffman_mode(section: bytes | None, path: Path) -> str:
    if section is None:
        return "none"
    if len(section) >= 2 and struct.unpack_from("<H", section, 0)[0] == _DEFAULT_HUFFMAN:
        return "default"
    raise IngestError(path, "custom Huffman tables (section 2) are not supported yet; the default table is")


# --- rhythm data -------------------------------------------------------------------------------

def _rhythm(section: bytes, leads: list[_Lead], huffman: str, path: Path) -> tuple[np.ndarray, float]:
    """Section 6 as a (leads, samples) mV signal and its sampling rate."""
    if len(section) < 6 + 2 * len(leads):
        raise IngestError(path, "section 6 (rhythm) is cut short")
    avm_nv, interval_us, differences, bimodal = struct.unpack_from("<HHBB", section, 0)
    if bimodal:
        raise IngestError(path, "bimodal compression (section 6) is not supported yet")
    if avm_nv == 0 or interval_us == 0:
        raise IngestError(path, "section 6 has no amplitude multiplier or sample interval")
    if differences not in (0, 1, 2):
        raise IngestError(path, f"section 6: difference coding {differences} is not 0, 1 or 2")
    lengths = struct.unpack_from(f"<{len(leads)}H", section, 6)
    offset = 6 + 2 * len(leads)
    # Sample numbers are 1-based; some writers start at 0 (and end at the count): accept both.
    samples_per_lead = {lead.end - max(lead.start, 1) + 1 for lead in leads}
    if len(samples_per_lead) != 1:
        raise IngestError(path, f"leads cover different sample ranges ({sorted(samples_per_lead)} samples)")
    count = samples_per_lead.pop()
    check_count("samples per lead", count, MAX_SAMPLES_PER_LEAD, path)
    rows = []
    for lead, length in zip(leads, lengths, strict=True):
        chunk = section[offset: offset + length]
        if len(chunk) < length:
            raise IngestError(path, f"section 6: lead {lead.name} data cut short")
        offset += length
        values = _huffman_default(chunk, count) if huffman == "default" else _raw16(chunk, count)
        if values.size < count:
            raise IngestError(path, f"section 6: lead {lead.name} holds {values.size} of {count} samples")
        rows.append(_undo_differences(values[:count], differences))
    return np.stack(rows).astype(np.float64) * (avm_nv * 1e-6), 1e6 / interval_us


def _raw16(chunk: bytes, count: int) -> np.ndarray:
    usable = min(len(chunk) // 2, count) * 2
    return np.frombuffer(chunk[:usable], dtype="<i2").astype(np.int64)


def _huffman_default(chunk: bytes, count: int) -> np.ndarray:
    """Decode `count` values coded with the standard's default Huffman table."""
    bits = np.unpackbits(np.frombuffer(chunk, dtype=np.uint8)).tolist()
    lookup = {(code_bits, code): value for code_bits, code, value in _DEFAULT_CODES}
    values: list[int] = []
    position, total = 0, len(bits)
    while len(values) < count and position < total:
        code, code_bits = 0, 0
        while position < total and code_bits < 10:
            code = (code << 1) | bits[position]
            position += 1
            code_bits += 1
            if (code_bits, code) in lookup:
                values.append(lookup[(code_bits, code)])
                break
            if (code_bits, code) in (_ESCAPE_8, _ESCAPE_16):
                width = 8 if (code_bits, code) == _ESCAPE_8 else 16
                if position + width > total:
                    return np.asarray(values, dtype=np.int64)
                raw = int("".join(map(str, bits[position: position + width])), 2)
                position += width
                values.append(raw - (1 << width) if raw >= 1 << (width - 1) else raw)
                break
        else:
            break  # ran out of bits inside a code: trailing padding
    return np.asarray(values, dtype=np.int64)


def _undo_differences(values: np.ndarray, differences: int) -> np.ndarray:
    """First differences: x[n] = d[n] + x[n-1]; second: x[n] = d[n] + 2 x[n-1] - x[n-2]."""
    if differences == 0 or values.size < 2:
        return values
    if differences == 1:
        return np.cumsum(values)
    out = values.copy()
    for index in range(2, out.size):  # a recurrence; 5000 steps per lead
        out[index] = values[index] + 2 * out[index - 1] - out[index - 2]
    return out


# --- patient data (section 1) -------------------------------------------------------------------

def _tags(section: bytes) -> dict[int, bytes]:
    tags: dict[int, bytes] = {}
    offset = 0
    while offset + 3 <= len(section):
        tag, length = section[offset], struct.unpack_from("<H", section, offset + 1)[0]
        if tag == 255:
            break
        tags.setdefault(tag, section[offset + 3: offset + 3 + length])
        offset += 3 + length
    return tags


def _string(value: bytes | None) -> str | None:
    if not value:
        return None
    text = value.split(b"\x00", 1)[0].decode("latin-1").strip()
    return text or None


def _patient(section: bytes | None, notes: list[str], path: Path) -> tuple[Demographics, str | None]:
    if section is None:
        return Demographics(), None
    tags = _tags(section)
    family, given = _string(tags.get(0)), _string(tags.get(1))
    age = None
    if (raw := tags.get(4)) is not None and len(raw) >= 3:
        amount, unit = struct.unpack_from("<HB", raw)
        if unit in _AGE_UNITS and amount:
            age = int(amount * _AGE_UNITS[unit])
        elif amount:
            notes.append("age unit code not recognised; dropped")
    sex_code = tags.get(8)[0] if tags.get(8) else None
    sex = parse_sex_noted(_SEX.get(sex_code, str(sex_code)) if sex_code is not None else None, notes)
    birth = _date(tags.get(5), "birth date", notes)
    acquired_date = _date(tags.get(25), "acquisition date", notes)
    acquired = None
    if acquired_date is not None:
        time = tags.get(26)
        hour, minute, second = (time[0], time[1], time[2]) if time and len(time) >= 3 else (0, 0, 0)
        try:
            acquired = dt.datetime(acquired_date.year, acquired_date.month, acquired_date.day, hour, minute, second)
        except ValueError:
            acquired = dt.datetime(acquired_date.year, acquired_date.month, acquired_date.day)
    demographics = Demographics(
        patient_id=_string(tags.get(2)),
        patient_name="^".join(part for part in (family, given) if part) or None,
        sex=sex, birth_date=birth, age_years=age, accession=_string(tags.get(31)), acquired_at=acquired,
    )
    return demographics, _device(tags.get(14))


def _date(raw: bytes | None, what: str, notes: list[str]) -> dt.date | None:
    if raw is None or len(raw) < 4:
        return None
    year, month, day = struct.unpack_from("<HBB", raw)
    if year == 0 and month == 0 and day == 0:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        notes.append(f"{what} is not a date; dropped")
        return None


def _device(raw: bytes | None) -> str | None:
    """The acquiring device (tag 14): after 35 bytes of numbers, strings: analysing program
    revision, serial number, software, SCP implementation software, manufacturer."""
    if raw is None or len(raw) <= 36:
        return None
    strings = [part.decode("latin-1").strip() for part in raw[36:].split(b"\x00")]
    strings = [part for part in strings if part and part.isprintable()]
    return strings[-1] if strings else None


# --- measurements and statements ----------------------------------------------------------------

def _measurements(section: bytes | None) -> Measurements | None:
    """Section 7: the first reference beat's P/QRS/T onsets, offsets and axes, and the RR interval."""
    if section is None or len(section) < 6:
        return None
    beat_types, _spikes, rr, _pp = struct.unpack_from("<BBHH", section, 0)
    found: dict[str, float] = {}

    def defined(value: int) -> bool:
        return value not in (_UNDEFINED, 0)

    if defined(rr):
        found["rr_ms"] = rr
        found["hr_bpm"] = round(60000.0 / rr, 1)
    if beat_types >= 1 and len(section) >= 6 + 16:
        p_on, p_off, qrs_on, qrs_off, t_off, p_axis, qrs_axis, t_axis = struct.unpack_from("<HHHHHhhh", section, 6)
        if defined(p_on) and defined(qrs_on) and qrs_on > p_on:
            found["pr_ms"] = qrs_on - p_on
        if defined(qrs_on) and defined(qrs_off) and qrs_off > qrs_on:
            found["qrs_ms"] = qrs_off - qrs_on
        if defined(qrs_on) and defined(t_off) and t_off > qrs_on:
            found["qt_ms"] = t_off - qrs_on
        for key, value in (("p_axis_deg", p_axis), ("qrs_axis_deg", qrs_axis), ("t_axis_deg", t_axis)):
            if value != _UNDEFINED:
                found[key] = value
    found = {key: value for key, value in found.items() if measurement(float(value), key) is not None}
    return Measurements(**found) if found else None


def _confirmed(flag: int) -> bool:
    return flag == 1  # 0: original, not confirmed; 1: confirmed; 2: overread, not confirmed


def _text_statements(section: bytes | None) -> list[DeviceStatement]:
    """Section 8: date (4), time (3), confirmed flag (1), count (1), then seq (1), length (2), text."""
    if section is None or len(section) < 9:
        return []
    confirmed, count = _confirmed(section[7]), section[8]
    statements, offset = [], 9
    for _ in range(count):
        if offset + 3 > len(section):
            break
        length = struct.unpack_from("<H", section, offset + 1)[0]
        text = _string(section[offset + 3: offset + 3 + length])
        offset += 3 + length
        if text:
            statements.append(DeviceStatement(text=text, confirmed=confirmed))
    return statements


def _coded_statements(section: bytes | None) -> list[DeviceStatement]:
    """Section 11: confirmed flag (1), date (4), time (3), count (1), then seq (1), length (2),
    type (1: coded, 2: text, 3: both) and the null-separated acronym and/or text."""
    if section is None or len(section) < 9:
        return []
    confirmed, count = _confirmed(section[0]), section[8]
    statements, offset = [], 9
    for _ in range(count):
        if offset + 4 > len(section):
            break
        length = struct.unpack_from("<H", section, offset + 1)[0]
        kind = section[offset + 3]
        parts = [part.decode("latin-1").strip() for part in section[offset + 4: offset + 3 + length].split(b"\x00")]
        parts = [part for part in parts if part]
        offset += 3 + length
        if not parts:
            continue
        code = parts[0] if kind in (1, 3) else None
        text = " ".join(parts[1:]) if kind == 3 and len(parts) > 1 else parts[0] if kind != 3 else parts[0]
        statements.append(DeviceStatement(text=text, code=code, confirmed=confirmed))
    return statements
