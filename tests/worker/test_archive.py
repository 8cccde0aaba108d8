"""The content-addressed archive and the quarantine (ingest.intake.archive, ingest.intake.quarantine)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ingest.intake.archive import archive_folder, archive_record, archived_intact, record_sha256
from ingest.intake.quarantine import quarantine_files
from tests.worker.conftest import SAMPLES, copy_sample


def test_a_single_file_hashes_like_sha256sum() -> None:
    path = SAMPLES / "demo-dicom.dcm"
    assert record_sha256([path]) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_wfdb_record_hash_covers_header_and_signal(tmp_path: Path) -> None:
    hea, dat, _sidecar = copy_sample("wfdb", tmp_path / "a")
    first = record_sha256([hea, dat])
    assert record_sha256([dat, hea]) == first  # order of the list does not matter
    copy_hea, copy_dat, _ = copy_sample("wfdb", tmp_path / "b")
    assert record_sha256([copy_hea, copy_dat]) == first  # same record elsewhere: same identity
    data = bytearray(copy_dat.read_bytes())
    data[100] ^= 0xFF
    copy_dat.write_bytes(bytes(data))
    assert record_sha256([copy_hea, copy_dat]) != first


def test_archive_record_keeps_files_together_under_their_hash(tmp_path: Path) -> None:
    hea, dat, sidecar = copy_sample("wfdb", tmp_path / "inbox")
    sha = record_sha256([hea, dat])
    root = tmp_path / "archive"
    main = archive_record([hea, dat, sidecar], hea, root, sha, record_files=[hea, dat])
    folder = root / sha[:2] / sha[2:4] / sha
    assert folder == archive_folder(root, sha) and main == folder / "demo-wfdb.hea"
    assert sorted(p.name for p in folder.iterdir()) == ["demo-wfdb.dat", "demo-wfdb.hea", "demo-wfdb.json"]
    assert archived_intact(folder, [hea, dat], sha)
    assert hea.exists() and dat.exists()  # the originals are the caller's to remove
    mtime = (folder / "demo-wfdb.dat").stat().st_mtime_ns
    archive_record([hea, dat, sidecar], hea, root, sha, record_files=[hea, dat])  # again: nothing rewritten
    assert (folder / "demo-wfdb.dat").stat().st_mtime_ns == mtime
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_damaged_archive_copy_is_repaired(tmp_path: Path) -> None:
    [path] = copy_sample("dicom", tmp_path / "inbox")
    sha = record_sha256([path])
    archived = archive_record([path], path, tmp_path / "archive", sha)
    archived.write_bytes(b"damaged")
    assert not archived_intact(archived.parent, [path], sha)
    archive_record([path], path, tmp_path / "archive", sha)
    assert archived.read_bytes() == path.read_bytes()


def test_a_source_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    [path] = copy_sample("pdf", tmp_path / "inbox")
    with pytest.raises(OSError, match="does not match"):
        archive_record([path], path, tmp_path / "archive", "0" * 64)


def test_quarantine_copies_files_and_writes_the_reason_beside_them(tmp_path: Path) -> None:
    bad = tmp_path / "inbox" / "broken.dcm"
    bad.parent.mkdir()
    bad.write_bytes(b"DICM? no")
    key = record_sha256([bad])
    reason_file = quarantine_files([bad], tmp_path / "quarantine", key, "unrecognised content")
    assert reason_file == tmp_path / "quarantine" / key[:16] / "broken.dcm.reason"
    assert (reason_file.parent / "broken.dcm").read_bytes() == bad.read_bytes()
    text = reason_file.read_text()
    assert text.startswith("unrecognised content\n") and "broken.dcm" in text
    assert bad.exists()  # copied, not moved


def test_copies_survive_a_failed_copy_without_a_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [path] = copy_sample("dicom", tmp_path / "inbox")
    sha = record_sha256([path])

    def broken_copy(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfileobj", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        archive_record([path], path, tmp_path / "archive", sha)
    folder = archive_folder(tmp_path / "archive", sha)
    assert not folder.exists() or list(folder.iterdir()) == []
