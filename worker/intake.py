"""Taking an arrival into the system: register the study, keep the file, queue the work.

    take_arrival(ctx, arrival)          the watcher: inbox file -> study + archive copy -> prepare queue
    register_batch_item(ctx, arrival)   the nightly batch: original stays where it is -> study -> queue
    with prepare_messages(ctx) as queue  a scan's new studies handed to preparation a batch at a time

The watcher's order is what makes it crash-safe:

    sha256 -> INSERT study (unique sha256, archive path decided) -> COMMIT
           -> copy into archive/ab/cd/<sha256>/ (fsync, atomic rename) -> delete from inbox
           -> state queued_prepare (COMMIT) -> enqueue prepare

A crash at any point leaves either the inbox file (taken again on restart: the study
exists in state `received`, so it is resumed, not duplicated) or the archived copy.
Nothing is deleted from the inbox without a verified copy in the archive or quarantine.
The same content dropped again (a duplicate) makes no second study: the copy in the
archive is checked, the inbox file removed, and a `study.duplicate` audit row written.
Unrecognised or incomplete items are copied to quarantine with their reason and
audited (`file.quarantined`), then removed from the inbox, with one exception: the rest
of a record a watcher was killed while removing (e.g. a WFDB signal file whose header was
already unlinked) is byte for byte in the archive of the study it came in with, so it is
removed as a leftover (`file.leftover_removed`), not quarantined as an orphan.

Audit details carry hashes, states and the inbox's name, never file contents or names
of patients.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa

from ingest.intake.archive import archive_folder, archive_record, file_sha256, record_sha256
from ingest.intake.quarantine import quarantine_files, quarantine_folder
from ingest.intake.watch import Arrival
from reports import audit, store
from reports.db import Study, StudyState
from worker.context import PipelineContext
from worker.dispatch import Stage, hand_on

log = logging.getLogger(__name__)

WATCH_ACTOR = "ingest:watch"
BATCH_ACTOR = "ingest:batch"


class PrepareMessages:
    """The new studies of a scan or batch, handed to preparation `prepare_batch_size` at a time (one
    message per batch: `worker.stages.prepare_studies`); the rest when the scan ends. Each study is
    committed as `queued_prepare` before it is added, so a message that is never sent (a crash, the
    broker down) is made up by the reconciler."""

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self.size = max(1, ctx.settings.prepare_batch_size)
        self.waiting: list[int] = []

    def add(self, study_id: int) -> None:
        self.waiting.append(study_id)
        if len(self.waiting) >= self.size:
            self.send()

    def send(self) -> None:
        ids, self.waiting = self.waiting, []
        hand_on(self.ctx, Stage.PREPARE, ids)


@contextmanager
def prepare_messages(ctx: PipelineContext) -> Iterator[PrepareMessages]:
    """A `PrepareMessages` whose last, partly filled batch is sent when the block ends."""
    queue = PrepareMessages(ctx)
    try:
        yield queue
    finally:
        queue.send()


class Taken(StrEnum):
    NEW = "new"  # a new study, queued for preparation
    RESUMED = "resumed"  # a study registered before a crash, now archived and queued
    DUPLICATE = "duplicate"  # content already known: no second study
    QUARANTINED = "quarantined"  # unusable: copied to quarantine with its reason
    LEFTOVER = "leftover"  # the rest of a record already taken (a watcher killed while clearing it)
    KNOWN = "known"  # batch: already registered, skipped
    UNUSABLE = "unusable"  # batch: not an ECG this system reads (left where it is)


def _remove(paths: tuple[Path, ...]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def quarantine_arrival(ctx: PipelineContext, arrival: Arrival, reason: str) -> Path:
    """Copy an unusable arrival to quarantine with its reason, audit it, then clear the inbox."""
    key = arrival.identity()  # a link or FIFO is never opened: it is keyed by its place
    reason_file = quarantine_files(arrival.files, ctx.settings.quarantine_dir, key, reason, main=arrival.main)
    with ctx.session() as session:
        audit.append(session, actor=WATCH_ACTOR, action="file.quarantined", entity_type="file", entity_id=key,
                     details={"reason": reason, "inbox": arrival.inbox.name,
                              "quarantine": quarantine_folder(ctx.settings.quarantine_dir, key).name})
    _remove(arrival.files)
    log.warning("quarantined an item from inbox %s (sha256 %s): %s", arrival.inbox.name, key[:12], reason)
    return reason_file


def _taken_before(ctx: PipelineContext, arrival: Arrival) -> int | None:
    """The study whose archived record holds every file of this arrival, byte for byte, under
    the same name: the arrival is what a take cut short left behind. Looked up among the
    studies registered from this folder under the same record name ("x.hea" for "x.dat")."""
    stem = arrival.main.name.split(".", 1)[0]
    prefix = str(arrival.main.parent / stem) + "."
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 was never registered as a study
        return None
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with ctx.session() as session:
        candidates = session.execute(
            sa.select(Study.id, Study.archive_path)
            .where(Study.source_path.like(pattern, escape="\\"), Study.archive_path.is_not(None))
            .order_by(Study.id.desc()).limit(20)).all()
    for study_id, archive_path in candidates:
        folder = Path(archive_path).parent
        if all((folder / path.name).is_file() and file_sha256(folder / path.name) == file_sha256(path)
               for path in arrival.files):
            return study_id
    return None


def take_arrival(ctx: PipelineContext, arrival: Arrival, queue: PrepareMessages | None = None) -> Taken:
    """Register, archive and queue one complete arrival from an inbox (see the module docstring).
    `queue`: where a new study goes for preparation (a scan's `prepare_messages`); None: its own message now."""
    if arrival.problem is not None or arrival.source_format is None:
        study_id = _taken_before(ctx, arrival)
        if study_id is not None:
            with ctx.session() as session:
                audit.append(session, actor=WATCH_ACTOR, action="file.leftover_removed", entity_type="study",
                             entity_id=study_id, details={"inbox": arrival.inbox.name, "files": len(arrival.files),
                                                          "sha256": record_sha256(arrival.record_files)})
            _remove(arrival.files)
            log.info("study %s: removed %d leftover file(s) of its record from inbox %s", study_id,
                     len(arrival.files), arrival.inbox.name)
            return Taken.LEFTOVER
        quarantine_arrival(ctx, arrival, arrival.problem or "unrecognised content")
        return Taken.QUARANTINED
    sha = record_sha256(arrival.record_files)
    archived_main = archive_folder(ctx.settings.archive_dir, sha) / arrival.main.name
    with ctx.session() as session:
        study, created = store.register_study(
            session, sha256=sha, source_format=arrival.source_format.value, source_path=str(arrival.main),
            archive_path=str(archived_main), origin=arrival.inbox.name, actor=WATCH_ACTOR)
        study_id, state = study.id, study.state
    # Committed: the study exists before its file moves. Now keep a durable copy.
    archive_record(arrival.files, arrival.main, ctx.settings.archive_dir, sha, record_files=arrival.record_files)
    _remove(arrival.files)

    if state != StudyState.RECEIVED:
        with ctx.session() as session:
            audit.append(session, actor=WATCH_ACTOR, action="study.duplicate", entity_type="study",
                         entity_id=study_id, details={"sha256": sha, "inbox": arrival.inbox.name, "state": state})
        log.info("study %s: duplicate drop in inbox %s, no new study", study_id, arrival.inbox.name)
        return Taken.DUPLICATE
    with ctx.session() as session:
        if store.claim_study(session, study_id, StudyState.RECEIVED) is not None:
            store.set_state(session, study_id, StudyState.QUEUED_PREPARE, actor=WATCH_ACTOR)
    _queue_for_preparation(ctx, study_id, queue)
    log.info("study %s: %s from inbox %s queued for preparation", study_id, arrival.source_format.value,
             arrival.inbox.name)
    return Taken.NEW if created else Taken.RESUMED


def register_batch_item(ctx: PipelineContext, arrival: Arrival, *, origin: str,
                        queue: PrepareMessages | None = None) -> Taken:
    """Register one ECG found by the batch walker and queue it (`queue`: as `take_arrival`); the
    original is only read.

    Already registered content is skipped (so a stopped batch resumes where it was);
    unusable items are counted, not copied or moved: the batch never alters its source.
    """
    if arrival.problem is not None or arrival.source_format is None:
        return Taken.UNUSABLE
    sha = record_sha256(arrival.record_files)
    with ctx.session() as session:
        study, created = store.register_study(
            session, sha256=sha, source_format=arrival.source_format.value,
            source_path=str(arrival.main.resolve()), archive_path=None, origin=origin, actor=BATCH_ACTOR)
        if not created:
            # Registered before (by a batch, or by the watcher, which then archives and queues it),
            # or by another process a moment ago.
            return Taken.KNOWN
        store.set_state(session, study.id, StudyState.QUEUED_PREPARE, actor=BATCH_ACTOR)
        study_id = study.id
    _queue_for_preparation(ctx, study_id, queue)
    return Taken.NEW


def _queue_for_preparation(ctx: PipelineContext, study_id: int, queue: PrepareMessages | None) -> None:
    if queue is not None:
        queue.add(study_id)
    else:
        ctx.dispatcher.prepare([study_id])
