"""The direct ER7 writer (issue 16) against hl7apy: what hl7apy reads strictly, it writes back unchanged.

`build_oru` writes the segments as text; hl7apy (strict, v2.5.1) must parse and validate each
message and serialise it back byte for byte, over texts with every delimiter, non-ASCII,
over-long lines, empty measurements, and every result status (no text ends in a space: hl7apy's
parser trims one). (When the writer replaced the
hl7apy builder, 960 such combinations were compared with the old builder's output: identical.)
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.report_format import format_output, parse_output
from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru
from reports.hl7_validate import validate_oru

RESULT_TIME = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
TEXTS = ["Sinus rhythm.", "a|b^c~d\\e&f ünïcode — QTc ≥ 450 ms", "",
         "x" * 450 + " " + " ".join(f"w{n}&" for n in range(300)),
         "Line one.\nLine two; with ^ and ~.\n\n" + " ".join(f"Sentence {n} about lead V{n % 6 + 1}." for n in range(30))]
MEASUREMENTS = [None, Measurements(),
                Measurements(hr_bpm=72.4, pr_ms=160, qrs_ms=92, qt_ms=380, qtc_ms=415.6, p_axis_deg=45,
                             qrs_axis_deg=-30, t_axis_deg=40)]
NAMES = [None, "Rossi^Maria^Luisa^Dr.^Jr.", "O'Brien|x^Ann&Co"]


def _interpretation(text: str) -> Interpretation:
    raw = format_output({n: text or "Regular rhythm." for n in range(1, 7)}, "Sinus rhythm.", ["sinus rhythm"])
    return Interpretation(interpreter="ecg-r1", interpreter_version="demo", is_demonstration=True,
                          modalities=["ecg"], raw_text=raw, parsed=parse_output(raw))


def _message(text: str, measurements: Measurements | None, status: str, name: str | None) -> str:
    study = OruStudy(study_id=3, placer_order_number="P^1", filler_order_number="F&1", received_at=RESULT_TIME,
                     demographics=Demographics(patient_id=name and "MRN|1", patient_name=name,
                                               sex=Sex.FEMALE if name else Sex.UNKNOWN))
    report = OruReport(labels=["sinus rhythm", text] if text else [], impression=text, result_time=RESULT_TIME,
                       flags=[f"HR {text[:30]}".strip()], comments=[text[:40]] if text else [],
                       measurement_sources={"hr_bpm": "device", "pr_ms": "reviewer"} if measurements else {})
    if status in ("F", "C"):
        report = report.model_copy(update={"signed_by": "dr|x", "signed_by_name": name and "Bianchi^Luca",
                                           "signed_at": RESULT_TIME})
    interpretation = _interpretation(text) if status in ("P", "R") else None
    return build_oru(study, report, measurements, interpretation, result_status=status,  # type: ignore[arg-type]
                     endpoints=HL7Endpoints(), control_id="C1", message_time=RESULT_TIME)


@pytest.mark.parametrize("status", ["P", "R", "F", "C", "X"])
def test_hl7apy_reads_every_message_strictly_and_writes_it_back_unchanged(status: str) -> None:
    for text, measurements, name in itertools.product(TEXTS, MEASUREMENTS, NAMES):
        message = _message(text, measurements, status, name)
        parsed = parse_message(message, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
        assert parsed.to_er7() == message
        assert validate_oru(message) == []


@pytest.mark.parametrize(("endpoints", "study_fields", "part"), [
    (HL7Endpoints(sending_application="A" * 21), {}, "MSH"),
    (HL7Endpoints(), {"placer_order_number": "9" * 200}, "ORC/OBR"),
])
def test_a_value_over_the_v251_limit_is_refused_naming_the_part(endpoints: HL7Endpoints, study_fields: dict,
                                                                part: str) -> None:
    study = OruStudy(study_id=1, placer_order_number="P1", filler_order_number="F1").model_copy(update=study_fields)
    with pytest.raises(ValueError, match=part) as error:
        build_oru(study, OruReport(), None, None, result_status="P", endpoints=endpoints, control_id="C1")
    assert "AAAA" not in str(error.value) and "9999" not in str(error.value)
