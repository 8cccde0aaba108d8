"""The text layer of cart PDFs: device measurements, statements and demographics by layout.

Real PDFs (tests/data/pdf/, see its MANIFEST): GE CardioSoft, Schiller. GE MUSE, Philips and
Mortara layouts are written here by the tests (no real sample we may redistribute was found;
the MUSE page, tests/ingest_readers/muse_page.py, copies the geometry of two real MUSE exports
the MUSE rules were written on). Every field is read only with confidence: a garbled text
layer gives nothing, and garbage never reaches PID.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ingest.ecg import Sex
from ingest.readers.read import read_ecg
from tests.ingest_readers.builders import synthetic_12lead
from tests.ingest_readers.ecg_pages import write_ecg_pdf
from tests.ingest_readers.muse_page import MuseStyleText, write_muse_style_pdf

REAL = Path(__file__).resolve().parents[1] / "data" / "pdf"

# What each device printed (read off the page; see MANIFEST.md).
PRINTED = {
    "ge_cardiosoft_1.pdf": dict(hr_bpm=55, rr_ms=1082, pr_ms=190, qrs_ms=100, qt_ms=408, qtc_ms=390, p_axis_deg=66,
                                qrs_axis_deg=86, t_axis_deg=23),
    "ge_cardiosoft_2.pdf": dict(hr_bpm=75, rr_ms=804, pr_ms=158, qrs_ms=100, qt_ms=366, qtc_ms=408, p_axis_deg=68,
                                qrs_axis_deg=69, t_axis_deg=60),
    "schiller_1.pdf": dict(hr_bpm=63, rr_ms=948, pr_ms=170, qrs_ms=94, qt_ms=362, qtc_ms=373, p_axis_deg=53,
                           qrs_axis_deg=48, t_axis_deg=40),
}


@pytest.fixture(scope="module")
def real() -> dict[str, object]:
    return {name: read_ecg(REAL / name) for name in PRINTED}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_real_cart_pdf_measurements_are_the_printed_ones(real: dict, name: str) -> None:
    measured = real[name].device_measurements
    assert measured is not None
    printed = PRINTED[name]
    found = {field: getattr(measured, field) for field in printed}
    assert found == {field: float(value) for field, value in printed.items()}
    # Nothing the page does not print is invented.
    assert measured.qtc_fridericia_ms is None


def test_real_cart_pdfs_statements_and_whose_they_are(real: dict) -> None:
    schiller = real["schiller_1.pdf"].device_statements
    assert [s.text for s in schiller] == ["SINUSRHYTHMUS", "LAGETYP NORMAL", "SONST NORMALES EKG"]
    # "Unbestätigter Bericht": the device's own reading, not confirmed by a physician.
    assert all(s.confirmed is False for s in schiller)
    # CardioSoft prints "nicht befundet" and no interpretation: no statements.
    assert real["ge_cardiosoft_1.pdf"].device_statements == []
    assert {real[name].device_name for name in PRINTED} == {"GE CardioSoft", "Schiller"}


def test_real_cart_pdfs_demographics_by_layout(real: dict) -> None:
    cardiosoft = real["ge_cardiosoft_2.pdf"].demographics
    assert (cardiosoft.patient_id, cardiosoft.patient_name, cardiosoft.sex) == ("1282423", "testmann^test", Sex.FEMALE)
    assert cardiosoft.acquired_at == dt.datetime(2021, 2, 5, 13, 36, 10) and cardiosoft.age_years == 20
    schiller = real["schiller_1.pdf"].demographics
    assert (schiller.patient_id, schiller.patient_name, schiller.sex) == ("1282423", "test testmann", Sex.MALE)
    assert schiller.birth_date == dt.date(2001, 1, 1) and schiller.acquired_at == dt.datetime(2021, 2, 5, 13, 39, 33)


# --- GE MUSE layout, on a page the tests write (muse_page.py) -----------------------------------

MUSE_STATEMENTS = ("Sinus bradycardia, 竇性緩脈", "Incomplete left bundle branch block, 不完全性左側束枝傳導阻斷",
                   "*** Prolonged QT ***", "Abnormal ECG, 異常心電圖")


@pytest.fixture(scope="module")
def muse(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A MUSE-style page: "DOE, JANE  ID:500  2020/02/11 11:31:29  <site>", "1997/09/08 (23 歲)",
    Vent. rate 80, PR 146, QRS 84, QT/QTcB 362/417, P-R-T axes -5 34 11, four statements."""
    path = tmp_path_factory.mktemp("muse") / "muse.pdf"
    return read_ecg(write_muse_style_pdf(path, synthetic_12lead(), 500.0, MuseStyleText(statements=MUSE_STATEMENTS)))


def test_muse_layout_measurements_are_the_printed_ones(muse) -> None:
    """Values and units are words of their own, the axes three words in two alignments."""
    m = muse.device_measurements
    assert (m.hr_bpm, m.pr_ms, m.qrs_ms, m.qt_ms, m.qtc_ms) == (80, 146, 84, 362, 417)
    assert (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg) == (-5, 34, 11)
    assert m.qtc_fridericia_ms is None and m.rr_ms is None  # nothing the page does not print
    assert muse.device_name == "GE MUSE"  # from the document's title, as MUSE's "MUSE(R) Report"


def test_muse_layout_statements_column(muse) -> None:
    """The column right of the measurement block, in English and Chinese; "***" is emphasis, not text."""
    assert [s.text for s in muse.device_statements] == ["Sinus bradycardia, 竇性緩脈",
                                                        "Incomplete left bundle branch block, 不完全性左側束枝傳導阻斷",
                                                        "Prolonged QT", "Abnormal ECG, 異常心電圖"]


def test_muse_layout_demographics_from_the_unlabelled_first_line(muse) -> None:
    d = muse.demographics
    assert d.patient_id == "500"  # "ID:500" only: not the rest of the header line
    assert d.patient_name == "DOE^JANE"  # the first word of the line that holds "ID:"
    assert d.acquired_at == dt.datetime(2020, 2, 11, 11, 31, 29)
    assert d.birth_date == dt.date(1997, 9, 8) and d.age_years == 23  # as printed: "(23 歲)"


def test_muse_first_line_in_one_text_object_gives_no_identifier(tmp_path: Path) -> None:
    """The same first line written as one text object (the GE PDF whose header landed in
    PID-3): "500 2020/02/11 11:31:29 Demo Hospital ..." is no identifier, and the name and
    time are not guessed out of it either."""
    text = MuseStyleText(first_line_as_one_object=True)
    ecg = read_ecg(write_muse_style_pdf(tmp_path / "one-object.pdf", synthetic_12lead(), 500.0, text))
    d = ecg.demographics
    assert d.patient_id is None and d.patient_name is None and d.acquired_at is None
    assert "not a single clean identifier" in ecg.provenance["demographics_notes"]
    assert d.birth_date == dt.date(1997, 9, 8)  # its own line still reads


def _page(tmp_path: Path, name: str, header: list[str]) -> object:
    return read_ecg(write_ecg_pdf(tmp_path / name, synthetic_12lead(), 500.0, header=header))


def test_philips_style_block_with_its_axis_block(tmp_path: Path) -> None:
    """PageWriter prints one field a line and the axes under "--AXIS--" (written here: no real sample)."""
    ecg = _page(tmp_path, "philips.pdf", [
        "Rate 61      . Sinus rhythm ...................... normal P axis, V-rate 50- 99",
        "PR   161",
        "QRSD  75     . Borderline T abnormalities, anterior leads",
        "QT   368",
        "QTc  370",
        "--AXIS--     - BORDERLINE ECG -",
        "P     74",
        "QRS   52",
        "T     57",
        "Unconfirmed Diagnosis",
    ])
    m = ecg.device_measurements
    assert (m.hr_bpm, m.pr_ms, m.qrs_ms, m.qt_ms, m.qtc_ms) == (61, 161, 75, 368, 370)
    assert (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg) == (74, 52, 57)  # "QRS 52" under AXIS is no QRS duration


def test_mortara_style_labels_on_one_line(tmp_path: Path) -> None:
    """ELI-style "Label: value unit" fields side by side (written here: no real sample)."""
    ecg = _page(tmp_path, "mortara.pdf", [
        "ID: 12345678",
        "Name: DOE, JANE   Sex: Female   Age: 54",
        "Rate: 61 bpm   PR: 161 ms   QRSD: 75 ms   QT: 368 ms   QTcB: 370 ms   QTcF: 369 ms",
        "P-R-T axes: 74 52 57",
    ])
    m = ecg.device_measurements
    assert (m.hr_bpm, m.pr_ms, m.qrs_ms, m.qt_ms, m.qtc_ms, m.qtc_fridericia_ms) == (61, 161, 75, 368, 370, 369)
    assert (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg) == (74, 52, 57)
    d = ecg.demographics
    assert (d.patient_id, d.patient_name, d.sex, d.age_years) == ("12345678", "DOE^JANE", Sex.FEMALE, 54)


def test_values_out_of_range_or_contradictory_are_not_taken(tmp_path: Path) -> None:
    ecg = _page(tmp_path, "odd.pdf", ["Vent. rate 7 BPM   PR interval 900 ms   QRS duration 90 ms",
                                      "QRS duration 95 ms"])
    m = ecg.device_measurements
    assert m is None or (m.hr_bpm is None and m.pr_ms is None and m.qrs_ms is None)
    notes = ecg.provenance["text_notes"]
    assert "pr printed outside" in notes and "qrs printed with different values" in notes


def test_garbage_never_reaches_the_patient_id(tmp_path: Path) -> None:
    """A whole header line in one text object after "ID:" (the bug that put a GE PDF's header
    in PID-3) is not an identifier; nor is a name made of digits and symbols."""
    ecg = _page(tmp_path, "garbage.pdf", ["Patient ID: 500 2020/02/11 11:31:29 Chang Gung Memorial",
                                          "Name: 12:34:56 ;;; 0000"])
    assert ecg.demographics.patient_id is None and ecg.demographics.patient_name is None
    assert "not a single clean identifier" in ecg.provenance["demographics_notes"]


def test_unmapped_text_layer_is_not_read() -> None:
    """Fonts without a character map give control and private-use codes: nothing is read, not
    even the words that happen to look like fields."""
    from ingest.readers.pdf.document import PageContent, Word
    from ingest.readers.pdf.text import read_text_layer

    garbled = "".join(chr(code) for code in (0xE001, 0xE002, 0x0003, 0xE004))
    words = [Word(garbled, (10.0 + 20 * i, 10.0, 25.0 + 20 * i, 13.0)) for i in range(6)]
    words += [Word("ID:4711", (10.0, 20.0, 30.0, 23.0)), Word("Vent. rate 80 BPM", (40.0, 20.0, 80.0, 23.0))]
    page = PageContent(index=0, width_mm=279.4, height_mm=215.9, image=None, text="", words=words)
    findings = read_text_layer([page], [None])
    assert not findings.readable and findings.measurements is None
    assert findings.demographics.patient_id is None
    assert "cannot be read" in findings.notes[0]
