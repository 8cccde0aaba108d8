"""The PDF reader as a whole: a vector report with a text layer, a raster scan, sidecars, bad PDFs,
and the demographics helpers (labelled fields, dates). The parts have their own tests:
test_pdf_text.py (device fields), test_pdf_vector.py, test_pdf_raster.py, test_pdf_not_ecg.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import Sex, SourceFormat
from ingest.errors import IngestError
from ingest.readers.read import read_ecg
from ingest.readers.demographics import labelled_fields, parse_date
from ingest.readers.pdf import MAX_PAGE_WIDTH_PX
from ingest.readers.pdf.document import MM_PER_PT
from tests.ingest_readers.builders import write_encrypted_pdf, write_report_pdf, write_scan_pdf

HEADER = [
    "Name: DOE^JANE    Patient ID: MRN-778899    DOB: 1958-11-02",
    "Sex: Female   Accession: ACC-2024-0042   Device ID: 17",
    "Acquired: 2024-03-01 14:22:33   Referring physician: SMITH",
    "Vent. rate 72 BPM   PR interval 160 ms",
]


def test_vector_report_pages_signal_and_text_layer_demographics(tmp_path: Path, ecg12: np.ndarray) -> None:
    ecg = read_ecg(write_report_pdf(tmp_path / "report.pdf", HEADER, np.array(ecg12)))
    assert ecg.source_format is SourceFormat.PDF
    # The traces are paths: the signal comes back, 10 s at 500 Hz, each lead where it is printed.
    assert ecg.has_signal and ecg.sampling_rate_hz == 500 and ecg.signal.shape == (12, 5000)
    assert ecg.provenance["signal"] == "vector traces"
    assert np.isfinite(ecg.signal[1]).all()  # lead II: its panel and the 10 s rhythm strip
    assert np.isfinite(ecg.signal[0]).sum() == 1250  # lead I: its 2.5 s panel only
    assert len(ecg.pages) == 1
    page = ecg.pages[0]
    assert page.mode == "RGB"
    assert page.width == MAX_PAGE_WIDTH_PX  # landscape letter, 792 pt wide, scaled to 2200 px
    assert page.height == round(612 * MAX_PAGE_WIDTH_PX / 792)
    # The drawn traces are on the page: a good share of dark pixels below the header.
    pixels = np.asarray(page.convert("L"))
    assert (pixels[400:] < 128).mean() > 0.003
    demographics = ecg.demographics
    assert demographics.patient_name == "DOE^JANE"
    assert demographics.patient_id == "MRN-778899"  # "Device ID: 17" is not the patient
    assert demographics.birth_date == dt.date(1958, 11, 2)
    assert demographics.sex is Sex.FEMALE
    assert demographics.accession == "ACC-2024-0042"
    assert demographics.acquired_at == dt.datetime(2024, 3, 1, 14, 22, 33)
    assert ecg.provenance["text_layer"] == "yes"
    assert ecg.device_measurements.hr_bpm == 72 and ecg.device_measurements.pr_ms == 160


def test_display_coordinates_match_the_rendered_page(tmp_path: Path) -> None:
    """Words and paths are placed in display millimetres (the page's /Rotate applied): a lead
    label found there is dark in the rendered image at that place, for every rotation."""
    from ingest.readers.pdf.document import open_document, read_page
    from tests.ingest_readers.builders import synthetic_12lead
    from tests.ingest_readers.ecg_pages import write_ecg_pdf

    for rotate in (0, 90, 270):
        pdf = write_ecg_pdf(tmp_path / f"r{rotate}.pdf", synthetic_12lead(), 500.0, rotate=rotate)
        document = open_document(pdf)
        page = read_page(document[0], 0, pdf)
        document.close()
        assert (round(page.width_mm), round(page.height_mm)) == (279, 216)  # landscape as displayed
        label = next(word for word in page.words if word.text == "aVF")
        x0, y0, x1, y1 = (round(v * page.pixels_per_mm) for v in label.box)
        ink = np.asarray(page.image.convert("L"))[y0:y1 + 1, x0:x1 + 1]
        assert (ink < 100).any(), rotate
        assert 0.3 < MM_PER_PT < 0.36


def test_raster_scan_has_its_page_and_demographics_from_the_sidecar(tmp_path: Path) -> None:
    pdf = write_scan_pdf(tmp_path / "scan.pdf")
    (tmp_path / "scan.pdf.json").write_text(json.dumps({
        "patient_id": "SC-1", "patient_name": "ROE^RICHARD", "sex": "male",
        "birth_date": "1949-07-30", "acquired_at": "2023-12-24T08:15:00", "unrelated": "ignored",
    }))
    ecg = read_ecg(pdf)
    assert ecg.provenance["text_layer"] == "no"
    assert ecg.provenance["sidecar"] == "yes"
    assert len(ecg.pages) == 1 and ecg.pages[0].mode == "RGB"
    assert ecg.pages[0].width == MAX_PAGE_WIDTH_PX  # 11 in at 150 dpi, scaled to 200 dpi
    assert ecg.provenance["signal"] == "digitised from the page image"
    d = ecg.demographics
    assert (d.patient_id, d.patient_name, d.sex) == ("SC-1", "ROE^RICHARD", Sex.MALE)
    assert d.birth_date == dt.date(1949, 7, 30)
    assert d.acquired_at == dt.datetime(2023, 12, 24, 8, 15)


def test_sidecar_fills_only_what_the_text_layer_lacks(tmp_path: Path) -> None:
    pdf = write_report_pdf(tmp_path / "r.pdf", ["Name: DOE^JANE  Patient ID: 55"])
    (tmp_path / "r.json").write_text(json.dumps({"patient_id": "55", "patient_name": "OTHER^NAME",
                                                 "accession": "A-9"}))
    d = read_ecg(pdf).demographics
    assert (d.patient_id, d.patient_name, d.accession) == ("55", "DOE^JANE", "A-9")


def test_sidecar_naming_another_patient_is_rejected(tmp_path: Path) -> None:
    pdf = write_report_pdf(tmp_path / "r.pdf", ["Patient ID: 55"])
    (tmp_path / "r.pdf.json").write_text(json.dumps({"patient_id": "56"}))
    with pytest.raises(IngestError, match="sidecar names a different patient id"):
        read_ecg(pdf)


def test_unreadable_sidecar_is_rejected(tmp_path: Path) -> None:
    pdf = write_scan_pdf(tmp_path / "s.pdf", blur_px=3.0)
    (tmp_path / "s.pdf.json").write_text("{not json")
    with pytest.raises(IngestError, match=r"sidecar s\.pdf\.json is not readable JSON"):
        read_ecg(pdf)


def test_every_page_is_rendered_and_pages_without_ecg_are_left_out_of_the_signal(tmp_path: Path) -> None:
    """A real 3-page GE CardioSoft export: limb leads, chest leads, then extra leads."""
    ecg = read_ecg(Path(__file__).resolve().parents[1] / "data" / "pdf" / "ge_cardiosoft_2.pdf")
    assert len(ecg.pages) == 3 and ecg.provenance["pages"] == "3"
    assert ecg.signal.shape[1] == pytest.approx(2500, abs=3)  # 5 s at 500 Hz: pages 1 and 2, simultaneous


def test_pages_of_text_only_are_not_an_ecg(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "three.pdf"
    doc = canvas.Canvas(str(path))
    for number in range(3):
        doc.drawString(72, 720, f"page {number + 1}")
        doc.showPage()
    doc.save()
    with pytest.raises(IngestError, match="no ECG found in this PDF"):
        read_ecg(path)


# --- bad input ---------------------------------------------------------------------------

def test_password_protected_pdf_is_rejected(tmp_path: Path) -> None:
    pdf = write_encrypted_pdf(tmp_path / "locked.pdf")
    with pytest.raises(IngestError) as caught:
        read_ecg(pdf)
    assert caught.value.path == str(pdf)
    assert caught.value.reason.startswith("password-protected PDF")


def test_broken_pdf_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref")
    with pytest.raises(IngestError) as caught:
        read_ecg(broken)
    assert caught.value.path == str(broken)
    assert caught.value.reason.startswith("unreadable PDF, damaged or without pages")


def _pdf_with_no_pages() -> bytes:
    """A well-formed PDF whose page tree is empty (with a correct cross-reference table)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_pdf_without_pages_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "nopages.pdf"
    empty.write_bytes(_pdf_with_no_pages())
    with pytest.raises(IngestError) as caught:
        read_ecg(empty)
    assert caught.value.path == str(empty)
    # pdfium refuses a document without pages at load time, like a damaged one.
    assert caught.value.reason.startswith("unreadable PDF, damaged or without pages")


# --- demographics helpers -----------------------------------------------------------------

def test_labelled_fields_split_a_line_holding_several_fields() -> None:
    fields = labelled_fields("Patient Name: DOE, JOHN Gender: M Birth date: 02.01.1970 MRN: 12 Date: 2024-01-05")
    assert fields == {"patient_name": "DOE, JOHN", "sex": "M", "birth_date": "02.01.1970",
                      "patient_id": "12", "acquired": "2024-01-05"}


@pytest.mark.parametrize(("text", "expected"), [
    ("1970-01-02", dt.date(1970, 1, 2)), ("19700102", dt.date(1970, 1, 2)),
    ("02.01.1970", dt.date(1970, 1, 2)), ("02-Jan-1970", dt.date(1970, 1, 2)),
    ("Jan 2, 1970", dt.date(1970, 1, 2)), ("25/12/1970", dt.date(1970, 12, 25)),
    ("12/25/1970", dt.date(1970, 12, 25)), ("03/04/1970", None), ("1970-02-30", None), ("unknown", None),
])
def test_dates_are_parsed_only_when_unambiguous(text: str, expected: dt.date | None) -> None:
    assert parse_date(text) == expected


def test_ambiguous_birth_date_is_left_empty_with_a_note(tmp_path: Path) -> None:
    ecg = read_ecg(write_report_pdf(tmp_path / "amb.pdf", ["Name: X^Y  DOB: 03/04/1970"]))
    assert ecg.demographics.birth_date is None
    assert "birth date in the text is ambiguous" in ecg.provenance["demographics_notes"]


def test_family_and_given_name_fields_make_one_name() -> None:
    from ingest.readers.demographics import demographics_from_text

    demographics, _ = demographics_from_text("Last Name: DOE  First Name: JANE  ID: 5\nGender: F")
    assert (demographics.patient_name, demographics.patient_id, demographics.sex) == ("DOE^JANE", "5", Sex.FEMALE)
