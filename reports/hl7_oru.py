"""The HL7 v2.5.1 ORU^R01 message of one ECG report: written segment by segment, escaped by hand.

    MSH  unique control id (MSH-10), ORU^R01^ORU_R01, processing id P/T, version 2.5.1
    PID  patient id, the full name (PID-5: family, given, middle, suffix, prefix), birth date, sex
    PV1  patient class (O outpatient, N not applicable)
    ORC  RE, placer and filler order numbers (stable per study, see reports.store.order_numbers)
    OBR  34534-8 12 lead EKG panel (LOINC), observation time (OBR-7: always filled, the
         acquisition time, else the time the file was received, and an NTE says which),
         result time (OBR-22), diagnostic section EC, result status (OBR-25: P draft, R
         unverified, F signed, C correction, X withdrawn), principal result interpreter when
         signed (OBR-32)
    NTE  the observation time's origin, where the measurements come from; a draft (P/R):
         "machine draft awaiting cardiologist sign-off", the interpreter and its version (a
         file path is cut to its last part: no server path leaves), "DEMONSTRATION MODEL - NOT
         FOR CLINICAL USE" for the demo model, the claim-check flags ("Check: ..."); a signed
         (F) or corrected (C) report: "Confirmed by NAME on DATE" and, for C, the reason
    OBX  NM per measured interval/axis (LOINC + UCUM), one value per quantity, skipping what
         was not measured, with its reference range (OBX-7), abnormal flag (OBX-8, table
         0078) and source (OBX-17: the acquiring device or computed here); TX 8601-7 EKG
         impression (statements, then the narrative); in a draft only, TX local code for the
         interpreter's reasoning steps. OBX-11 carries the same status as OBR-25.

A signed or corrected message carries only what the cardiologist confirmed: the machine's
reasoning, claim checks, the interpreter and demonstration notes and the draft notice stay
with the draft (P) and in the audit trail, whatever the caller passes (`MACHINE_ONLY` lists
the markers; `reports.hl7_validate` refuses an F/C message that contains one).

QTc codes by method: the value computed here is Bazett's (76635-2), Fridericia's is 76634-5;
a device's QTc, whose formula the file does not state, goes under the method-less 8636-3.

The segments are written directly as ER7 text (a few microseconds per field, where hl7apy's
per-field parser took ~20x as long); every piece of free text is escaped here (`escape`); a
line break becomes a new repetition of OBX-5 (TX cannot carry one), and a line longer than a
repetition holds (199 characters) is split between sentences (between words only inside a
sentence that alone is longer). What hl7apy's strict mode would refuse from our inputs (a
component over its length) is refused as it is written. hl7apy 1.3.5, which ships the v2.5.1
structures, stays the judge: the tests parse and validate every message the suite builds with
it in strict mode (tests/hl7_every_message.py), and `reports.hl7_validate.validate_oru` (its
table checks on the hot path, hl7apy's parse too for a message from elsewhere) checks a
finished message; the store refuses to keep one that fails.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from typing import Literal

from pydantic import BaseModel, Field

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.report_format import STEP_HEADINGS
from reports import measurements as measured

HL7_VERSION = "2.5.1"
SEGMENT_SEPARATOR = "\r"

PANEL_CODE = ("34534-8", "12 lead EKG panel", "LN")
IMPRESSION_CODE = ("8601-7", "EKG impression", "LN")
# No LOINC code exists for a model's reasoning: a local code (coding system L).
REASONING_CODE = ("ECGWL-REASONING", "Interpreter reasoning", "L")

# Measurements field -> (LOINC code, LOINC display name, UCUM unit).
MEASUREMENT_CODES: dict[str, tuple[str, str, str]] = {
    "hr_bpm": ("8867-4", "Heart rate", "/min"),
    "pr_ms": ("8625-6", "P-R Interval", "ms"),
    "qrs_ms": ("8633-0", "QRS duration", "ms"),
    "qt_ms": ("8634-8", "Q-T interval", "ms"),
    "qtc_ms": ("8636-3", "Q-T interval corrected", "ms"),
    "qtc_fridericia_ms": ("76634-5", "QTc interval Fridericia", "ms"),
    "p_axis_deg": ("8626-4", "P wave axis", "deg"),
    "qrs_axis_deg": ("8632-2", "QRS axis", "deg"),
    "t_axis_deg": ("8638-9", "T wave axis", "deg"),
}
# The QTc this system computes is Bazett's: coded by its method. A device's QTc keeps 8636-3.
QTC_BAZETT_CODE = ("76635-2", "QTc interval Bazett", "ms")
ALL_MEASUREMENT_CODES = frozenset({code for code, _name, _unit in MEASUREMENT_CODES.values()} | {QTC_BAZETT_CODE[0]})

# OBX-17 observation method: who measured the value.
MeasurementSource = Literal["device", "computed", "reviewer"]
SOURCE_METHODS: dict[str, tuple[str, str, str]] = {
    "device": ("DEVICE", "Measured by the acquiring device", "L"),
    "computed": ("COMPUTED", "Computed by ecg-worklist from the signal", "L"),
    "reviewer": ("REVIEWER", "Entered by the reviewing cardiologist", "L"),
}

# hl7apy (strict) holds OBX-5 and the name components to ST's 199 characters, counted
# after escaping; longer text is wrapped into more repetitions (display lines) of OBX-5.
MAX_TEXT = 199

DRAFT_NOTE = "Machine draft awaiting cardiologist sign-off"
DEMONSTRATION_NOTE = "DEMONSTRATION MODEL - NOT FOR CLINICAL USE"
INTERPRETER_NOTE = "Interpreter: "
CHECK_NOTE = "Check: "
# The interpreters' own closing sentence: it belongs to the draft, never to a signed report.
PRELIMINARY_SENTENCE = re.compile(r"\s*Preliminary computer reading[^.]*\.?", re.IGNORECASE)
# What only a machine draft may say: none of these in a signed (F) or corrected (C) message.
MACHINE_ONLY: tuple[str, ...] = (DRAFT_NOTE, DEMONSTRATION_NOTE, INTERPRETER_NOTE, CHECK_NOTE,
                                 "Preliminary computer reading", "requires cardiologist confirmation",
                                 REASONING_CODE[0])

ResultStatus = Literal["P", "R", "F", "C", "X"]


class HL7Endpoints(BaseModel):
    """Who sends and who receives (MSH-3..6), and whether this is production (MSH-11)."""

    sending_application: str = "ECG-WORKLIST"
    sending_facility: str = "ECGWL"
    receiving_application: str = "HIS"
    receiving_facility: str = "HIS"
    processing_id: Literal["P", "T", "D"] = "P"  # production, training, debugging


class OruStudy(BaseModel):
    """The study part of the message: who, which order, when acquired."""

    study_id: int
    demographics: Demographics = Field(default_factory=Demographics)
    placer_order_number: str
    filler_order_number: str
    patient_class: Literal["O", "N", "I", "E"] = "N"  # PV1-2: the worklist rarely knows the visit
    received_at: dt.datetime | None = None  # when the file reached the worklist (OBR-7 without an acquisition time)

    @property
    def acquired_at(self) -> dt.datetime | None:
        return self.demographics.acquired_at

    def observation_time(self, fallback: dt.datetime) -> tuple[dt.datetime, str]:
        """(OBR-7, the NTE that says which time it is): acquisition, else reception, else `fallback`."""
        if self.demographics.acquired_at is not None:
            return self.demographics.acquired_at, "Observation time (OBR-7): the acquisition time recorded in the ECG file"
        if self.received_at is not None:
            return self.received_at, ("Observation time (OBR-7): the time the file was received; "
                                      "the ECG file does not record its acquisition time")
        return fallback, ("Observation time (OBR-7): the time of this report; neither the acquisition "
                          "time nor the time the file was received is known")


class OruReport(BaseModel):
    """The report part: what is concluded, by whom, and notes for the reader."""

    version: int = 1
    labels: list[str] = Field(default_factory=list)  # diagnostic statements, one per line
    impression: str = ""  # narrative text
    flags: list[str] = Field(default_factory=list)  # claim checks that disagree with the measurements
    result_time: dt.datetime | None = None  # OBR-22; now when None
    signed_by: str | None = None  # the signer's user id (OBR-32.1.1)
    signed_by_name: str | None = None  # "FAMILY^GIVEN" (OBR-32.1.2/3)
    signed_at: dt.datetime | None = None
    comments: list[str] = Field(default_factory=list)  # more NTE lines (e.g. an amendment's reason)
    # Where each measurement came from ("device" or "computed"); a field missing here is
    # sent as computed (what the pipeline reported when it recorded no sources).
    measurement_sources: dict[str, MeasurementSource] = Field(default_factory=dict)


class MessageHeader(BaseModel):
    """The few fields the store needs from a finished message."""

    control_id: str
    result_status: str
    placer_order_number: str
    filler_order_number: str


# ---------------------------------------------------------------- text and values

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_UNESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}
_ESCAPE_SEQUENCE = re.compile(r"\\([FSTRE])\\")


def escape(text: str) -> str:
    """HL7 escape of one piece of text (the escape character itself first)."""
    text = " ".join(text.splitlines())  # one field, one line: callers split lines beforehand
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return text


def unescape(text: str) -> str:
    """The inverse of `escape` for the five delimiter escapes."""
    return _ESCAPE_SEQUENCE.sub(lambda m: _UNESCAPES[m.group(1)], text)


def new_control_id() -> str:
    """A fresh MSH-10: 20 random hex characters (the field's length limit in v2.5.1)."""
    return secrets.token_hex(10).upper()


def format_ts(value: dt.datetime) -> str:
    """HL7 TS: YYYYMMDDHHMMSS, with +ZZZZ when the time zone is known."""
    text = value.strftime("%Y%m%d%H%M%S")
    if value.tzinfo is not None and value.utcoffset() is not None:
        text += value.strftime("%z")
    return text


def format_number(value: float) -> str:
    """NM text of a measurement: whole units (ms, /min, deg) are the precision ECGs report."""
    return str(int(round(value)))


def _coded(code: tuple[str, str, str]) -> str:
    return "^".join(escape(part) for part in code)


# A sentence ends at . ! ? or ; followed by a space (not inside "2.5" or "e.g.x").
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


def _fits(text: str, limit: int) -> bool:
    return len(escape(text)) <= limit


def _wrap(line: str, limit: int = MAX_TEXT) -> list[str]:
    """One line of text as escaped pieces of at most `limit` characters, split between sentences.

    Whole sentences are packed into each piece; only a sentence longer than a piece is split,
    between words (and a word longer than a piece is cut: no other way to send it). So no
    repetition of OBX-5 ends in the middle of a sentence that would fit.
    """
    pieces: list[str] = []
    current = ""
    for sentence in (part for part in _SENTENCE_END.split(line.strip()) if part):
        candidate = f"{current} {sentence}" if current else sentence
        if _fits(candidate, limit):
            current = candidate
            continue
        if current:
            pieces.append(current)
            current = ""
        if _fits(sentence, limit):
            current = sentence
            continue
        for word in sentence.split():  # the sentence alone is too long: pack its words
            candidate = f"{current} {word}" if current else word
            if _fits(candidate, limit):
                current = candidate
                continue
            if current:
                pieces.append(current)
            current = word
            while not _fits(current, limit):
                cut = limit
                while not _fits(current[:cut], limit):
                    cut -= 1
                pieces.append(current[:cut])
                current = current[cut:]
        if current:  # the long sentence's last piece stands alone
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return [escape(piece) for piece in pieces]


def _lines(text: str) -> list[str]:
    """Text as escaped OBX-5 repetitions: one per line, long lines wrapped, blank lines dropped."""
    return [piece for line in text.splitlines() for piece in _wrap(line)]


# Demographics.patient_name holds the name's components in DICOM PN order (family, given,
# middle, prefix, suffix: what the DICOM reader gives verbatim; the other readers give family
# and given only); HL7's XPN and CNN put the suffix before the prefix.
_PN_TO_XPN = (0, 1, 2, 4, 3)  # XPN component i is PN component _PN_TO_XPN[i]


def _person_name(name: str | None, separator: str = "^") -> str:
    """ "FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX" (or fewer parts, or a plain name) as escaped XPN
    components family, given, middle, suffix, prefix joined by `separator` (^ in PID-5, & inside
    OBR-32), trailing empty components left out.

    A component longer than HL7 allows is cut: no real name is that long, so it is garbage
    in the source, and the full text stays in the study's demographics.
    """
    if not name:
        return ""
    parts = name.split("^")[:5] + [""] * 5
    xpn = [parts[index].strip() for index in _PN_TO_XPN]
    while xpn and not xpn[-1]:
        xpn.pop()
    return separator.join(_wrap(part)[0] if part else "" for part in xpn)


def display_name(name: str | None) -> str:
    """A person's name as people write it in a note: "Rossi, Anna M." from "Rossi^Anna^M."."""
    if not name:
        return ""
    parts = [part.strip() for part in name.split("^")[:5]] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(part for part in (prefix, given, middle) if part)
    text = ", ".join(part for part in (family, first) if part)
    return f"{text}, {suffix}" if suffix else text


def _public_version(version: str) -> str:
    """An interpreter's version for a note: a file path (a checkpoint folder) is cut to its last
    part, so no server path leaves in a message."""
    text = version.strip().rstrip("/\\")
    if "/" in text or "\\" in text:
        text = re.split(r"[/\\]", text)[-1] or "local"
    return text


# ---------------------------------------------------------------- segments
#
# Each segment is written as ER7 text directly: a list of fields (already escaped), joined by
# "|", trailing empty fields left out. hl7apy builds the same text field by field through its
# parser, about 20 times slower (benchmarks/reports_store.py); it stays the judge in the tests,
# where every message the suite builds is parsed and validated by hl7apy in strict mode
# (tests/hl7_every_message.py). What hl7apy's strict mode would refuse from OUR inputs is
# checked here, as it is written: a component longer than its data type allows.

MAX_NAMESPACE = 20  # HD.1 / EI.2 namespace ids (IS): MSH-3..6, the assigning authority, the filler's namespace
MAX_FORMATTED_TEXT = 65536  # NTE-3 (FT)


class _DoesNotFit(Exception):
    """A value longer than its HL7 component allows (the value itself is never quoted)."""


def _fit(escaped: str, limit: int) -> str:
    if len(escaped) > limit:
        raise _DoesNotFit
    return escaped


def _segment(name: str, fields: list[str]) -> str:
    """NAME|field 1|field 2|...: `fields[0]` is field 1; trailing empty fields are not written."""
    while fields and not fields[-1]:
        fields = fields[:-1]
    return "|".join([name, *fields])


def _msh(endpoints: HL7Endpoints, control_id: str, message_time: dt.datetime) -> str:
    # MSH-1 is the field separator itself, so the list starts at MSH-2 (the encoding characters).
    fields = [""] * 17
    fields[0] = "^~\\&"
    fields[1] = _fit(escape(endpoints.sending_application), MAX_NAMESPACE)
    fields[2] = _fit(escape(endpoints.sending_facility), MAX_NAMESPACE)
    fields[3] = _fit(escape(endpoints.receiving_application), MAX_NAMESPACE)
    fields[4] = _fit(escape(endpoints.receiving_facility), MAX_NAMESPACE)
    fields[5] = format_ts(message_time)
    fields[7] = "ORU^R01^ORU_R01"
    fields[8] = escape(control_id)
    fields[9] = endpoints.processing_id
    fields[10] = HL7_VERSION
    fields[16] = "UNICODE UTF-8"  # MSH-18
    return _segment("MSH", fields)


def _pid(study: OruStudy, endpoints: HL7Endpoints) -> str:
    demographics = study.demographics
    fields = [""] * 8
    fields[0] = "1"
    if demographics.patient_id:
        fields[2] = f"{_fit(escape(demographics.patient_id), MAX_TEXT)}^^^^MR"
    else:
        # PID-3 is required; without a hospital id the study's own id (type PI) stands in.
        fields[2] = f"ECGWL{study.study_id}^^^{_fit(escape(endpoints.sending_application), MAX_NAMESPACE)}^PI"
    # PID-5 is required: an unnamed patient (an anonymised file) is "UNKNOWN", name type U.
    fields[4] = _person_name(demographics.patient_name) if demographics.patient_name else "UNKNOWN^^^^^^U"
    if demographics.birth_date:
        fields[6] = demographics.birth_date.strftime("%Y%m%d")
    fields[7] = (demographics.sex or Sex.UNKNOWN).value
    return _segment("PID", fields)


def _order_ids(study: OruStudy, endpoints: HL7Endpoints) -> tuple[str, str]:
    placer = _fit(escape(study.placer_order_number), MAX_TEXT)
    filler = (f"{_fit(escape(study.filler_order_number), MAX_TEXT)}"
              f"^{_fit(escape(endpoints.sending_application), MAX_NAMESPACE)}")
    return placer, filler


def _obr(study: OruStudy, report: OruReport, result_status: str, endpoints: HL7Endpoints,
         result_time: dt.datetime) -> str:
    fields = [""] * 32
    fields[0] = "1"
    fields[1], fields[2] = _order_ids(study, endpoints)
    fields[3] = _coded(PANEL_CODE)
    fields[6] = format_ts(study.observation_time(result_time)[0])  # OBR-7: required in a result (2.5.1)
    fields[21] = format_ts(result_time)  # OBR-22
    fields[23] = "EC"  # OBR-24, table 0074: electrocardiac
    fields[24] = result_status  # OBR-25
    if report.signed_by and result_status in ("F", "C"):
        signer_id, name = _fit(escape(report.signed_by), MAX_TEXT), _person_name(report.signed_by_name, "&")
        # No trailing empty subcomponent for a signer without a name (as hl7apy writes it: "id", not "id&").
        signer = f"{signer_id}&{name}" if name else signer_id
        signed_at = format_ts(report.signed_at) if report.signed_at else ""
        fields[31] = f"{signer}^{signed_at}" if signed_at else signer  # OBR-32
    return _segment("OBR", fields)


def final(result_status: str) -> bool:
    """F and C: a cardiologist's report, which carries only what the cardiologist confirmed."""
    return result_status in ("F", "C")


def _measurement_note(measurements: Measurements | None, sources: dict[str, str]) -> str | None:
    sent = [name for name in MEASUREMENT_CODES if measurements is not None
            and getattr(measurements, name, None) is not None and math.isfinite(getattr(measurements, name))]
    if not sent:
        return None
    device = [MEASUREMENT_CODES[name][1] for name in sent if sources.get(name) == "device"]
    reviewer = [MEASUREMENT_CODES[name][1] for name in sent if sources.get(name) == "reviewer"]
    text = ("Measurements: one value per quantity; the acquiring device's where it printed one ("
            + ", ".join(device) + "), otherwise computed by ecg-worklist from the signal" if device else
            "Measurements: computed by ecg-worklist from the signal; the file carries no device measurements")
    if reviewer:
        text += "; entered by the reviewing cardiologist: " + ", ".join(reviewer)
    return text + " (OBX-17 names each value's source)"


def _notes(study: OruStudy, report: OruReport, measurements: Measurements | None,
           interpretation: Interpretation | None, result_status: str, result_time: dt.datetime) -> list[str]:
    notes: list[str] = []
    if result_status in ("P", "R"):
        notes.append(DRAFT_NOTE)
    if result_status == "X":
        notes.append("The preliminary result was withdrawn by a cardiologist")
    if final(result_status) and report.signed_by:
        who = display_name(report.signed_by_name) or report.signed_by
        when = f" on {report.signed_at:%Y-%m-%d %H:%M} UTC" if report.signed_at else ""
        notes.append(f"Confirmed by {who}{when}")
    notes.append(study.observation_time(result_time)[1])
    measurement_note = _measurement_note(measurements, report.measurement_sources)
    if measurement_note:
        notes.append(measurement_note)
    if interpretation is not None and not final(result_status):
        modalities = "+".join(interpretation.modalities) or "unspecified input"
        notes.append(f"{INTERPRETER_NOTE}{interpretation.interpreter} "
                     f"{_public_version(interpretation.interpreter_version)} ({modalities})")
        if interpretation.is_demonstration:
            notes.append(DEMONSTRATION_NOTE)
    if not final(result_status):
        notes.extend(f"{CHECK_NOTE}{flag}" for flag in report.flags)
    notes.extend(report.comments)
    return notes


def _nte(number: int, note: str) -> str:
    # NTE-2 "L", table 0105: comment from the ancillary (filler) department.
    return _segment("NTE", [str(number), "L", _fit(escape(note), MAX_FORMATTED_TEXT)])


def _observation(set_id: int, value_type: str, code: tuple[str, str, str], values: list[str],
                 result_status: str, observed_at: dt.datetime | None, unit: str | None = None, *,
                 reference_range: str = "", flag: str = "", method: tuple[str, str, str] | None = None) -> str:
    """One OBX; `values` are already escaped, one per repetition of OBX-5 (each at most MAX_TEXT)."""
    fields = [""] * 17
    fields[0] = str(set_id)
    fields[1] = value_type
    fields[2] = _coded(code)
    fields[4] = "~".join(_fit(value, MAX_TEXT) for value in values)
    if unit:
        fields[5] = f"{escape(unit)}^{escape(unit)}^UCUM"
    fields[6] = _fit(escape(reference_range), MAX_TEXT)  # OBX-7
    fields[7] = flag  # OBX-8
    fields[10] = result_status  # OBX-11
    if observed_at:
        fields[13] = format_ts(observed_at)  # OBX-14
    if method:
        fields[16] = _coded(method)  # OBX-17
    return _segment("OBX", fields)


def _impression_lines(report: OruReport, result_status: str) -> list[str]:
    lines = [piece for label in report.labels for piece in _wrap(label)]
    impression = report.impression
    if final(result_status):
        # A signed report never repeats the draft's "preliminary, requires confirmation" sentence.
        impression = "\n".join(PRELIMINARY_SENTENCE.sub("", line).strip() for line in impression.splitlines())
    lines += _lines(impression)
    return lines or [escape("No interpretation available")]


def _measurement_code(field_name: str, source: str) -> tuple[str, str, str]:
    code, name, _unit = MEASUREMENT_CODES[field_name]
    if field_name == "qtc_ms" and source == "computed":
        return QTC_BAZETT_CODE[0], QTC_BAZETT_CODE[1], "LN"
    return code, name, "LN"


def _reasoning_lines(interpretation: Interpretation) -> list[str]:
    parsed = interpretation.parsed
    lines: list[str] = []
    for number in sorted(parsed.steps):
        lines += _wrap(f"{STEP_HEADINGS[number - 1]}:")
        lines += _lines(parsed.steps[number])
    if not lines and interpretation.raw_text.strip():
        # A malformed output is never dropped: the verbatim text goes out instead.
        lines = _lines(interpretation.raw_text)
    return lines


# ---------------------------------------------------------------- the message


def _assemble(
    study: OruStudy, report: OruReport, measurements: Measurements | None, interpretation: Interpretation | None,
    result_status: str, endpoints: HL7Endpoints, control_id: str, now: dt.datetime, stage: list[str],
) -> list[str]:
    """Every segment, in the ORU_R01 order: MSH, PID, PV1, ORC, OBR, NTE..., OBX...

    `stage` names the part being written, for an error message that must not quote values.
    """
    segments: list[str] = []
    stage[:] = ["MSH (endpoints, control id)"]
    segments.append(_msh(endpoints, control_id, now))
    stage[:] = ["PID/PV1 (demographics)"]
    segments.append(_pid(study, endpoints))
    segments.append(_segment("PV1", ["1", study.patient_class]))

    stage[:] = ["ORC/OBR (order numbers, times, signer)"]
    result_time = report.result_time or now
    placer, filler = _order_ids(study, endpoints)
    segments.append(_segment("ORC", ["RE", placer, filler]))
    segments.append(_obr(study, report, result_status, endpoints, result_time))
    stage[:] = ["NTE (notes, flags, comments)"]
    notes = _notes(study, report, measurements, interpretation, result_status, result_time)
    segments += [_nte(number, note) for number, note in enumerate(notes, start=1)]

    stage[:] = ["OBX (measurements, impression, reasoning)"]
    set_id = 0
    observed_at = study.observation_time(result_time)[0]
    sex = study.demographics.sex
    for field_name, (_code, _name, unit) in MEASUREMENT_CODES.items():
        value = getattr(measurements, field_name, None) if measurements is not None else None
        if value is None or not math.isfinite(value):
            continue  # not measured reliably: absent, never zero
        source = report.measurement_sources.get(field_name, "computed")
        set_id += 1
        segments.append(_observation(
            set_id, "NM", _measurement_code(field_name, source), [format_number(value)], result_status,
            observed_at, unit, reference_range=measured.reference_range(field_name, measurements, sex),
            flag=measured.abnormal_flag(field_name, value, measurements, sex), method=SOURCE_METHODS[source]))
    set_id += 1
    segments.append(_observation(set_id, "TX", IMPRESSION_CODE, _impression_lines(report, result_status),
                                 result_status, observed_at))
    # The interpreter's reasoning is the machine's: a draft carries it, a signed report never.
    reasoning = _reasoning_lines(interpretation) if interpretation is not None and not final(result_status) else []
    if reasoning:
        set_id += 1
        segments.append(_observation(set_id, "TX", REASONING_CODE, reasoning, result_status, observed_at))
    return segments


def build_oru(
    study: OruStudy, report: OruReport, measurements: Measurements | None, interpretation: Interpretation | None,
    *, result_status: ResultStatus, endpoints: HL7Endpoints, control_id: str,
    message_time: dt.datetime | None = None,
) -> str:
    """The ORU^R01 message (ER7, segments separated by \\r) for one report version.

    `measurements` None (a PDF without a text layer) yields a message with only the
    impression; `interpretation` None (e.g. a report written by a cardiologist) leaves
    out the reasoning OBX and the interpreter NTE. A ValueError names the part that does
    not fit (e.g. an application name over 20 characters, a patient id over 199) without
    quoting the value.
    """
    if result_status not in ("P", "R", "F", "C", "X"):
        raise ValueError(f"result status {result_status!r} is not one this system sends (P, R, F, C, X)")
    if not control_id or len(control_id) > 20:
        raise ValueError("MSH-10 needs a control id of 1 to 20 characters")
    stage = ["start"]
    try:
        segments = _assemble(study, report, measurements, interpretation, result_status, endpoints, control_id,
                             message_time or dt.datetime.now(dt.UTC), stage)
    except _DoesNotFit:
        # The value may identify the patient: only the part is named.
        raise ValueError(f"cannot build the ORU^R01 of study {study.study_id}: a value in {stage[0]} "
                         "is too long for its HL7 field") from None
    return SEGMENT_SEPARATOR.join(segments)


def read_header(message: str) -> MessageHeader:
    """MSH-10, OBR-25 and the order numbers of a message (empty strings where absent)."""
    header = {"control_id": "", "result_status": "", "placer_order_number": "", "filler_order_number": ""}
    for segment in message.split(SEGMENT_SEPARATOR):
        fields = segment.split("|") + [""] * 26
        if fields[0] == "MSH":
            header["control_id"] = unescape(fields[9])
        elif fields[0] == "OBR" and not header["result_status"]:
            header["placer_order_number"] = unescape(fields[2].split("^")[0])
            header["filler_order_number"] = unescape(fields[3].split("^")[0])
            header["result_status"] = fields[25]
    return MessageHeader(**header)
