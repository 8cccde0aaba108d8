"""The reconciler: finds studies whose message was lost and sends it again.

    reconcile(ctx, older_than=timedelta(minutes=10)) -> ReconcileReport

Postgres is the source of truth; Redis only carries messages. A study that sits in a
state waiting for a stage (`received`, `queued_prepare`, `queued_interpret`, or
`interpreted` waiting for its report) for longer than `older_than` may have lost its
message: Redis was flushed or restarted, or a process died between its commit and its
send. Such a study is enqueued again, unless the dispatcher knows a message for it is
still live (sent less than `visibility_timeout + older_than` ago, see
`worker.dispatch.CeleryDispatcher`), so a long but healthy queue is not doubled.
Each re-enqueue is audited (`study.requeued`, attempts + 1); a study enqueued
`max_attempts` times without getting further is marked `failed` for an operator.

Runs as `ecg-worklist reconcile`, every `reconcile_every_seconds` inside `watch`, and at
the start of an in-process batch (with `older_than=0`: nothing else is running then).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reports import audit, store
from reports.db import Study, StudyState
from worker.context import PipelineContext
from worker.dispatch import Stage

log = logging.getLogger(__name__)

ACTOR = "worker:reconcile"
S = StudyState
# The stage each waiting state is waiting for.
WAITING: dict[StudyState, Stage] = {
    S.RECEIVED: Stage.PREPARE,
    S.QUEUED_PREPARE: Stage.PREPARE,
    S.QUEUED_INTERPRET: Stage.INTERPRET,
    S.INTERPRETED: Stage.REPORT,
}


@dataclass
class ReconcileReport:
    requeued: dict[Stage, list[int]] = field(default_factory=lambda: {stage: [] for stage in Stage})
    failed: list[int] = field(default_factory=list)
    still_live: int = 0  # stale in the database, but their message is still out there

    @property
    def total_requeued(self) -> int:
        return sum(len(ids) for ids in self.requeued.values())

    def describe(self) -> str:
        parts = [f"{stage.value}: {len(ids)}" for stage, ids in self.requeued.items() if ids]
        text = f"re-enqueued {self.total_requeued} studies" + (f" ({', '.join(parts)})" if parts else "")
        if self.failed:
            text += f"; {len(self.failed)} failed after too many attempts"
        if self.still_live:
            text += f"; {self.still_live} waiting on a live message"
        return text


def _file_present(study: Study) -> bool:
    """A `received` study can only be queued once its file is where preparation reads it."""
    return Path(study.archive_path or study.source_path).is_file()


def _requeue_one(ctx: PipelineContext, study_id: int, expected: StudyState, stage: Stage,
                 report: ReconcileReport) -> bool:
    """Re-enqueue (or give up on) one study in its own short transaction; True if a message must be sent."""
    max_attempts = ctx.settings.max_attempts
    with ctx.session() as session:
        study = store.claim_study(session, study_id, expected)
        if study is None:
            return False  # it moved on since the query
        if expected is S.RECEIVED:
            if not _file_present(study):
                return False  # the watcher still has the file in its inbox and will resume it
            store.set_state(session, study_id, S.QUEUED_PREPARE, actor=ACTOR, details={"reconciled": True})
        elif study.attempts >= max_attempts:
            store.fail(session, study_id, f"{stage.value}: gave up after {study.attempts} attempts", actor=ACTOR)
            report.failed.append(study_id)
            return False
        elif expected is S.INTERPRETED:
            # No queued state for the report stage: the re-enqueue is recorded as its own event.
            audit.append(session, actor=ACTOR, action="study.requeued", entity_type="study", entity_id=study_id,
                         details={"stage": stage.value, "state": study.state})
        else:
            store.set_state(session, study_id, expected, actor=ACTOR, details={"reconciled": True})
    return True


def reconcile(ctx: PipelineContext, *, older_than: dt.timedelta, limit: int = 10_000) -> ReconcileReport:
    """Re-enqueue studies that waited longer than `older_than` without a live message."""
    report = ReconcileReport()
    pending = {stage: ctx.dispatcher.pending_since(stage) for stage in Stage}
    live_for = ctx.settings.visibility_timeout_seconds + older_than.total_seconds()
    now = time.time()
    with ctx.session() as session:
        stale = [(study.id, S(study.state)) for study in
                 store.studies_in_state_older_than(session, WAITING, older_than, limit=limit)]
    for study_id, state in stale:
        stage = WAITING[state]
        sent_at = (pending[stage] or {}).get(study_id)
        if sent_at is not None and now - sent_at < live_for:
            report.still_live += 1
            continue
        if _requeue_one(ctx, study_id, state, stage, report):
            report.requeued[stage].append(study_id)
    # Send after every commit, grouped per stage (the interpret stage batches them).
    ctx.dispatcher.prepare(report.requeued[Stage.PREPARE])
    ctx.dispatcher.interpret(report.requeued[Stage.INTERPRET])
    ctx.dispatcher.report(report.requeued[Stage.REPORT])
    if report.total_requeued or report.failed:
        log.warning("reconciler: %s", report.describe())
    return report
