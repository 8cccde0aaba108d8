"""The validator: hl7apy's structure check plus the table and content checks hl7apy does not make."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest.ecg import Demographics, Measurements
from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru
from reports.hl7_validate import validate_oru


@pytest.fixture(scope="module")
def draft() -> str:
    study = OruStudy(study_id=3, demographics=Demographics(patient_id="P1", acquired_at=dt.datetime(2026, 1, 2, 3, 4)),
                     placer_order_number="PL1", filler_order_number="FL1")
    report = OruReport(labels=["sinus rhythm"], result_time=dt.datetime(2026, 1, 2, 4, 0, tzinfo=dt.UTC))
    return build_oru(study, report, Measurements(hr_bpm=60, qrs_ms=90), None, result_status="P",
                     endpoints=HL7Endpoints(), control_id="C42")


def _segment(message: str, name: str) -> list[str]:
    return next(s for s in message.split("\r") if s.startswith(name + "|")).split("|")


def _replace_field(message: str, name: str, index: int, value: str, *, occurrence: int = 0) -> str:
    segments = message.split("\r")
    matching = [i for i, s in enumerate(segments) if s.startswith(name + "|")]
    fields = segments[matching[occurrence]].split("|")
    fields += [""] * (index + 1 - len(fields))
    fields[index] = value
    segments[matching[occurrence]] = "|".join(fields)
    return "\r".join(segments)


def test_the_built_draft_is_valid(draft: str) -> None:
    assert validate_oru(draft) == []


@pytest.mark.parametrize(("name", "index", "value", "problem"), [
    ("OBX", 11, "Q", "OBX-11 'Q' is not in HL7 table 0085"),
    ("OBX", 11, "F", "OBX-11 'F' contradicts OBR-25 'P'"),
    ("OBR", 25, "Q", "OBR-25 result status 'Q' is not in HL7 table 0123"),
    ("OBR", 4, "11524-6^EKG study^LN", "OBR-4 must be the 34534-8"),
    ("OBX", 3, "99999-9^Made up^LN", "LOINC code '99999-9'"),
    ("OBX", 5, "seventy", "NM value 'seventy' is not a number"),
    ("OBX", 6, "bpm^bpm^UCUM", "needs the UCUM unit '/min'"),
    ("OBX", 1, "5", "OBX-1 set id"),
    ("MSH", 9, "", "MSH-10 message control id is missing"),
    ("MSH", 11, "2.4", "MSH-12 version must be 2.5.1"),
    ("MSH", 8, "ADT^A01", "MSH-9 must be ORU^R01^ORU_R01"),
    ("PID", 8, "X", "PID-8 sex 'X'"),
    ("OBR", 7, "yesterday", "OBR-7 is not an HL7 time stamp"),
    ("OBX", 5, "7\\Z\\2", "not a valid escape sequence"),
    ("OBR", 7, "", "OBR-7 observation date/time is required"),
    ("OBX", 7, "", "OBX-7 reference range is missing"),
    ("OBX", 8, "Z", "OBX-8 abnormal flag 'Z' is not in HL7 table 0078"),
    ("OBX", 17, "", "OBX-17 must say where the value comes from"),
    ("NTE", 3, "Interpreter: ecg-r1 /opt/models/demo (ecg)", "a file path (server internals)"),
])
def test_each_rule_rejects_its_fault(draft: str, name: str, index: int, value: str, problem: str) -> None:
    broken = _replace_field(draft, name, index, value)
    assert broken != draft
    problems = validate_oru(broken)
    assert any(problem in p for p in problems), problems


def test_a_final_result_needs_its_signer(draft: str) -> None:
    final = _replace_field(draft, "OBR", 25, "F")
    for occurrence in range(len([s for s in draft.split("\r") if s.startswith("OBX|")])):
        final = _replace_field(final, "OBX", 11, "F", occurrence=occurrence)
    problems = validate_oru(final)
    assert "OBR-32 principal result interpreter is required for a F result" in problems
    # ... and the draft's notice left in it is machine-only content, refused in a final result.
    assert "a F message carries machine-only content: 'Machine draft awaiting cardiologist sign-off'" in problems
    assert len(problems) == 2


def test_two_values_of_one_quantity_are_refused(draft: str) -> None:
    segments = draft.split("\r")
    qrs = next(s for s in segments if s.startswith("OBX|2|"))
    first = qrs.replace("8633-0^QRS duration", "8636-3^Q-T interval corrected")
    second = first.replace("OBX|2|", "OBX|3|").replace("8636-3^Q-T interval corrected", "76635-2^QTc interval Bazett")
    impression = next(s for s in segments if s.startswith("OBX|3|")).replace("OBX|3|", "OBX|4|")
    doubled = "\r".join([s for s in segments if not s.startswith("OBX|2|") and not s.startswith("OBX|3|")]
                        + [first, second, impression])
    assert any("more than one value of one quantity" in p for p in validate_oru(doubled))


def test_missing_obr_fails_the_structure_check(draft: str) -> None:
    without_obr = "\r".join(s for s in draft.split("\r") if not s.startswith("OBR|"))
    problems = validate_oru(without_obr)
    assert any(p.startswith("structure (hl7apy") for p in problems), problems
    assert "expected exactly one OBR (found 0)" in problems


def test_newline_separators_and_non_messages_are_rejected(draft: str) -> None:
    assert validate_oru(draft.replace("\r", "\n")) == ["segments must be separated by \\r only (found \\n)"]
    assert validate_oru("hello") == ["the message does not start with an MSH segment"]
