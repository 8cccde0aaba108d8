"""`read_ecg` itself: dispatch by content, and one clear IngestError for files that are nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.ecg import SourceFormat
from ingest.errors import IngestError
from ingest.readers.read import read_ecg


def test_dispatch_is_by_content_not_extension(tmp_path: Path, mortara_dicom_path: Path) -> None:
    disguised = tmp_path / "ecg.pdf"  # a DICOM file with a misleading name
    shutil.copy(mortara_dicom_path, disguised)
    ecg = read_ecg(disguised)
    assert ecg.source_format is SourceFormat.DICOM
    assert ecg.source_path == str(disguised)


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(IngestError) as caught:
        read_ecg(empty)
    assert (caught.value.path, caught.value.reason) == (str(empty), "empty file (0 bytes)")
    assert str(caught.value) == f"{empty}: empty file (0 bytes)"


def test_unknown_content(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("Patient seen in clinic, ECG to follow.\n")
    with pytest.raises(IngestError) as caught:
        read_ecg(text)
    assert caught.value.path == str(text)
    assert caught.value.reason.startswith("unrecognised content")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="file not found"):
        read_ecg(tmp_path / "gone.dcm")
    with pytest.raises(IngestError, match="not a regular file"):
        read_ecg(tmp_path)
