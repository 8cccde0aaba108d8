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
