"""The ORU^R01 builder, read back by an independent parser (the `hl7` package).

Besides the fields: OBR-7 always filled (and an NTE says which time it is), OBX-7/8/17 on
every measurement, QTc coded by its method, one value per quantity, the full PID-5, no server
path in a note, text split between sentences, and nothing machine-only in F/C messages.
"""

from __future__ import annotations

import datetime as dt

import hl7
import pytest

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.report_format import format_output, parse_output
from reports.hl7_oru import (
    DEMONSTRATION_NOTE, DRAFT_NOTE, MACHINE_ONLY, MEASUREMENT_CODES, HL7Endpoints, OruReport, OruStudy, build_oru,
    escape, new_control_id, read_header, unescape,
)
from reports.hl7_validate import machine_only_content, validate_oru

ENDPOINTS = HL7Endpoints(sending_application="ECGWL", sending_facility="HOSP",
                         receiving_application="EPIC", receiving_facility="HOSP", processing_id="T")
ACQUIRED = dt.datetime(2026, 11, 20, 8, 30, 15)
RESULT_TIME = dt.datetime(2026, 11, 20, 9, 0, 0, tzinfo=dt.UTC)
TRICKY = "a|b^c~d\\e&f"  # every HL7 delimiter and the escape character


def _study(**demographics) -> OruStudy:
    fields = {"patient_id": "MRN-4711", "patient_name": "Rossi^Maria", "sex": Sex.FEMALE,
              "birth_date": dt.date(1950, 3, 4), "acquired_at": ACQUIRED} | demographics
    return OruStudy(study_id=7, demographics=Demographics(**fields), placer_order_number="ACC-99",
                    filler_order_number="ECGWL7", patient_class="O")


def _interpretation(*, demo: bool = False, step_text: str = "Regular rhythm at 72/min.") -> Interpretation:
    text = format_output({n: step_text for n in range(1, 7)}, "Sinus rhythm.", ["sinus rhythm", "normal ECG"])
    return Interpretation(interpreter="ecg-r1", interpreter_version="demo-2026.11", is_demonstration=demo,
                          modalities=["ecg", "image"], raw_text=text, parsed=parse_output(text))


MEASURED = Measurements(hr_bpm=72.4, pr_ms=160, qrs_ms=92, qt_ms=380, qtc_ms=415.6,
                        p_axis_deg=45, qrs_axis_deg=-30, t_axis_deg=40)


def _build(measurements=MEASURED, interpretation=None, *, result_status="P", report=None, study=None,
           control_id="CTRL0001") -> str:
    report = report or OruReport(labels=["sinus rhythm", "normal ECG"], impression="Sinus rhythm.",
                                 result_time=RESULT_TIME)
    message = build_oru(study or _study(), report, measurements, interpretation, result_status=result_status,
                        endpoints=ENDPOINTS, control_id=control_id)
    assert validate_oru(message) == [], message.replace("\r", "\n")
    return message


def _observations(parsed: hl7.Message) -> dict[str, hl7.Segment]:
    return {str(obx[3][0][0]): obx for obx in parsed.segments("OBX")}


def test_draft_message_fields_read_back_by_the_hl7_package() -> None:
    message = _build(interpretation=_interpretation(demo=True))
    assert "\n" not in message and message.count("\r") == len(message.split("\r")) - 1
    parsed = hl7.parse(message)
    assert str(parsed.segment("MSH")[9]) == "ORU^R01^ORU_R01"  # the whole field, raw
    assert (str(parsed["MSH.F10"]), str(parsed["MSH.F11"]), str(parsed["MSH.F12"])) == ("CTRL0001", "T", "2.5.1")
    assert (str(parsed["MSH.F3"]), str(parsed["MSH.F4"]), str(parsed["MSH.F5"])) == ("ECGWL", "HOSP", "EPIC")
    assert str(parsed["PID.F3.R1.C1"]) == "MRN-4711" and str(parsed["PID.F3.R1.C5"]) == "MR"
    assert (str(parsed["PID.F5.R1.C1"]), str(parsed["PID.F5.R1.C2"])) == ("Rossi", "Maria")
    assert (str(parsed["PID.F7"]), str(parsed["PID.F8"])) == ("19500304", "F")
    assert str(parsed["PV1.F2"]) == "O"
    assert (str(parsed["ORC.F1"]), str(parsed["ORC.F2"]), str(parsed["ORC.F3.R1.C1"])) == ("RE", "ACC-99", "ECGWL7")
    assert (str(parsed["OBR.F2"]), str(parsed["OBR.F3.R1.C1"])) == ("ACC-99", "ECGWL7")
    assert str(parsed.segment("OBR")[4]) == "34534-8^12 lead EKG panel^LN"
    assert str(parsed["OBR.F7"]) == "20261120083015"
    assert str(parsed["OBR.F22"]) == "20261120090000+0000"
    assert str(parsed["OBR.F25"]) == "P" and str(parsed["OBR.F32"]) == ""
    notes = [str(nte[3]) for nte in parsed.segments("NTE")]
    assert notes[0] == DRAFT_NOTE
    assert "Interpreter: ecg-r1 demo-2026.11 (ecg+image)" in notes
    assert DEMONSTRATION_NOTE in notes

    observations = _observations(parsed)
    # No sources recorded: every value is ours, so the QTc is Bazett's (76635-2), not the method-less 8636-3.
    expected_numbers = {"8867-4": "72", "8625-6": "160", "8633-0": "92", "8634-8": "380", "76635-2": "416",
                        "8626-4": "45", "8632-2": "-30", "8638-9": "40"}
    assert "8636-3" not in observations
    for code, value in expected_numbers.items():
        obx = observations[code]
        unit = "ms" if code == "76635-2" else next(u for c, _n, u in MEASUREMENT_CODES.values() if c == code)
        assert (str(obx[2]), str(obx[5]), str(obx[6][0][0]), str(obx[6][0][2])) == ("NM", value, unit, "UCUM")
        assert str(obx[7]) and str(obx[8]) and str(obx[17][0][0]) == "COMPUTED"
    ranges = {code: (str(observations[code][7]), str(observations[code][8])) for code in expected_numbers}
    assert ranges == {"8867-4": ("60-100", "N"), "8625-6": ("120-200", "N"), "8633-0": ("0-110", "N"),
                      "8634-8": ("319-419", "N"),  # QTc 350-460 ms (a woman) at RR 829 ms, by Bazett
                      "76635-2": ("350-460", "N"), "8626-4": ("0-75", "N"), "8632-2": ("-30-90", "N"),
                      "8638-9": ("0-90", "N")}
    impression = observations["8601-7"]
    assert str(impression[2]) == "TX"
    assert [str(r) for r in impression[5]] == ["sinus rhythm", "normal ECG", "Sinus rhythm."]
    reasoning = [parsed.unescape(str(r)) for r in observations["ECGWL-REASONING"][5]]
    assert reasoning[0] == "Step 1: Technical, Rate & Rhythm:" and reasoning[1] == "Regular rhythm at 72/min."
    assert {str(obx[11]) for obx in parsed.segments("OBX")} == {"P"}
    assert [str(obx[1]) for obx in parsed.segments("OBX")] == [str(n) for n in range(1, 11)]
    assert {str(obx[14]) for obx in parsed.segments("OBX")} == {"20261120083015"}
    assert "Observation time (OBR-7): the acquisition time recorded in the ECG file" in notes
    assert read_header(message).model_dump() == {
        "control_id": "CTRL0001", "result_status": "P", "placer_order_number": "ACC-99",
        "filler_order_number": "ECGWL7"}


def test_unmeasured_values_are_left_out_not_zero() -> None:
    parsed = hl7.parse(_build(Measurements(hr_bpm=88, qrs_ms=float("nan"))))
    assert set(_observations(parsed)) == {"8867-4", "8601-7"}
    # A QT without a rate still gets its range (the one at 60 /min): OBX-7 is never empty.
    qt_only = _observations(hl7.parse(_build(Measurements(qt_ms=470))))["8634-8"]
    assert (str(qt_only[7]), str(qt_only[8])) == ("350-460", "H")


def test_pdf_report_without_measurements_is_just_the_impression() -> None:
    report = OruReport(labels=["atrial fibrillation"], impression="", result_time=RESULT_TIME)
    parsed = hl7.parse(_build(None, None, report=report, study=_study(patient_id=None, patient_name=None)))
    obx_segments = parsed.segments("OBX")
    assert len(obx_segments) == 1
    assert str(obx_segments[0][3][0][0]) == "8601-7" and str(obx_segments[0][5]) == "atrial fibrillation"
    # No hospital id: the study's own id, marked as this system's internal identifier.
    assert str(parsed["PID.F3.R1.C1"]) == "ECGWL7" and str(parsed["PID.F3.R1.C5"]) == "PI"
    assert (str(parsed["PID.F5.R1.C1"]), str(parsed["PID.F5.R1.C7"])) == ("UNKNOWN", "U")


def test_delimiters_in_free_text_round_trip() -> None:
    report = OruReport(labels=[TRICKY, "ok"], impression=f"first {TRICKY}\nsecond line", result_time=RESULT_TIME,
                       flags=[f"QTc {TRICKY}"])
    study = _study(patient_name=f"O|Brien&Co^Jo~{chr(92)}", patient_id="ID^1")
    message = _build(report=report, study=study, interpretation=_interpretation(step_text=f"step {TRICKY}"))
    parsed = hl7.parse(message)
    impression = [parsed.unescape(str(r)) for r in _observations(parsed)["8601-7"][5]]
    assert impression == [TRICKY, "ok", f"first {TRICKY}", "second line"]
    assert parsed.unescape(str(_observations(parsed)["ECGWL-REASONING"][5][1])) == f"step {TRICKY}"
    assert str(parsed["PID.F5.R1.C1"]) == "O|Brien&Co" and str(parsed["PID.F5.R1.C2"]) == "Jo~\\"
    assert str(parsed["PID.F3.R1.C1"]) == "ID^1"
    assert f"Check: QTc {TRICKY}" in [parsed.unescape(str(nte[3])) for nte in parsed.segments("NTE")]
    # Our own escape and unescape agree with the independent parser.
    assert unescape(escape(TRICKY)) == TRICKY and escape(TRICKY) == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f"


def test_signed_and_corrected_messages_name_the_signer_and_carry_nothing_machine_only() -> None:
    signed_at = dt.datetime(2026, 11, 21, 10, 15, tzinfo=dt.UTC)
    # Whatever the caller passes (the draft's flags, its interpretation, the interpreter's closing
    # sentence), an F or C message carries only the confirmed statements and impression.
    report = OruReport(labels=["sinus bradycardia"], result_time=signed_at,
                       impression="Confirmed. Preliminary computer reading of the measured signal; requires "
                                  "cardiologist confirmation.", flags=["QTc claimed 400 ms, measured 470 ms"],
                       signed_by="jdoe", signed_by_name="Doe^Jane", signed_at=signed_at)
    draft = _build(report=report, interpretation=_interpretation(demo=True))
    assert set(machine_only_content(draft)) == set(MACHINE_ONLY)  # the draft has all of it
    for status in ("F", "C"):
        message = _build(report=report, interpretation=_interpretation(demo=True), result_status=status,
                         control_id=new_control_id())
        parsed = hl7.parse(message)
        assert str(parsed["OBR.F25"]) == status
        assert {str(obx[11]) for obx in parsed.segments("OBX")} == {status}
        signer = [str(parsed[f"OBR.F32.R1.C1.S{n}"]) for n in (1, 2, 3)]
        assert signer == ["jdoe", "Doe", "Jane"] and str(parsed["OBR.F32.R1.C2"]) == "20261121101500+0000"
        notes = [str(nte[3]) for nte in parsed.segments("NTE")]
        assert "Confirmed by Doe, Jane on 2026-11-21 10:15 UTC" in notes
        assert machine_only_content(message) == []
        assert "ECGWL-REASONING" not in _observations(parsed)
        assert [str(r) for r in _observations(parsed)["8601-7"][5]] == ["sinus bradycardia", "Confirmed."]


def test_obr_7_is_always_filled_and_a_note_says_which_time_it_is() -> None:
    received = dt.datetime(2026, 11, 20, 7, 45, tzinfo=dt.UTC)
    without = _study(acquired_at=None)
    parsed = hl7.parse(_build(study=without.model_copy(update={"received_at": received})))
    assert str(parsed["OBR.F7"]) == "20261120074500+0000"
    assert {str(obx[14]) for obx in parsed.segments("OBX")} == {"20261120074500+0000"}
    notes = [str(nte[3]) for nte in parsed.segments("NTE")]
    assert any(note.startswith("Observation time (OBR-7): the time the file was received") for note in notes)
    parsed = hl7.parse(_build(study=without))  # neither known: the report's own time, said so
    assert str(parsed["OBR.F7"]) == "20261120090000+0000"
    assert any("neither the acquisition time nor the time the file was received" in str(nte[3])
               for nte in parsed.segments("NTE"))


def test_device_values_are_preferred_sent_once_and_say_their_source() -> None:
    report = OruReport(labels=["sinus rhythm"], result_time=RESULT_TIME,
                       measurement_sources={"hr_bpm": "computed", "pr_ms": "device", "qrs_ms": "device",
                                            "qt_ms": "device", "qtc_ms": "device"})
    measurements = Measurements(hr_bpm=58, pr_ms=204, qrs_ms=92, qt_ms=400, qtc_ms=510)
    parsed = hl7.parse(_build(measurements, report=report))
    observations = _observations(parsed)
    # The device's QTc: its formula is not stated, so the method-less code; never a second QTc.
    assert "8636-3" in observations and "76635-2" not in observations
    sources = {code: str(obx[17][0][0]) for code, obx in observations.items() if str(obx[2]) == "NM"}
    assert sources == {"8867-4": "COMPUTED", "8625-6": "DEVICE", "8633-0": "DEVICE", "8634-8": "DEVICE",
                       "8636-3": "DEVICE"}
    flags = {code: str(obx[8]) for code, obx in observations.items() if str(obx[2]) == "NM"}
    assert flags == {"8867-4": "L", "8625-6": "H", "8633-0": "N", "8634-8": "N", "8636-3": "HH"}
    note = next(str(nte[3]) for nte in parsed.segments("NTE") if str(nte[3]).startswith("Measurements:"))
    assert "device" in note and "P-R Interval" in note and "Heart rate" not in note


def test_full_patient_name_and_no_server_path_in_a_note() -> None:
    # DICOM PN order (family, given, middle, prefix, suffix) becomes XPN's (... suffix, prefix).
    study = _study(patient_name="Rossi^Maria^Luisa^Dr.^Jr.")
    interpretation = _interpretation().model_copy(update={"interpreter_version": "/srv/ecgwl/models/ecg-r1-demo/"})
    message = _build(study=study, interpretation=interpretation)
    parsed = hl7.parse(message)
    assert [str(parsed[f"PID.F5.R1.C{n}"]) for n in range(1, 6)] == ["Rossi", "Maria", "Luisa", "Jr.", "Dr."]
    notes = [str(nte[3]) for nte in parsed.segments("NTE")]
    assert "Interpreter: ecg-r1 ecg-r1-demo (ecg+image)" in notes and "/srv" not in message
    broken = message.replace("Interpreter: ecg-r1 ecg-r1-demo", "Interpreter: ecg-r1 /srv/ecgwl/models/x")
    assert any("file path" in problem for problem in validate_oru(broken))


def test_text_is_split_between_sentences() -> None:
    sentences = [f"Sentence number {n} says something about lead V{n % 6 + 1} and its ST segment." for n in range(12)]
    report = OruReport(labels=["sinus rhythm"], impression=" ".join(sentences), result_time=RESULT_TIME)
    parsed = hl7.parse(_build(report=report))
    lines = [parsed.unescape(str(r)) for r in _observations(parsed)["8601-7"][5]][1:]
    assert len(lines) > 1 and all(len(line) <= 199 for line in lines)
    assert all(line.endswith(".") for line in lines)  # every repetition ends a sentence
    assert " ".join(lines) == " ".join(sentences)


def test_control_ids_are_unique_and_fit_msh_10() -> None:
    ids = {new_control_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 20 for i in ids)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"result_status": "Q"}, "result status"),
    ({"control_id": ""}, "control id"),
    ({"control_id": "X" * 21}, "control id"),
])
def test_builder_refuses_what_it_cannot_send(kwargs: dict, match: str) -> None:
    arguments = {"result_status": "P", "control_id": "C1"} | kwargs
    with pytest.raises(ValueError, match=match):
        build_oru(_study(), OruReport(), None, None, endpoints=ENDPOINTS, **arguments)


def test_long_text_is_wrapped_into_lines_hl7apy_accepts() -> None:
    long_line = " ".join(f"word{n}&" for n in range(200))  # ~1,600 characters after escaping
    report = OruReport(labels=["x" * 450], impression=long_line, result_time=RESULT_TIME)
    parsed = hl7.parse(_build(report=report, study=_study(patient_name="A" * 300 + "^Maria")))
    lines = [parsed.unescape(str(r)) for r in _observations(parsed)["8601-7"][5]]
    assert all(len(str(r)) <= 199 for r in _observations(parsed)["8601-7"][5])
    assert "".join(lines[:3]) == "x" * 450  # an over-long word is cut, nothing lost
    assert " ".join(lines[3:]) == long_line  # one long sentence: split between words, never inside one
    assert str(parsed["PID.F5.R1.C1"]) == "A" * 199  # a garbage-long name is cut to the field


def test_a_value_that_cannot_fit_is_refused_without_quoting_it() -> None:
    secret_id = "PATIENT-" + "9" * 300
    with pytest.raises(ValueError, match=r"PID/PV1 \(demographics\)") as error:
        _build(study=_study(patient_id=secret_id))
    assert "PATIENT-" not in str(error.value)
