"""The reconciler: frees studies whose holder is gone and sends the messages that are missing.

    reconciler = Reconciler(ctx)            one per process (it remembers database outages)
    reconciler.run() -> ReconcileReport     every `reconcile_every_seconds` inside `watch`
    reconcile(ctx, received_after=...)      one run (the `reconcile` command, the start of a batch)

One run, in this order (the rules are those of `worker/leases.py`):

1. `received` studies older than `received_after` (registered and archived, but the watcher
   stopped before queueing them) whose file is in place are moved to `queued_prepare`.
2. Every lease on a waiting study is judged: run out, or (same machine) its process gone ->
   the study is freed (`study.holder_lost`, holder_deaths + 1), or quarantined at
   `poison_after` deaths. Not judged during one lease period after the database came back
   from an outage this process saw, so holders that were only waiting for it renew first.
3. Per stage, the free studies that may be taken now (retry time passed) are counted
   against the messages waiting in that stage's queue; the oldest free studies beyond the
   messages get one (the interpret stage: one per batch, suspects in smaller ones; through
   Celery one message in all, as each interpret task hands on what it leaves; the prepare and
   report stages through Celery: one per batch, suspects apart). Each re-sent study is
   audited (`study.requeued`, attempts + 1). A long but healthy queue has at least as many
   messages as the free studies make batches (interpret: at least one), so nothing is doubled.

Also runs at the start of an in-process batch (`received_after=0`: nothing else runs then).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from reports import audit, store
from reports import leases as lease_sql
from reports.db import StudyState, utcnow
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.failures import database_errors
from worker.leases import RECONCILE_ACTOR, STAGE_OF, WAITING_FOR, local_holder_alive, lose_holder

log = logging.getLogger(__name__)

S = StudyState


@dataclass
class ReconcileReport:
    received: list[int] = field(default_factory=list)  # queued for preparation
    holders_lost: list[int] = field(default_factory=list)  # freed: their holder was gone
    poisoned: list[int] = field(default_factory=list)  # quarantined: their holder died poison_after times
    requeued: dict[Stage, list[int]] = field(default_factory=lambda: {stage: [] for stage in Stage})
    holders_judged: bool = True  # False during the grace period after a database outage

    @property
    def total_requeued(self) -> int:
        return sum(len(ids) for ids in self.requeued.values())

    def describe(self) -> str:
        parts = [f"{stage.value}: {len(ids)}" for stage, ids in self.requeued.items() if ids]
        text = f"re-enqueued {self.total_requeued} studies" + (f" ({', '.join(parts)})" if parts else "")
        if self.received:
            text += f"; {len(self.received)} received studies queued"
        if self.holders_lost:
            text += f"; {len(self.holders_lost)} freed from a gone holder"
        if self.poisoned:
            text += f"; {len(self.poisoned)} quarantined as poison"
        if not self.holders_judged:
            text += "; holders not judged yet (the database was just unreachable)"
        return text


def _file_present(study_path: str | None) -> bool:
    return bool(study_path) and Path(study_path).is_file()


class Reconciler:
    """Runs the reconciler, remembering when this process last could not reach the database."""

    def __init__(self, ctx: PipelineContext) -> None:
        self.ctx = ctx
        self._database_lost = False
        self._judge_from = 0.0  # time.monotonic() before which leases are not judged

    def run(self, *, received_after: dt.timedelta | None = None) -> ReconcileReport:
        try:
            return self._run(received_after)
        except database_errors():
            self._database_lost = True
            raise

    def _run(self, received_after: dt.timedelta | None) -> ReconcileReport:
        ctx = self.ctx
        if self._database_lost:  # it answers again: give live holders one lease to renew
            self._database_lost = False
            self._judge_from = time.monotonic() + ctx.settings.lease_seconds
        report = ReconcileReport()
        after = received_after if received_after is not None else dt.timedelta(seconds=ctx.settings.reconcile_after_seconds)
        self._queue_received(after, report)
        if time.monotonic() >= self._judge_from:
            self._judge_holders(report)
        else:
            report.holders_judged = False
        self._send_missing(report)
        if report.total_requeued or report.holders_lost or report.poisoned or report.received:
            log.warning("reconciler: %s", report.describe())
        return report

    # 1. registered but never queued
    def _queue_received(self, older_than: dt.timedelta, report: ReconcileReport) -> None:
        ctx = self.ctx
        with ctx.session() as session:
            waiting = [(study.id, study.archive_path or study.source_path)
                       for study in store.studies_in_state_older_than(session, [S.RECEIVED], older_than)]
        for study_id, path in waiting:
            if not _file_present(path):
                continue  # the watcher still has the file in its inbox and will resume it
            with ctx.session() as session:
                if store.claim_study(session, study_id, S.RECEIVED) is not None:
                    store.set_state(session, study_id, S.QUEUED_PREPARE, actor=RECONCILE_ACTOR,
                                    details={"reconciled": True})
                    report.received.append(study_id)

    # 2. holders that are gone
    def _judge_holders(self, report: ReconcileReport) -> None:
        ctx = self.ctx
        now = utcnow()
        with ctx.session() as session:
            held = lease_sql.held(session)
        for lease in held:
            if lease.expires_at is not None and lease.expires_at < now:
                why = f"its lease ran out at {lease.expires_at.isoformat(timespec='seconds')}"
            elif ctx.settings.check_local_holders and local_holder_alive(lease.holder) is False:
                why = "its process on this machine is gone"
            else:
                continue
            lost = lose_holder(ctx, lease.study_id, lease.holder, why=why)
            if lost is not None:
                (report.poisoned if lost.quarantined else report.holders_lost).append(lease.study_id)

    # 3. free studies without a message
    def _send_missing(self, report: ReconcileReport) -> None:
        ctx = self.ctx
        batched = ctx.dispatcher.hands_on_batches  # a message names a batch (else one place per study)
        batch_sizes = {Stage.PREPARE: max(1, ctx.settings.prepare_batch_size) if batched else 1,
                       Stage.INTERPRET: max(1, ctx.settings.interpret_batch_size),
                       Stage.REPORT: max(1, ctx.settings.report_batch_size) if batched else 1}
        send = {Stage.PREPARE: ctx.dispatcher.prepare, Stage.INTERPRET: ctx.dispatcher.interpret,
                Stage.REPORT: ctx.dispatcher.report}
        for stage, state in WAITING_FOR.items():
            with ctx.session() as session:
                free = lease_sql.free_due(session, state)
            if not free:
                continue
            groups = _message_groups(free, batch_sizes[stage])
            if stage is Stage.INTERPRET and batched:
                groups = groups[:1]  # the task that takes these hands on the rest
            missing = len(groups) - ctx.dispatcher.queued(stage)
            if missing <= 0:
                continue
            to_send = [study_id for group in groups[:missing] for study_id in group]
            for study_id in to_send:
                self._audit_requeue(study_id, state)
            report.requeued[stage] += to_send
            for group in groups[:missing]:
                send[stage](group)

    def _audit_requeue(self, study_id: int, state: StudyState) -> None:
        with self.ctx.session() as session:
            study = store.claim_study(session, study_id, state)
            if study is None:
                return
            if state in store.QUEUED_STATES:
                store.set_state(session, study_id, state, actor=RECONCILE_ACTOR, details={"reconciled": True})
            else:  # `interpreted` has no queued state of its own: the re-send is its own event
                study.attempts += 1
                audit.append(session, actor=RECONCILE_ACTOR, action="study.requeued", entity_type="study",
                             entity_id=study_id, details={"stage": STAGE_OF[state].value, "state": state.value,
                                                          "attempts": study.attempts})


def _message_groups(free: list[lease_sql.FreeStudy], batch_size: int) -> list[list[int]]:
    """The messages the free studies need, oldest first: one per study (`batch_size` 1), or one per
    batch, a batch holding studies with the same number of holder deaths (at most
    `reports.leases.batch_limit` of them)."""
    if batch_size <= 1:
        return [[study.study_id] for study in free]
    by_deaths: dict[int, list[int]] = {}
    for study in free:
        by_deaths.setdefault(study.holder_deaths, []).append(study.study_id)
    groups = []
    for deaths in sorted(by_deaths, reverse=True):  # suspects first: they were waiting longest
        ids, size = by_deaths[deaths], lease_sql.batch_limit(batch_size, deaths)
        groups += [ids[i * size:(i + 1) * size] for i in range(math.ceil(len(ids) / size))]
    return groups


def reconcile(ctx: PipelineContext, *, received_after: dt.timedelta | None = None) -> ReconcileReport:
    """One reconciler run (see the module docstring)."""
    return Reconciler(ctx).run(received_after=received_after)
