"""Celery tasks: thin wrappers that run a stage (`worker.runner.run_stage`) in a worker process.

    ecgwl.prepare(study_ids)             queue prepare: one batch (see worker.stages.prepare_studies)
    ecgwl.interpret_drain(study_ids)     queue interpret: one batch of free studies (see worker.dispatch)
    ecgwl.report(study_ids)              queue report: one batch of drafts (see worker.stages.build_reports)

A message is a wake-up (worker/leases.py, rule 4): each task takes the study it names if
that study is free, else the oldest free study of its stage, else does nothing. Every task
builds (once per process) the pipeline context from the environment and runs the stage.
When the database cannot be reached the task waits for it, with backoff, and runs the
stage again (every stage is idempotent); other errors are sorted out by the runner, so no
task raises for a study's sake and none is retried by Celery itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence

from celery import Task, shared_task

from worker.context import PipelineContext, process_context
from worker.dispatch import TASK_INTERPRET_DRAIN, TASK_PREPARE, TASK_REPORT, Stage
from worker.failures import database_errors
from worker.runner import hand_on_the_rest, run_stage
from worker.stages import Outcome

log = logging.getLogger(__name__)
_WAIT_CAP_SECONDS = 10.0
UNREACHABLE = "database unreachable"  # what a task that gave up waiting for the database returns


class StageTask(Task):
    """Delivery settings shared by the stage tasks (see worker/celery_app.py for why)."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True


def _run(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int]) -> str:
    """Run the stage, waiting out a database outage; what the worker log shows for the task."""
    delay, waited = 1.0, 0.0
    while True:
        try:
            outcomes = run_stage(ctx, stage, study_ids, take_others=True)
            break
        except database_errors() as exc:
            if waited >= ctx.settings.database_wait_seconds:
                log.error("%s: the database stayed unreachable for %.0f s; letting go (the leases run out "
                          "and the reconciler hands the studies on)", stage.value, waited)
                return UNREACHABLE
            log.warning("%s: database unreachable (%s); trying again in %.0f s", stage.value, type(exc).__name__,
                        delay)
            time.sleep(delay)
            waited += delay
            # Capped well under a lease: once the database is back, the holder renews before
            # the reconciler (which waits one lease after an outage) judges it.
            delay = min(delay * 2, _WAIT_CAP_SECONDS, max(0.5, ctx.settings.lease_seconds / 3))
    done = {study_id: outcome for study_id, outcome in outcomes.items() if outcome is not Outcome.SKIPPED}
    if not done:
        return "empty"
    counts = Counter(str(outcome) for outcome in done.values())
    return f"{len(done)} studies: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _named(study_ids: list[int] | int) -> list[int]:
    # One id: a message sent before preparation and reports were batched (a queue that outlived an upgrade).
    return [study_ids] if isinstance(study_ids, int) else list(study_ids)


@shared_task(name=TASK_PREPARE, base=StageTask)
def prepare_task(study_ids: list[int] | int) -> str:
    return _run(process_context(), Stage.PREPARE, _named(study_ids))


@shared_task(name=TASK_REPORT, base=StageTask)
def report_task(study_ids: list[int] | int) -> str:
    return _run(process_context(), Stage.REPORT, _named(study_ids))


@shared_task(name=TASK_INTERPRET_DRAIN, base=StageTask)
def interpret_drain_task(study_ids: list[int] | None = None) -> str:
    """Interpret the next batch of free studies, those named first (nothing when others took them),
    then hand on the studies still waiting (the queue holds one interpret message at a time)."""
    ctx = process_context()
    done = _run(ctx, Stage.INTERPRET, list(study_ids or []))
    if done != UNREACHABLE:
        try:
            hand_on_the_rest(ctx)
        except database_errors() as exc:  # the studies wait in the database; the reconciler sends for them
            log.warning("interpret: could not hand on the waiting studies (%s)", type(exc).__name__)
    return done
