"""Sanity at the edge: impossible demographics are dropped with a note, never shown or sent.

`sanitize_demographics` itself, then the same rules through `read_ecg` for each reader that
existed before the archive formats (DICOM, WFDB, PDF) and through the HL7 builder: a dropped
value must not reach PID. The archive-format readers are checked in their own test modules.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import Demographics, Sex
from ingest.readers.demographics import MAX_AGE_YEARS, parse_sex_noted, sanitize_demographics
from ingest.readers.read import read_ecg
from tests.ingest_readers.builders import (
    mdc_sources,
    waveform_group,
    write_dicom_ecg,
    write_report_pdf,
    write_wfdb,
)

NOW = dt.datetime(2024, 6, 1, 12, 0)
ACQUIRED = dt.datetime(2024, 3, 1, 14, 22)


def test_plausible_demographics_pass_unchanged() -> None:
    given = Demographics(patient_id="P-1", patient_name="DOE^JANE", sex=Sex.FEMALE,
                         birth_date=dt.date(1960, 3, 15), age_years=63, acquired_at=ACQUIRED)
    clean, notes = sanitize_demographics(given, now=NOW)
    assert clean == given and notes == []


@pytest.mark.parametrize("age", [330, -1, MAX_AGE_YEARS + 1])
def test_impossible_age_is_dropped(age: int) -> None:
    clean, notes = sanitize_demographics(Demographics(age_years=age, acquired_at=ACQUIRED), now=NOW)
    assert clean.age_years is None and clean.acquired_at == ACQUIRED
    assert notes == [f"age outside 0-{MAX_AGE_YEARS} years; dropped"]
    assert str(age) not in notes[0].replace(str(MAX_AGE_YEARS), "")  # the value is not repeated


def test_birth_after_acquisition_is_dropped() -> None:
    clean, notes = sanitize_demographics(
        Demographics(birth_date=dt.date(2024, 5, 1), acquired_at=ACQUIRED), now=NOW)
    assert clean.birth_date is None and notes == ["birth date is after the acquisition; dropped"]


def test_birth_in_the_future_without_acquisition_is_dropped() -> None:
    clean, notes = sanitize_demographics(Demographics(birth_date=dt.date(2030, 1, 1)), now=NOW)
    assert clean.birth_date is None and notes == ["birth date is in the future; dropped"]


def test_birth_implying_an_age_over_the_limit_is_dropped() -> None:
    clean, notes = sanitize_demographics(Demographics(birth_date=dt.date(1870, 1, 1), acquired_at=ACQUIRED),
                                         now=NOW)
    assert clean.birth_date is None and "implies an age over" in notes[0]


def test_age_that_contradicts_the_birth_date_drops_both() -> None:
    clean, notes = sanitize_demographics(
        Demographics(birth_date=dt.date(1960, 3, 15), age_years=40, acquired_at=ACQUIRED), now=NOW)
    assert (clean.birth_date, clean.age_years) == (None, None)
    assert notes == ["stated age disagrees with the birth date by more than a year; both dropped"]


def test_acquisition_in_the_future_or_before_1950_is_dropped() -> None:
    for when in (dt.datetime(2031, 1, 1), dt.datetime(1900, 1, 1)):
        clean, notes = sanitize_demographics(Demographics(acquired_at=when), now=NOW)
        assert clean.acquired_at is None and notes == ["acquisition time is in the future or before 1950; dropped"]


def test_unreadable_identifiers_are_dropped_and_readable_ones_trimmed() -> None:
    clean, notes = sanitize_demographics(
        Demographics(patient_id="\x01\x02garbage", patient_name="12345", accession="  ACC-7  "), now=NOW)
    assert (clean.patient_id, clean.patient_name, clean.accession) == (None, None, "ACC-7")
    assert notes == ["patient id is not readable text; dropped", "patient name is not readable text; dropped"]


@pytest.mark.parametrize(("code", "sex", "noted"), [
    ("M", Sex.MALE, False), ("female", Sex.FEMALE, False), ("U", Sex.UNKNOWN, False),
    ("unknown", Sex.UNKNOWN, False), (None, Sex.UNKNOWN, False), ("XX", Sex.UNKNOWN, True), ("9", Sex.UNKNOWN, True),
])
def test_unknown_sex_codes_are_dropped_with_a_note(code: str | None, sex: Sex, noted: bool) -> None:
    notes: list[str] = []
    assert parse_sex_noted(code, notes) is sex
    assert bool(notes) is noted


# --- through the readers, and into PID -------------------------------------------------------

def test_dicom_impossible_values_never_reach_pid(tmp_path: Path, ecg12: np.ndarray) -> None:
    from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru

    path = write_dicom_ecg(tmp_path / "ecg.dcm", [waveform_group(ecg12[[0, 1, 6, 7, 8, 9, 10, 11]],
                                                                 mdc_sources(["I", "II", "V1", "V2", "V3", "V4",
                                                                              "V5", "V6"]), fs=500, label="RHYTHM")])
    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.PatientBirthDate = "20250101"  # after the acquisition (2024-03-01)
    dataset.PatientAge = "330Y"
    dataset.PatientSex = "X"
    dataset.save_as(path)

    ecg = read_ecg(path)
    assert (ecg.demographics.birth_date, ecg.demographics.age_years, ecg.demographics.sex) == (None, None, Sex.UNKNOWN)
    notes = ecg.provenance["demographics_notes"]
    assert "sex code not recognised" in notes and "birth date is after the acquisition" in notes
    assert "age outside" in notes

    message = build_oru(OruStudy(study_id=1, demographics=ecg.demographics, placer_order_number="P1",
                                 filler_order_number="F1"), OruReport(labels=["Sinus rhythm"]), None, None,
                        result_status="P", endpoints=HL7Endpoints(), control_id="C1")
    pid = next(segment for segment in message.split("\r") if segment.startswith("PID|")).split("|")
    assert pid[7] == "" and pid[8] == "U"
    assert "2025" not in "|".join(pid)


def test_wfdb_impossible_age_is_dropped(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "rec", ecg12, ["I", "II", "III", "aVR", "aVL", "aVF",
                                                 "V1", "V2", "V3", "V4", "V5", "V6"], fs=500)
    text = header.read_text()
    header.write_text(text + "# Age: 330\n# Sex: Q\n")
    ecg = read_ecg(header)
    assert ecg.demographics.age_years is None and ecg.demographics.sex is Sex.UNKNOWN
    assert "age outside" in ecg.provenance["demographics_notes"]
    assert "sex code not recognised" in ecg.provenance["demographics_notes"]


def test_pdf_impossible_age_and_sex_code_are_dropped(tmp_path: Path) -> None:
    path = write_report_pdf(tmp_path / "report.pdf", ["Name: DOE^JANE  ID: 12345", "Age: 330  Sex: Z",
                                                      "Acquired: 2024-03-01 14:22"])
    ecg = read_ecg(path)
    assert ecg.demographics.patient_id == "12345"
    assert ecg.demographics.age_years is None and ecg.demographics.sex is Sex.UNKNOWN
    notes = ecg.provenance["demographics_notes"]
    assert "age outside" in notes and "sex code not recognised" in notes
