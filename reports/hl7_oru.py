"""The HL7 v2.5.1 ORU^R01 message of one ECG report: built with hl7apy, escaped by hand.

    MSH  unique control id (MSH-10), ORU^R01^ORU_R01, processing id P/T, version 2.5.1
    PID  patient id, name, birth date, sex (from the study's demographics)
    PV1  patient class (O outpatient, N not applicable)
    ORC  RE, placer and filler order numbers (stable per study, see reports.store.order_numbers)
    OBR  34534-8 12 lead EKG panel (LOINC), acquisition time (OBR-7), result time (OBR-22),
         diagnostic section EC, result status (OBR-25: P draft, R unverified, F signed,
         C correction, X withdrawn), principal result interpreter when signed (OBR-32)
    NTE  "machine draft awaiting cardiologist sign-off", the interpreter and its version,
         "DEMONSTRATION MODEL - NOT FOR CLINICAL USE" for the demo model, claim-check flags
    OBX  NM per measured interval/axis (LOINC + UCUM), skipping what was not measured;
         TX 8601-7 EKG impression (labels, then the narrative); TX local code for the
         interpreter's reasoning steps. OBX-11 carries the same status as OBR-25.

hl7apy 1.3.5 ships the v2.5.1 structures, so the message is built and checked against
v2.5.1 itself. hl7apy splits an assigned string at the delimiters, so every piece of free
text is escaped here first (`escape`) and assigned as ready ER7; a line break becomes a new
repetition of OBX-5 (TX cannot carry one). `reports.hl7_validate.validate_oru` checks a
finished message; the store refuses to keep one that fails.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from typing import Literal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message, Segment
from hl7apy.exceptions import HL7apyException
from pydantic import BaseModel, Field

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.report_format import STEP_HEADINGS

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

# hl7apy (strict) holds OBX-5 and the name components to ST's 199 characters, counted
# after escaping; longer text is wrapped into more repetitions (display lines) of OBX-5.
MAX_TEXT = 199

DRAFT_NOTE = "Machine draft awaiting cardiologist sign-off"
DEMONSTRATION_NOTE = "DEMONSTRATION MODEL - NOT FOR CLINICAL USE"

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

    @property
    def acquired_at(self) -> dt.datetime | None:
        return self.demographics.acquired_at


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


def _wrap(line: str, limit: int = MAX_TEXT) -> list[str]:
    """One line of text as escaped pieces of at most `limit` characters, split between words."""
    pieces: list[str] = []
    current = ""
    for word in line.split():
        candidate = f"{current} {word}" if current else word
        if len(escape(candidate)) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(escape(current))
        current = ""
        while len(escape(word)) > limit:  # a single word longer than a line: cut it
            cut = limit
            while len(escape(word[:cut])) > limit:
                cut -= 1
            pieces.append(escape(word[:cut]))
            word = word[cut:]
        current = word
    if current:
        pieces.append(escape(current))
    return pieces


def _lines(text: str) -> list[str]:
    """Text as escaped OBX-5 repetitions: one per line, long lines wrapped, blank lines dropped."""
    return [piece for line in text.splitlines() for piece in _wrap(line)]


def _person_name(name: str | None) -> str:
    """ "FAMILY^GIVEN" (or a plain name) as an escaped XPN/XCN family^given pair.

    A component longer than HL7 allows is cut: no real name is that long, so it is garbage
    in the source, and the full text stays in the study's demographics.
    """
    if not name:
        return ""
    return "^".join(_wrap(part, MAX_TEXT)[0] if part.strip() else "" for part in name.split("^")[:2])


# ---------------------------------------------------------------- segments


def _msh(message: Message, endpoints: HL7Endpoints, control_id: str, message_time: dt.datetime) -> None:
    msh = message.msh
    msh.msh_3 = escape(endpoints.sending_application)
    msh.msh_4 = escape(endpoints.sending_facility)
    msh.msh_5 = escape(endpoints.receiving_application)
    msh.msh_6 = escape(endpoints.receiving_facility)
    msh.msh_7 = format_ts(message_time)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = escape(control_id)
    msh.msh_11 = endpoints.processing_id
    msh.msh_12 = HL7_VERSION
    msh.msh_18 = "UNICODE UTF-8"


def _pid(segment: Segment, study: OruStudy, endpoints: HL7Endpoints) -> None:
    demographics = study.demographics
    segment.pid_1 = "1"
    if demographics.patient_id:
        segment.pid_3 = f"{escape(demographics.patient_id)}^^^^MR"
    else:
        # PID-3 is required; without a hospital id the study's own id (type PI) stands in.
        segment.pid_3 = f"ECGWL{study.study_id}^^^{escape(endpoints.sending_application)}^PI"
    # PID-5 is required: an unnamed patient (an anonymised file) is "UNKNOWN", name type U.
    segment.pid_5 = _person_name(demographics.patient_name) if demographics.patient_name else "UNKNOWN^^^^^^U"
    if demographics.birth_date:
        segment.pid_7 = demographics.birth_date.strftime("%Y%m%d")
    segment.pid_8 = (demographics.sex or Sex.UNKNOWN).value


def _order_ids(study: OruStudy, endpoints: HL7Endpoints) -> tuple[str, str]:
    placer = escape(study.placer_order_number)
    filler = f"{escape(study.filler_order_number)}^{escape(endpoints.sending_application)}"
    return placer, filler


def _obr(segment: Segment, study: OruStudy, report: OruReport, result_status: str, endpoints: HL7Endpoints,
         result_time: dt.datetime) -> None:
    placer, filler = _order_ids(study, endpoints)
    segment.obr_1 = "1"
    segment.obr_2 = placer
    segment.obr_3 = filler
    segment.obr_4 = _coded(PANEL_CODE)
    if study.acquired_at:
        segment.obr_7 = format_ts(study.acquired_at)
    segment.obr_22 = format_ts(result_time)
    segment.obr_24 = "EC"  # table 0074: electrocardiac
    segment.obr_25 = result_status
    if report.signed_by and result_status in ("F", "C"):
        signer = f"{escape(report.signed_by)}&{_person_name(report.signed_by_name).replace('^', '&')}"
        signed_at = format_ts(report.signed_at) if report.signed_at else ""
        segment.obr_32 = f"{signer}^{signed_at}" if signed_at else signer


def _notes(report: OruReport, interpretation: Interpretation | None, result_status: str) -> list[str]:
    notes: list[str] = []
    if result_status in ("P", "R"):
        notes.append(DRAFT_NOTE)
    if result_status == "X":
        notes.append("The preliminary result was withdrawn by a cardiologist")
    if result_status in ("F", "C") and report.signed_by:
        who = report.signed_by_name.replace("^", ", ") if report.signed_by_name else report.signed_by
        when = f" on {report.signed_at:%Y-%m-%d %H:%M}" if report.signed_at else ""
        verb = "Corrected and confirmed" if result_status == "C" else "Confirmed"
        notes.append(f"{verb} by {who}{when}")
    if interpretation is not None:
        modalities = "+".join(interpretation.modalities) or "unspecified input"
        notes.append(f"Interpreter: {interpretation.interpreter} {interpretation.interpreter_version} ({modalities})")
        if interpretation.is_demonstration:
            notes.append(DEMONSTRATION_NOTE)
    notes.extend(f"Check: {flag}" for flag in report.flags)
    notes.extend(report.comments)
    return notes


def _observation(parent: Segment, set_id: int, value_type: str, code: tuple[str, str, str], values: list[str],
                 result_status: str, observed_at: dt.datetime | None, unit: str | None = None) -> None:
    """One OBX in its own OBSERVATION group; `values` are already escaped (one per repetition)."""
    obx = parent.add_group("ORU_R01_OBSERVATION").add_segment("OBX")
    obx.obx_1 = str(set_id)
    obx.obx_2 = value_type
    obx.obx_3 = _coded(code)
    for value in values:
        obx.add_field("OBX_5").value = value
    if unit:
        obx.obx_6 = f"{escape(unit)}^{escape(unit)}^UCUM"
    obx.obx_11 = result_status
    if observed_at:
        obx.obx_14 = format_ts(observed_at)


def _impression_lines(report: OruReport) -> list[str]:
    lines = [piece for label in report.labels for piece in _wrap(label)]
    lines += _lines(report.impression)
    return lines or [escape("No interpretation available")]


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
    message: Message, study: OruStudy, report: OruReport, measurements: Measurements | None,
    interpretation: Interpretation | None, result_status: str, endpoints: HL7Endpoints, control_id: str,
    now: dt.datetime, stage: list[str],
) -> None:
    """Add every segment to `message`, in the ORU_R01 group structure.

    `stage` names the part being built, for an error message that must not quote values.
    """
    stage[:] = ["MSH (endpoints, control id)"]
    _msh(message, endpoints, control_id, now)
    stage[:] = ["PID/PV1 (demographics)"]
    patient_result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = patient_result.add_group("ORU_R01_PATIENT")
    _pid(patient.add_segment("PID"), study, endpoints)
    visit = patient.add_group("ORU_R01_VISIT").add_segment("PV1")
    visit.pv1_1 = "1"
    visit.pv1_2 = study.patient_class

    stage[:] = ["ORC/OBR (order numbers, times, signer)"]
    order = patient_result.add_group("ORU_R01_ORDER_OBSERVATION")
    orc = order.add_segment("ORC")
    orc.orc_1 = "RE"
    orc.orc_2, orc.orc_3 = _order_ids(study, endpoints)
    _obr(order.add_segment("OBR"), study, report, result_status, endpoints, report.result_time or now)
    stage[:] = ["NTE (notes, flags, comments)"]
    for number, note in enumerate(_notes(report, interpretation, result_status), start=1):
        nte = order.add_segment("NTE")
        nte.nte_1 = str(number)
        nte.nte_2 = "L"  # table 0105: comment from the ancillary (filler) department
        nte.nte_3 = escape(note)

    stage[:] = ["OBX (measurements, impression, reasoning)"]
    set_id = 0
    observed_at = study.acquired_at
    for field_name, (code, name, unit) in MEASUREMENT_CODES.items():
        value = getattr(measurements, field_name, None) if measurements is not None else None
        if value is None or not math.isfinite(value):
            continue  # not measured reliably: absent, never zero
        set_id += 1
        _observation(order, set_id, "NM", (code, name, "LN"), [format_number(value)], result_status,
                     observed_at, unit)
    set_id += 1
    _observation(order, set_id, "TX", IMPRESSION_CODE, _impression_lines(report), result_status, observed_at)
    reasoning = _reasoning_lines(interpretation) if interpretation is not None else []
    if reasoning:
        set_id += 1
        _observation(order, set_id, "TX", REASONING_CODE, reasoning, result_status, observed_at)


def build_oru(
    study: OruStudy, report: OruReport, measurements: Measurements | None, interpretation: Interpretation | None,
    *, result_status: ResultStatus, endpoints: HL7Endpoints, control_id: str,
    message_time: dt.datetime | None = None,
) -> str:
    """The ORU^R01 message (ER7, segments separated by \\r) for one report version.

    `measurements` None (a PDF without a text layer) yields a message with only the
    impression; `interpretation` None (e.g. a report written by a cardiologist) leaves
    out the reasoning OBX and the interpreter NTE. hl7apy checks every value as it is
    set and the whole v2.5.1 structure at the end; a ValueError names the part that does
    not fit (e.g. an application name over 20 characters, a patient id over 199) without
    quoting the value.
    """
    if result_status not in ("P", "R", "F", "C", "X"):
        raise ValueError(f"result status {result_status!r} is not one this system sends (P, R, F, C, X)")
    if not control_id or len(control_id) > 20:
        raise ValueError("MSH-10 needs a control id of 1 to 20 characters")
    message = Message("ORU_R01", version=HL7_VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    stage = ["start"]
    try:
        _assemble(message, study, report, measurements, interpretation, result_status, endpoints, control_id,
                  message_time or dt.datetime.now(dt.UTC), stage)
        stage[:] = ["the v2.5.1 ORU_R01 structure"]
        message.validate()
    except HL7apyException as exc:
        # hl7apy's text quotes the offending value, which may identify the patient: not repeated.
        raise ValueError(f"cannot build the ORU^R01 of study {study.study_id}: {type(exc).__name__} "
                         f"in {stage[0]} (a value is too long or malformed)") from exc
    return message.to_er7()


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
