"""Input limits (ingest/readers/limits.py): each is checked before the allocation it bounds, and
a file past one is refused with a reason naming the file and the limit."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import pytest

from ingest.errors import IngestError
from ingest.readers.limits import (
    InputLimits,
    LimitExceeded,
    inflate_bounded,
    inflated_size,
)
from ingest.readers.read import read_ecg
from tests.faults.hostile_corpus import (
    MiB,
    SAMPLES,
    deflate_zeros,
    dicom_deflate_bomb,
    dicom_many_elements,
    pydicom_ecg,
    raw_pdf,
    sparse_file,
    wfdb_header,
)


def refused(path: Path, limits: InputLimits | None = None) -> IngestError:
    with pytest.raises(IngestError) as caught:
        read_ecg(path, limits or InputLimits())
    assert caught.value.path == str(path)
    return caught.value


def test_wfdb_without_a_sample_count_is_bounded_by_its_file_size(tmp_path: Path) -> None:
    header = wfdb_header(tmp_path / "big.hea", "big", nsamp="")
    sparse_file(tmp_path / "big.dat", 12 * 2 * 700_000)  # 700,000 samples per lead, no disk used
    error = refused(header)
    assert isinstance(error, LimitExceeded) and error.limit.startswith("max_samples_per_lead=")
    assert "700,000 samples per lead" in error.reason and "big.dat" in error.reason


def test_a_lower_limit_from_settings_is_honoured(tmp_path: Path) -> None:
    shutil.copyfile(SAMPLES / "demo-wfdb.hea", tmp_path / "demo-wfdb.hea")
    shutil.copyfile(SAMPLES / "demo-wfdb.dat", tmp_path / "demo-wfdb.dat")
    assert read_ecg(tmp_path / "demo-wfdb.hea").signal.shape == (12, 5000)
    error = refused(tmp_path / "demo-wfdb.hea", InputLimits(max_total_samples=59_999))
    assert "max_total_samples=59999" in error.reason


@pytest.mark.parametrize(("fs", "limit"), [("0.001", "min_sampling_rate_hz"), ("10000000", "max_sampling_rate_hz")])
def test_an_implausible_sampling_rate_is_refused_before_reading(tmp_path: Path, fs: str, limit: str) -> None:
    header = wfdb_header(tmp_path / "rate.hea", "rate", fs=fs)
    shutil.copyfile(SAMPLES / "demo-wfdb.dat", tmp_path / "rate.dat")
    error = refused(header)
    assert isinstance(error, LimitExceeded) and error.limit.startswith(limit)


def test_signal_files_come_only_from_the_headers_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(SAMPLES / "demo-wfdb.dat", elsewhere / "x.dat")
    record = tmp_path / "inbox" / "a"
    record.mkdir(parents=True)
    for name in ("../../elsewhere/x.dat", str(elsewhere / "x.dat")):
        error = refused(wfdb_header(record / "trav.hea", "trav", signal_file=name))
        assert "outside its own folder" in error.reason
    (record / "lnk.dat").symlink_to(elsewhere / "x.dat")
    error = refused(wfdb_header(record / "lnk.hea", "lnk"))
    assert "lnk.dat is a symbolic link" in error.reason


def test_pdf_pages_are_measured_before_they_are_rendered(tmp_path: Path) -> None:
    error = refused(raw_pdf(tmp_path / "tall.pdf", [(612, 14400)] * 2))
    assert error.limit.startswith("max_page_pixels") and "page 1 would render 2200 x 51765 px" in error.reason
    assert refused(raw_pdf(tmp_path / "many.pdf", [(792, 612)] * 21)).limit == "max_pdf_pages=20"
    assert refused(raw_pdf(tmp_path / "long.pdf", [(612, 1400)] * 8)).limit.startswith("max_total_page_pixels")
    image = raw_pdf(tmp_path / "image.pdf", [(792, 612)], content=b"q 792 0 0 612 0 0 cm /Im1 Do Q",
                    image=(100_000, 100_000))
    assert refused(image).limit.startswith("max_image_pixels")


def test_a_pdf_deflate_bomb_is_counted_not_inflated(tmp_path: Path) -> None:
    bomb = raw_pdf(tmp_path / "bomb.pdf", [(792, 612)], content=deflate_zeros(3 * MiB, byte=b" "),
                   content_filter=True)
    error = refused(bomb, InputLimits(max_decompressed_bytes=2 * MiB))
    assert error.limit == f"max_decompressed_bytes={2 * MiB}" and "object 4" in error.reason
    # Under the limit the same file is read: a blank page, which the PDF reader then refuses as no ECG.
    with pytest.raises(IngestError, match="no ECG found in this PDF"):
        read_ecg(bomb, InputLimits(max_decompressed_bytes=4 * MiB))


def test_dicom_sizes_are_checked_before_pydicom_decodes(tmp_path: Path) -> None:
    declared = pydicom_ecg(tmp_path / "declared.dcm", group_NumberOfWaveformSamples=2_000_000_000)
    assert refused(declared).limit.startswith("max_samples_per_lead")
    bomb = dicom_deflate_bomb(tmp_path / "bomb.dcm", 3 * MiB)
    assert refused(bomb, InputLimits(max_decompressed_bytes=2 * MiB)).limit.startswith("max_decompressed_bytes")
    many = dicom_many_elements(tmp_path / "many.dcm", 5000)
    assert refused(many, InputLimits(max_dicom_elements=4000)).limit == "max_dicom_elements=4000"
    huge = sparse_file(tmp_path / "huge.dcm", 100 * MiB, head=b"\0" * 128 + b"DICM")
    assert refused(huge).limit.startswith("max_file_bytes")


def test_the_sample_dicom_is_well_inside_the_element_limit(tmp_path: Path) -> None:
    ecg = read_ecg(SAMPLES / "demo-dicom.dcm", InputLimits(max_dicom_elements=2000))
    assert ecg.signal is not None


def test_multi_valued_identity_fields_are_refused_not_stringified(tmp_path: Path) -> None:
    error = refused(pydicom_ecg(tmp_path / "ids.dcm", PatientID="123\\456"))
    assert "PatientID has 2 values" in error.reason and "123" not in error.reason


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("AccessionNumber", "A1\r\nMSH|^~&|EVIL", "accession contains a line break"),
    ("PatientID", "12|34", "patient id contains the HL7 delimiter(s) |"),
])
def test_identifiers_that_would_break_hl7_are_refused(tmp_path: Path, field: str, value: str, expected: str) -> None:
    error = refused(pydicom_ecg(tmp_path / "bad.dcm", **{field: value}))
    assert expected in error.reason and "EVIL" not in error.reason


def test_inflate_helpers_stop_at_the_cap() -> None:
    data = zlib.compress(b"\0" * (5 * MiB))
    assert inflated_size(data, cap=6 * MiB) == 5 * MiB
    assert inflated_size(data, cap=4 * MiB) is None
    with pytest.raises(LimitExceeded):
        inflate_bounded(data, path=Path("x"), limits=InputLimits(max_decompressed_bytes=MiB))
    assert inflate_bounded(data, path=Path("x"), limits=InputLimits()) == b"\0" * (5 * MiB)


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.settings import Settings

    monkeypatch.setenv("ECGWL_INPUT_LIMITS__MAX_PDF_PAGES", "3")
    limits = Settings().input_limits
    assert limits.max_pdf_pages == 3 and limits.max_page_pixels == InputLimits().max_page_pixels
