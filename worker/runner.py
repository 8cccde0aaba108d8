"""Running one stage on leased studies: take them, hold them, run the stage, sort out what failed.

    run_stage(ctx, stage, study_ids, take_others=False) -> {study_id: Outcome}

The one way a stage runs, in a Celery task (`worker.tasks`, with `take_others=True`: a
message is a wake-up, any free study of the stage will do) and in this process (the
embedded runner in `worker.dispatch`). The rules are those of `worker/leases.py`:

    take leases       the named studies if free, then (take_others) the oldest free ones:
                      as many as the message names to prepare or report (a batch of
                      `prepare_batch_size` or `report_batch_size`), up to
                      `interpret_batch_size` to interpret
    a fuller batch    a Celery interpret task (take_others) that would take some studies but
                      less than a full batch first waits while another worker is preparing
                      studies, polling every BATCH_POLL_SECONDS, up to
                      `interpret_batch_wait_seconds`: a GPU worker that keeps up with the CPU
                      workers would otherwise read batches of one (measured before the wait:
                      94 of 97 batches). A worker that prepares too (one process for every
                      queue) is not waited for: no one else is preparing while it waits
    hand on           after an interpret batch, a message for the studies still waiting
                      (`hand_on_the_rest`), as the queue holds one interpret message at a time
    hold them         the heartbeat renews the leases while the stage runs
    run the stage     worker.stages.prepare_studies / interpret_studies / build_reports
    on an error       database unreachable  -> raised: the caller waits and runs the stage again
                      disk full, broker down -> each study freed with a retry time (Outcome.RETRY)
                      anything else          -> `failed` with the reason (a bug: retrying repeats it)
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence

from reports import leases as lease_sql
from reports.db import utcnow
from worker import leases
from worker.context import PipelineContext
from worker.dispatch import Stage, hand_on
from worker.failures import database_errors, retry_later_reason
from worker.leases import WAITING_FOR, StudyView
from worker.stages import ACTORS, Outcome, build_reports, interpret_studies, mark_failed, prepare_studies

log = logging.getLogger(__name__)
BATCH_POLL_SECONDS = 0.2


def retry_delay(ctx: PipelineContext, attempts: int) -> dt.timedelta:
    """Backoff for a study that has had `attempts` tries at its stage (1 = the first): base, doubling, capped."""
    base, cap = ctx.settings.retry_base_seconds, ctx.settings.retry_max_seconds
    return dt.timedelta(seconds=min(cap, base * 2 ** min(max(attempts - 1, 0), 20)))


def _schedule_retries(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int], reason: str) -> None:
    holder = ctx.leases.holder
    for study_id in study_ids:
        with ctx.session() as session:
            from reports.store import get_study

            # Locked here already: schedule_retry's own lock reads nothing again.
            attempts = get_study(session, study_id, for_update=True, content=False).attempts
            lease_sql.schedule_retry(session, study_id, holder=holder, retry_at=utcnow() + retry_delay(ctx, attempts),
                                     reason=f"{stage.value}: {reason}", actor=ACTORS[stage])
    log.warning("%s of %d studies: %s", stage.value, len(study_ids), reason)


def _run(ctx: PipelineContext, stage: Stage, held: list[StudyView]) -> dict[int, Outcome]:
    if stage is Stage.INTERPRET:
        return interpret_studies(ctx, [view.id for view in held], views=held)
    if stage is Stage.REPORT:
        return build_reports(ctx, held)
    return prepare_studies(ctx, held)


# Outcomes after which the study's lease is already over: its state moved on (done, quarantined)
# or it was freed with a retry time. A skipped study is still held, and is freed (so is a failed
# one: recording the failure may itself have failed).
_LEASE_ENDED = frozenset({Outcome.DONE, Outcome.QUARANTINED, Outcome.RETRY})


def run_stage(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int], *,
              take_others: bool = False) -> dict[int, Outcome]:
    """Run `stage` on the named studies (and, with `take_others`, on other free ones)."""
    wanted = list(dict.fromkeys(study_ids))
    # An interpret batch; else as many as the message names (a prepare or report batch), the named first.
    limit = max(1, ctx.settings.interpret_batch_size) if stage is Stage.INTERPRET else max(1, len(wanted))
    if stage is Stage.INTERPRET and take_others:
        wait_for_a_fuller_batch(ctx, limit)
    views = leases.take(ctx, stage, wanted, limit=limit, others=take_others)
    outcomes = {study_id: Outcome.SKIPPED for study_id in wanted}
    if not views:
        return outcomes
    held = [view.id for view in views]
    with leases.holding(ctx, held) as to_free:
        try:
            done = _run(ctx, stage, views)
        except database_errors():
            raise
        except Exception as exc:
            reason = retry_later_reason(exc)
            if reason is None:
                log.exception("%s of studies %s failed", stage.value, held)
                mark_failed(ctx, held, stage, exc)
                done = dict.fromkeys(held, Outcome.FAILED)
            else:
                _schedule_retries(ctx, stage, held, reason)
                done = dict.fromkeys(held, Outcome.RETRY)
        outcomes.update(done)
        to_free.difference_update(study_id for study_id, outcome in done.items() if outcome in _LEASE_ENDED)
    return outcomes


def wait_for_a_fuller_batch(ctx: PipelineContext, limit: int,
                            sleep: Callable[[float], None] = time.sleep) -> int:
    """Wait while some but fewer than `limit` studies are free to interpret and another holder
    is preparing studies, at most `interpret_batch_wait_seconds`; returns the number of polls
    slept. A task that finds none free does not wait: the next prepared study sends a message
    (none waits once this one runs). Nothing is held while waiting: a process that dies here
    loses nothing."""
    polls, waited = 0, 0.0
    while waited < ctx.settings.interpret_batch_wait_seconds:
        with ctx.session() as session:
            outlook = lease_sql.batch_outlook(session, ctx.leases.holder)
        if not 0 < outlook.free_to_interpret < limit or outlook.being_prepared_elsewhere == 0:
            break  # nothing to batch (the others' tasks will), a full batch, or nothing more coming
        sleep(BATCH_POLL_SECONDS)
        polls += 1
        waited += BATCH_POLL_SECONDS
    return polls


def hand_on_the_rest(ctx: PipelineContext) -> list[int]:
    """After an interpret batch: a drain for the free studies still waiting (unless one waits in
    the queue already, which takes them). Returns the studies named. A broker that cannot be
    reached now is logged: the reconciler sends the message once it is back (`dispatch.hand_on`)."""
    with ctx.session() as session:
        free = lease_sql.free_due(session, WAITING_FOR[Stage.INTERPRET],
                                  limit=max(1, ctx.settings.interpret_batch_size))
    ids = [study.study_id for study in free]
    hand_on(ctx, Stage.INTERPRET, ids)
    return ids


def run_stage_in_process(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int]) -> dict[int, Outcome]:
    """`run_stage` for the embedded runner: an unreachable database leaves the studies waiting
    (the next reconciler run, or the next `batch`, takes them again)."""
    try:
        return run_stage(ctx, stage, study_ids)
    except database_errors() as exc:
        log.warning("%s of studies %s: database unreachable (%s), left waiting", stage.value, list(study_ids),
                    type(exc).__name__)
        return dict.fromkeys(study_ids, Outcome.SKIPPED)
