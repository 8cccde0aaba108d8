"""Taking an arrival into the system: register the study, keep the file, queue the work.

    take_arrivals(ctx, arrivals)        the watcher: inbox files -> studies + archive copies -> prepare queue
    register_batch_items(ctx, arrivals) the nightly batch: originals stay where they are -> studies -> queue
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path

import sqlalchemy as sa

from ingest.intake.archive import archive_folder, archive_record, file_sha256, record_sha256
from ingest.intake.quarantine import quarantine_files, quarantine_folder
from ingest.intake.watch import Arrival
from reports import audit, store
from reports.db import Study, StudyState
from worker.context import PipelineContext
from worker.dispatch import Stage, hand_on
from worker.failures import database_errors

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
    `queue`: where a new study goes for preparation (a scan's `prepare_messages`); None: its own message now.
    Raises what stopped it (the files then stay in the inbox)."""
    [outcome] = take_arrivals(ctx, [arrival], queue)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


# Arrivals registered in one transaction, and queued in one more. A burst of files costs two
# transactions per this many instead of two per file; more would hold the audit chain's head (which
# every worker's state change waits for) longer than a few milliseconds.
TAKE_CHUNK = 32


def take_arrivals(ctx: PipelineContext, arrivals: Sequence[Arrival],
                  queue: PrepareMessages | None = None) -> list[Taken | Exception]:
    """`take_arrival` for a scan's arrivals: how each was taken, or the error that stopped it (that
    arrival's files stay in the inbox, to be tried again on the next scan), in the arrivals' order.

    The crash-safe order of the module docstring holds for every arrival; what is shared is the
    database work: TAKE_CHUNK arrivals are registered in one transaction (`store.register_studies`),
    then each is archived and removed from the inbox on its own, then those are queued in one more.
    A chunk the database refuses is taken again one arrival at a time, so one arrival that cannot be
    registered does not hold back the rest; when the database cannot be reached at all, none is.
    """
    outcomes: list[Taken | Exception | None] = [None] * len(arrivals)
    usable: list[int] = []
    for n, arrival in enumerate(arrivals):
        if arrival.problem is not None or arrival.source_format is None:
            outcomes[n] = _attempt(partial(_take_unusable, ctx, arrival))
        else:
            usable.append(n)
    for first in range(0, len(usable), TAKE_CHUNK):
        chunk = usable[first:first + TAKE_CHUNK]
        for n, outcome in zip(chunk, _take_chunk(ctx, [arrivals[n] for n in chunk], queue), strict=True):
            outcomes[n] = outcome
    return _decided(outcomes)


def _attempt(action: Callable[[], Taken]) -> Taken | Exception:
    try:
        return action()
    except Exception as exc:  # the caller decides: the watcher logs it and tries again next scan
        return exc


def _take_unusable(ctx: PipelineContext, arrival: Arrival) -> Taken:
    """An arrival with a problem: the rest of a record taken before (removed), or quarantined."""
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


@dataclass
class _Taking:
    """One usable arrival on its way through `_take_chunk`."""

    arrival: Arrival
    sha256: str = ""
    registered: store.Registered | None = None
    outcome: Taken | Exception | None = None


def _take_chunk(ctx: PipelineContext, arrivals: Sequence[Arrival],
                queue: PrepareMessages | None) -> list[Taken | Exception]:
    takings = [_Taking(arrival) for arrival in arrivals]
    for taking in takings:
        try:
            taking.sha256 = record_sha256(taking.arrival.record_files)
        except Exception as exc:  # unreadable now (removed, permissions changed): next scan
            taking.outcome = exc
    hashed = [taking for taking in takings if taking.outcome is None]
    try:
        _register(ctx, hashed)
    except Exception as exc:
        if isinstance(exc, database_errors()) or len(hashed) == 1:  # none can be registered now: next scan
            for taking in hashed:
                taking.outcome = exc
        else:  # one of them is refused: register them one by one, so only that one waits
            for taking in hashed:
                try:
                    _register(ctx, [taking])
                except Exception as error:
                    taking.outcome = error
    # Committed: each study exists before its file moves. Now keep a durable copy of each.
    registered = [taking for taking in hashed if taking.outcome is None]
    for taking in registered:
        try:
            archive_record(taking.arrival.files, taking.arrival.main, ctx.settings.archive_dir, taking.sha256,
                           record_files=taking.arrival.record_files)
            _remove(taking.arrival.files)
        except Exception as exc:  # the study stays `received` and its files in the inbox: resumed next scan
            taking.outcome = exc
    archived = [taking for taking in registered if taking.outcome is None]
    try:
        queued = _queue_archived(ctx, archived)
    except Exception as exc:  # archived but not queued: the reconciler queues `received` studies
        for taking in archived:
            taking.outcome = exc
        queued = []
    for study_id in queued:
        _queue_for_preparation(ctx, study_id, queue)
    return _decided([taking.outcome for taking in takings])


def _decided(outcomes: Sequence[Taken | Exception | None]) -> list[Taken | Exception]:
    """The outcomes, every one of them set: each path above gives each arrival its outcome."""
    if any(outcome is None for outcome in outcomes):
        raise RuntimeError("an arrival was left without an outcome")  # a bug here, not a bad file
    return [outcome for outcome in outcomes if outcome is not None]


def _register(ctx: PipelineContext, takings: Sequence[_Taking]) -> None:
    """Register the arrivals' studies in one transaction (the archive path decided now)."""
    if not takings:
        return
    wanted = [store.NewStudy(sha256=taking.sha256, source_format=str(taking.arrival.source_format),
                             source_path=str(taking.arrival.main),
                             archive_path=str(archive_folder(ctx.settings.archive_dir, taking.sha256)
                                              / taking.arrival.main.name),
                             origin=taking.arrival.inbox.name)
              for taking in takings]
    with ctx.session() as session:
        registered = store.register_studies(session, wanted, actor=WATCH_ACTOR)
    for taking, study in zip(takings, registered, strict=True):
        taking.registered = study


def _queue_archived(ctx: PipelineContext, takings: Sequence[_Taking]) -> list[int]:
    """In one transaction, move each archived arrival's study from `received` to `queued_prepare`, or
    audit it as a duplicate drop (its content was known, or came twice in this chunk); sets each
    one's outcome and returns the studies to hand on to preparation."""
    if not takings:
        return []
    queued: list[int] = []
    with ctx.session() as session:
        # Locked in one SELECT: those still `received` (another watcher may have moved one since).
        still_received = set(store.claim_studies(
            session, [taking.registered.study.id for taking in takings
                      if taking.registered is not None and taking.registered.study.state == StudyState.RECEIVED],
            StudyState.RECEIVED))
        with audit.batched(session):  # the chunk's audit rows written in one statement
            for taking in takings:
                assert taking.registered is not None  # every archived arrival was registered
                study, arrival = taking.registered.study, taking.arrival
                if study.state != StudyState.RECEIVED or study.id in queued:
                    audit.append(session, actor=WATCH_ACTOR, action="study.duplicate", entity_type="study",
                                 entity_id=study.id, details={"sha256": taking.sha256, "inbox": arrival.inbox.name,
                                                              "state": study.state})
                    taking.outcome = Taken.DUPLICATE
                    continue
                if study.id in still_received:
                    store.set_state(session, study.id, StudyState.QUEUED_PREPARE, actor=WATCH_ACTOR)
                queued.append(study.id)
                taking.outcome = Taken.NEW if taking.registered.created else Taken.RESUMED
    for taking in takings:  # said once the transaction is committed
        study_id, arrival = taking.registered.study.id, taking.arrival  # type: ignore[union-attr]
        if taking.outcome is Taken.DUPLICATE:
            log.info("study %s: duplicate drop in inbox %s, no new study", study_id, arrival.inbox.name)
        else:
            log.info("study %s: %s from inbox %s queued for preparation", study_id,
                     arrival.source_format.value if arrival.source_format else "?", arrival.inbox.name)
    return queued


def register_batch_item(ctx: PipelineContext, arrival: Arrival, *, origin: str,
                        queue: PrepareMessages | None = None) -> Taken:
    """Register one ECG found by the batch walker and queue it (`queue`: as `take_arrival`); the
    original is only read."""
    [taken] = register_batch_items(ctx, [arrival], origin=origin, queue=queue)
    return taken


def register_batch_items(ctx: PipelineContext, arrivals: Sequence[Arrival], *, origin: str,
                         queue: PrepareMessages | None = None) -> list[Taken]:
    """Register the ECGs the batch walker found and queue them, in one transaction (the batch command
    gives TAKE_CHUNK at a time); how each was taken, in their order. The originals are only read.

    Already registered content is skipped (so a stopped batch resumes where it was);
    unusable items are counted, not copied or moved: the batch never alters its source.
    """
    outcomes = [Taken.UNUSABLE] * len(arrivals)
    usable = [n for n, arrival in enumerate(arrivals)
              if arrival.problem is None and arrival.source_format is not None]
    wanted = [store.NewStudy(sha256=record_sha256(arrivals[n].record_files),
                             source_format=str(arrivals[n].source_format),
                             source_path=str(arrivals[n].main.resolve()), archive_path=None, origin=origin)
              for n in usable]
    queued: list[int] = []
    with ctx.session() as session, audit.batched(session):  # the chunk's audit rows in one statement
        for n, registered in zip(usable, store.register_studies(session, wanted, actor=BATCH_ACTOR), strict=True):
            if not registered.created:
                # Registered before (by a batch, or by the watcher, which then archives and queues it),
                # by another process a moment ago, or listed twice in this batch.
                outcomes[n] = Taken.KNOWN
                continue
            store.set_state(session, registered.study.id, StudyState.QUEUED_PREPARE, actor=BATCH_ACTOR)
            queued.append(registered.study.id)
            outcomes[n] = Taken.NEW
    for study_id in queued:
        _queue_for_preparation(ctx, study_id, queue)
    return outcomes


def _queue_for_preparation(ctx: PipelineContext, study_id: int, queue: PrepareMessages | None) -> None:
    if queue is not None:
        queue.add(study_id)
    else:
        ctx.dispatcher.prepare([study_id])
