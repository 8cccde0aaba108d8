"""The inbox scanner (ingest.intake.watch): a file is taken only when complete, WFDB records only
whole, formats recognised by content, sidecars carried along, orphans not kept forever."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ingest.ecg import SourceFormat
from ingest.intake.watch import UNRECOGNISED, InboxScanner, walk_records
from tests.worker.conftest import SAMPLES, copy_sample


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scanner_for(inbox: Path, clock: FakeClock, *, stable: float = 2.0, orphan: float = 60.0) -> InboxScanner:
    return InboxScanner([inbox], stable_seconds=stable, orphan_seconds=orphan, clock=clock)


def test_a_file_is_taken_only_once_size_and_mtime_are_stable(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock)
    inbox.mkdir()
    target = inbox / "ecg.dcm"
    data = (SAMPLES / "demo-dicom.dcm").read_bytes()
    target.write_bytes(data[: len(data) // 2])  # a sender half-way through writing
    assert scanner.scan() == []
    clock.now += 1.5
    with target.open("ab") as handle:  # it grows: the clock restarts
        handle.write(data[len(data) // 2:])
    assert scanner.scan() == []
    clock.now += 1.5
    assert scanner.scan() == []  # 1.5 s since the last change < 2 s
    clock.now += 1.0
    [arrival] = scanner.scan()
    assert arrival.main == target and arrival.source_format is SourceFormat.DICOM and arrival.problem is None


def test_temporary_names_are_ignored_until_renamed(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=0.0)
    inbox.mkdir()
    partial = inbox / "report.pdf.part"
    shutil.copy(SAMPLES / "demo-report.pdf", partial)
    (inbox / ".hidden.pdf").write_bytes(b"%PDF-1.4 not yet")
    assert scanner.scan() == []
    partial.rename(inbox / "report.pdf")
    [arrival] = scanner.scan()
    assert arrival.main.name == "report.pdf" and arrival.source_format is SourceFormat.PDF


def test_formats_are_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=0.0)
    inbox.mkdir()
    shutil.copy(SAMPLES / "demo-dicom.dcm", inbox / "export-0001.bin")
    shutil.copy(SAMPLES / "demo-report.pdf", inbox / "noextension")
    (inbox / "fake.dcm").write_text("this is a note, not an ECG")
    arrivals = {a.main.name: a for a in scanner.scan()}
    assert arrivals["export-0001.bin"].source_format is SourceFormat.DICOM
    assert arrivals["noextension"].source_format is SourceFormat.PDF
    assert arrivals["fake.dcm"].source_format is None and arrivals["fake.dcm"].problem == UNRECOGNISED


def test_a_wfdb_record_is_taken_only_with_its_signal_file(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=0.0, orphan=60.0)
    inbox.mkdir()
    shutil.copy(SAMPLES / "demo-wfdb.hea", inbox / "demo-wfdb.hea")
    assert scanner.scan() == []  # the header alone waits for its .dat
    data = (SAMPLES / "demo-wfdb.dat").read_bytes()
    (inbox / "demo-wfdb.dat").write_bytes(data[:1000])  # truncated: still not complete
    assert scanner.scan() == []
    (inbox / "demo-wfdb.dat").write_bytes(data)
    [arrival] = scanner.scan()
    assert arrival.source_format is SourceFormat.WFDB
    assert arrival.main.name == "demo-wfdb.hea"
    assert [p.name for p in arrival.record_files] == ["demo-wfdb.hea", "demo-wfdb.dat"]


def test_a_signal_file_without_header_waits_then_becomes_a_quarantine_item(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=0.0, orphan=60.0)
    inbox.mkdir()
    shutil.copy(SAMPLES / "demo-wfdb.dat", inbox / "lonely.dat")
    assert scanner.scan() == []
    clock.now += 61
    [arrival] = scanner.scan()
    assert arrival.main.name == "lonely.dat" and "without its header" in arrival.problem


def test_an_incomplete_record_is_quarantined_after_the_orphan_wait(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=0.0, orphan=60.0)
    inbox.mkdir()
    shutil.copy(SAMPLES / "demo-wfdb.hea", inbox / "demo-wfdb.hea")
    assert scanner.scan() == []
    clock.now += 61
    [arrival] = scanner.scan()
    assert arrival.problem.startswith("incomplete WFDB record") and "demo-wfdb.dat" in arrival.problem


def test_sidecars_travel_with_their_ecg(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=0.0)
    copy_sample("scan", inbox)
    copy_sample("wfdb", inbox)
    arrivals = {a.main.name: a for a in scanner.scan()}
    assert set(arrivals) == {"demo-scan.pdf", "demo-wfdb.hea"}
    assert [p.name for p in arrivals["demo-scan.pdf"].extra_files] == ["demo-scan.pdf.json"]
    assert [p.name for p in arrivals["demo-wfdb.hea"].extra_files] == ["demo-wfdb.json"]
    # The identity hash covers the ECG's own files, not the sidecar.
    assert all(p.suffix != ".json" for a in arrivals.values() for p in a.record_files)


def test_walk_records_is_read_only_and_finds_nested_records(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    for kind, sub in (("dicom", "2024/01"), ("wfdb", "2024/02"), ("pdf", "2024/02"), ("scan", "old")):
        copy_sample(kind, root / sub)
    (root / "old" / "readme.txt").write_text("not an ECG")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}
    arrivals = list(walk_records(root))
    usable = sorted(a.main.name for a in arrivals if a.problem is None)
    assert usable == ["demo-dicom.dcm", "demo-report.pdf", "demo-scan.pdf", "demo-wfdb.hea"]
    assert [a.main.name for a in arrivals if a.problem] == ["readme.txt"]
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}
    assert after == before


def test_a_file_that_vanishes_between_scans_is_forgotten(tmp_path: Path) -> None:
    inbox, clock = tmp_path / "inbox", FakeClock()
    scanner = scanner_for(inbox, clock, stable=2.0)
    inbox.mkdir()
    path = Path(shutil.copy(SAMPLES / "demo-report.pdf", inbox / "a.pdf"))
    scanner.scan()
    os.remove(path)
    clock.now += 5
    assert scanner.scan() == []
    shutil.copy(SAMPLES / "demo-report.pdf", path)  # back again: its stability clock starts anew
    assert scanner.scan() == []
