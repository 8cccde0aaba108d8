"""Taking inbox arrivals (worker.intake): register, COMMIT, archive, clear the inbox, queue;
duplicates, crash resumption and quarantine. In-process, on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.intake.archive import archive_folder, record_sha256
from ingest.intake.watch import InboxScanner
from reports.db import StudyState
from tests.worker.conftest import copy_sample
from tests.worker.helpers import audit_actions, audit_details, studies
from worker import intake
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.intake import Taken, take_arrival


def scan(ctx: PipelineContext):  # noqa: ANN201
    return InboxScanner(list(ctx.settings.inbox_dirs), stable_seconds=0.0).scan()


def test_a_new_ecg_is_registered_archived_removed_from_the_inbox_and_queued(ctx: PipelineContext) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    hea, dat, sidecar = copy_sample("wfdb", inbox)
    sha = record_sha256([hea, dat])
    [arrival] = scan(ctx)
    assert take_arrival(ctx, arrival) is Taken.NEW
    [study] = studies(ctx.engine)
    folder = archive_folder(ctx.settings.archive_dir, sha)
    assert study.sha256 == sha and study.state == StudyState.QUEUED_PREPARE
    assert study.archive_path == str(folder / "demo-wfdb.hea") and study.origin == "inbox"
    assert sorted(p.name for p in folder.iterdir()) == ["demo-wfdb.dat", "demo-wfdb.hea", "demo-wfdb.json"]
    assert list(inbox.iterdir()) == []
    assert list(ctx.dispatcher.queues[Stage.PREPARE]) == [study.id]
    assert audit_actions(ctx.engine, entity_type="study") == ["study.registered", "study.state"]


def test_the_same_file_dropped_again_makes_no_second_study(ctx: PipelineContext) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    copy_sample("dicom", inbox)
    [first] = scan(ctx)
    take_arrival(ctx, first)
    ctx.dispatcher.queues[Stage.PREPARE].clear()
    [path] = copy_sample("dicom", inbox)
    path.rename(inbox / "renamed-copy.dcm")  # same content, another name
    [again] = scan(ctx)
    assert take_arrival(ctx, again) is Taken.DUPLICATE
    assert len(studies(ctx.engine)) == 1
    assert list(inbox.iterdir()) == []
    assert not ctx.dispatcher.queues[Stage.PREPARE]
    assert audit_actions(ctx.engine).count("study.duplicate") == 1
    [details] = audit_details(ctx.engine, "study.duplicate")
    assert details["inbox"] == "inbox" and details["sha256"] == studies(ctx.engine)[0].sha256


def test_a_crash_between_commit_and_archive_is_resumed_without_a_second_study(
    ctx: PipelineContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    [path] = copy_sample("pdf", inbox)
    data = path.read_bytes()

    def crash(*_args: object, **_kwargs: object) -> None:
        raise OSError("power cut while copying")

    monkeypatch.setattr(intake, "archive_record", crash)
    [arrival] = scan(ctx)
    with pytest.raises(OSError):
        take_arrival(ctx, arrival)
    [study] = studies(ctx.engine)
    assert study.state == StudyState.RECEIVED  # committed before the copy
    assert path.read_bytes() == data  # and the inbox still holds the file
    monkeypatch.undo()
    [arrival] = scan(ctx)
    assert take_arrival(ctx, arrival) is Taken.RESUMED
    [study] = studies(ctx.engine)
    assert study.state == StudyState.QUEUED_PREPARE
    assert Path(study.archive_path).read_bytes() == data and not path.exists()


def test_unrecognised_files_are_quarantined_with_reason_and_audit_row(ctx: PipelineContext) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    inbox.mkdir(parents=True)
    bad = inbox / "corrupt.dcm"
    bad.write_bytes(b"\x00\x01garbage" * 50)
    key = record_sha256([bad])
    [arrival] = scan(ctx)
    assert take_arrival(ctx, arrival) is Taken.QUARANTINED
    folder = ctx.settings.quarantine_dir / key[:16]
    assert (folder / "corrupt.dcm").read_bytes() == b"\x00\x01garbage" * 50
    assert "unrecognised content" in (folder / "corrupt.dcm.reason").read_text()
    assert list(inbox.iterdir()) == [] and studies(ctx.engine) == []
    [details] = audit_details(ctx.engine, "file.quarantined")
    assert details["reason"].startswith("unrecognised content") and details["quarantine"] == key[:16]
    assert "corrupt" not in str(details)  # file names (which may name a patient) are not audited


def test_the_inbox_keeps_a_file_when_the_database_is_down(ctx: PipelineContext) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    [path] = copy_sample("dicom", inbox)
    [arrival] = scan(ctx)
    ctx.engine.dispose()
    Path(ctx.settings.effective_database_url.removeprefix("sqlite:///")).rename(ctx.settings.data_dir / "moved")
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
        take_arrival(ctx, arrival)
    assert path.exists()
    assert not any(ctx.settings.archive_dir.rglob("*.dcm"))


def test_the_embedded_watcher_takes_files_and_runs_the_stages_itself(ctx: PipelineContext) -> None:
    """No broker: `watch` registers, archives and then runs prepare/interpret/report in-process."""
    import threading
    import time

    from worker.watch_loop import watch

    inbox = ctx.settings.inbox_dirs[0]
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(ctx, stop), daemon=True)
    thread.start()
    try:
        copy_sample("wfdb", inbox)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and [s.state for s in studies(ctx.engine)] != ["awaiting_signoff"]:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert [s.state for s in studies(ctx.engine)] == ["awaiting_signoff"]
    assert list(inbox.iterdir()) == [] and not thread.is_alive()


@pytest.mark.parametrize("left_behind", [["demo-wfdb.dat", "demo-wfdb.json"], ["demo-wfdb.hea", "demo-wfdb.json"]])
def test_a_watcher_killed_between_unlinks_leaves_leftovers_that_are_removed_not_quarantined(
    ctx: PipelineContext, tmp_path: Path, left_behind: list[str],
) -> None:
    """The watcher archived a WFDB record and died after unlinking only some of its files: what
    is left looks like an orphan (a signal file without its header, or a header without its
    signal file), but every byte of it is in the study's archive, so it is removed, audited,
    and nothing lands in quarantine."""
    inbox = ctx.settings.inbox_dirs[0]
    originals = {path.name: path.read_bytes() for path in copy_sample("wfdb", tmp_path / "kept")}
    copy_sample("wfdb", inbox)
    [arrival] = scan(ctx)
    assert take_arrival(ctx, arrival) is Taken.NEW
    for name in left_behind:  # as if these unlinks never ran
        (inbox / name).write_bytes(originals[name])
    [leftover] = InboxScanner(list(ctx.settings.inbox_dirs), stable_seconds=0.0, orphan_seconds=0.0).scan()
    assert leftover.problem is not None  # the scanner sees an orphan
    assert take_arrival(ctx, leftover) is Taken.LEFTOVER
    assert list(inbox.iterdir()) == []
    assert not ctx.settings.quarantine_dir.exists() or not any(ctx.settings.quarantine_dir.iterdir())
    [study] = studies(ctx.engine)
    [details] = audit_details(ctx.engine, "file.leftover_removed")
    assert details["files"] == 2 and audit_actions(ctx.engine, entity_type="study", entity_id=study.id)[-1] \
        == "file.leftover_removed"


def test_an_orphan_that_differs_from_the_archived_record_is_still_quarantined(ctx: PipelineContext) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    copy_sample("wfdb", inbox)
    [arrival] = scan(ctx)
    take_arrival(ctx, arrival)
    (inbox / "demo-wfdb.dat").write_bytes(b"\x00\x01" * 500)  # same name, other content
    [orphan] = InboxScanner(list(ctx.settings.inbox_dirs), stable_seconds=0.0, orphan_seconds=0.0).scan()
    assert take_arrival(ctx, orphan) is Taken.QUARANTINED
    assert "file.leftover_removed" not in audit_actions(ctx.engine)


def _dicom_files(inbox: Path, count: int) -> list[Path]:
    """`count` DICOM ECGs of different content (the demo sample with another accession number)."""
    import pydicom

    from tests.worker.conftest import SAMPLES

    inbox.mkdir(parents=True, exist_ok=True)
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    paths = []
    for n in range(count):
        dataset.AccessionNumber = f"INTAKE-{n}"
        dataset.save_as(inbox / f"v{n}.dcm")
        paths.append(inbox / f"v{n}.dcm")
    return paths


def test_a_scan_takes_its_arrivals_together_and_the_same_content_twice_is_one_study(ctx: PipelineContext) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    _dicom_files(inbox, 3)
    (inbox / "w-again.dcm").write_bytes((inbox / "v1.dcm").read_bytes())  # scanned after v0-v2
    arrivals = sorted(scan(ctx), key=lambda arrival: arrival.main.name)
    outcomes = intake.take_arrivals(ctx, arrivals)
    assert outcomes == [Taken.NEW, Taken.NEW, Taken.NEW, Taken.DUPLICATE]
    assert [study.state for study in studies(ctx.engine)] == [StudyState.QUEUED_PREPARE] * 3
    assert list(ctx.dispatcher.queues[Stage.PREPARE]) == [study.id for study in studies(ctx.engine)]
    assert list(inbox.iterdir()) == []
    [details] = audit_details(ctx.engine, "study.duplicate")
    assert details["state"] == StudyState.RECEIVED  # its study was registered a moment before, in this scan


def test_an_arrival_the_database_refuses_waits_in_the_inbox_and_the_rest_are_taken(
    ctx: PipelineContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reports import store

    inbox = ctx.settings.inbox_dirs[0]
    _dicom_files(inbox, 4)
    register = store.register_studies

    def refuse_v2(session, wanted, **kwargs):  # noqa: ANN001, ANN202
        if any(entry.source_path.endswith("v2.dcm") for entry in wanted):
            raise ValueError("refused by a check of the database")
        return register(session, wanted, **kwargs)

    monkeypatch.setattr(store, "register_studies", refuse_v2)
    arrivals = sorted(scan(ctx), key=lambda arrival: arrival.main.name)
    outcomes = intake.take_arrivals(ctx, arrivals)
    assert outcomes[:2] == [Taken.NEW, Taken.NEW] and outcomes[3] is Taken.NEW
    assert isinstance(outcomes[2], ValueError) and "refused" in str(outcomes[2])
    assert sorted(path.name for path in inbox.iterdir()) == ["v2.dcm"]  # kept for the next scan
    assert [study.state for study in studies(ctx.engine)] == [StudyState.QUEUED_PREPARE] * 3
    monkeypatch.undo()
    assert intake.take_arrivals(ctx, scan(ctx)) == [Taken.NEW]


def test_an_arrival_whose_copy_fails_stays_received_in_the_inbox_and_the_rest_are_queued(
    ctx: PipelineContext, monkeypatch: pytest.MonkeyPatch,
) -> None:
    inbox = ctx.settings.inbox_dirs[0]
    paths = _dicom_files(inbox, 3)
    archive = intake.archive_record

    def full_for_v1(files, main, *args, **kwargs):  # noqa: ANN001, ANN202
        if main.name == "v1.dcm":
            raise OSError(28, "No space left on device")
        return archive(files, main, *args, **kwargs)

    monkeypatch.setattr(intake, "archive_record", full_for_v1)
    arrivals = sorted(scan(ctx), key=lambda arrival: arrival.main.name)
    outcomes = intake.take_arrivals(ctx, arrivals)
    assert outcomes[0] is Taken.NEW and outcomes[2] is Taken.NEW and isinstance(outcomes[1], OSError)
    assert [study.state for study in studies(ctx.engine)] == [
        StudyState.QUEUED_PREPARE, StudyState.RECEIVED, StudyState.QUEUED_PREPARE]
    assert list(inbox.iterdir()) == [paths[1]]
    monkeypatch.undo()
    assert intake.take_arrivals(ctx, scan(ctx)) == [Taken.RESUMED]
    assert [study.state for study in studies(ctx.engine)] == [StudyState.QUEUED_PREPARE] * 3
