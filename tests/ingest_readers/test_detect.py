"""Format detection by content, and the WFDB companion-file helpers the watcher relies on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ingest.readers.detect import (
    detect_format,
    is_record_complete,
    missing_companion_files,
    sidecar_path,
    wfdb_companion_files,
    wfdb_header_for,
)
from ingest.ecg import STANDARD_LEADS, SourceFormat
from tests.ingest_readers.builders import (
    mdc_sources,
    waveform_group,
    write_dicom_ecg,
    write_mat_record,
    write_scan_pdf,
    write_wfdb,
)


def test_dicom_is_recognised_by_content_whatever_its_name(tmp_path: Path, mortara_dicom_path: Path) -> None:
    renamed = tmp_path / "ecg_export.bin"
    shutil.copy(mortara_dicom_path, renamed)
    assert detect_format(mortara_dicom_path) is SourceFormat.DICOM
    assert detect_format(renamed) is SourceFormat.DICOM


def test_dicom_without_preamble_is_recognised(tmp_path: Path) -> None:
    group = waveform_group(np.zeros((12, 10)), mdc_sources(STANDARD_LEADS), fs=500, label="RHYTHM")
    path = write_dicom_ecg(tmp_path / "bare", [group], preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    assert detect_format(path) is SourceFormat.DICOM


def test_pdf_is_recognised_by_content(tmp_path: Path) -> None:
    pdf = write_scan_pdf(tmp_path / "scan.pdf")
    renamed = tmp_path / "scan.dat"
    shutil.copy(pdf, renamed)
    assert detect_format(pdf) is SourceFormat.PDF
    assert detect_format(renamed) is SourceFormat.PDF


def test_wfdb_header_is_recognised_by_its_record_line(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "rec", np.array(ecg12), STANDARD_LEADS)
    assert detect_format(header) is SourceFormat.WFDB
    # A .hea that is not a WFDB header (prose, or a record line without its signal lines).
    prose = tmp_path / "notes.hea"
    prose.write_text("this is not a header\n")
    short = tmp_path / "short.hea"
    short.write_text("# comment\nshort 12 500 5000\nshort.dat 16 1000/mV 16 0 0 0 0 I\n")
    assert detect_format(prose) is None
    assert detect_format(short) is None
    # The same text under another extension is not a record wfdb could find.
    shutil.copy(header, tmp_path / "rec.txt")
    assert detect_format(tmp_path / "rec.txt") is None


def test_unknown_and_empty_content_is_none(tmp_path: Path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "hello.pdf").write_text("hello, not a pdf")
    assert detect_format(tmp_path / "empty.dcm") is None
    assert detect_format(tmp_path / "random.dcm") is None
    assert detect_format(tmp_path / "hello.pdf") is None
    assert detect_format(tmp_path / "does-not-exist") is None


def test_companion_files_and_completeness(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_wfdb(tmp_path, "rec", np.array(ecg12), STANDARD_LEADS, fmt="212")
    dat = tmp_path / "rec.dat"
    assert wfdb_companion_files(header) == [dat]
    assert is_record_complete(header)
    assert dat.stat().st_size == 5000 * 12 * 3 // 2  # format 212: 3 bytes per 2 samples

    content = dat.read_bytes()
    dat.write_bytes(content[:1000])  # still being copied
    assert not is_record_complete(header)
    assert missing_companion_files(header) == [
        f"signal file rec.dat is truncated (1000 bytes, the header implies {len(content)})"]

    dat.unlink()  # not arrived yet
    assert not is_record_complete(header)
    assert missing_companion_files(header) == ["signal file rec.dat named in the header is missing"]


def test_mat_companion_includes_its_byte_offset(tmp_path: Path, ecg12: np.ndarray) -> None:
    header = write_mat_record(tmp_path, "A0001", np.array(ecg12), STANDARD_LEADS)
    assert wfdb_companion_files(header) == [tmp_path / "A0001.mat"]
    assert is_record_complete(header)
    assert (tmp_path / "A0001.mat").stat().st_size == 24 + 12 * 5000 * 2


def test_signal_file_finds_its_header(tmp_path: Path, ecg12: np.ndarray) -> None:
    write_wfdb(tmp_path, "rec", np.array(ecg12), STANDARD_LEADS)
    (tmp_path / "other.dat").write_bytes(b"\x00" * 10)
    assert wfdb_header_for(tmp_path / "rec.dat") == tmp_path / "rec.hea"
    assert wfdb_header_for(tmp_path / "other.dat") is None


def test_multi_segment_header_lists_its_segment_headers(tmp_path: Path) -> None:
    header = tmp_path / "multi.hea"
    header.write_text("multi/2 2 360 7200\nmulti_1 3600\nmulti_2 3600\n")
    assert detect_format(header) is SourceFormat.WFDB
    assert wfdb_companion_files(header) == [tmp_path / "multi_1.hea", tmp_path / "multi_2.hea"]
    assert not is_record_complete(header)


def test_sidecar_is_found_beside_the_file(tmp_path: Path) -> None:
    source = tmp_path / "scan.pdf"
    source.write_bytes(b"%PDF-1.4")
    assert sidecar_path(source) is None
    (tmp_path / "scan.json").write_text("{}")
    assert sidecar_path(source) == tmp_path / "scan.json"
    (tmp_path / "scan.pdf.json").write_text("{}")
    assert sidecar_path(source) == tmp_path / "scan.pdf.json"
