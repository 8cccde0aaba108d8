"""Celery tasks: thin wrappers that run `worker.stages` functions in a worker process.

    ecgwl.prepare(study_id)        queue prepare
    ecgwl.interpret_drain()        queue interpret: takes a batch of ready studies (see worker.dispatch)
    ecgwl.report(study_id)         queue report

Every task: builds (once per process) the pipeline context from the environment, runs the
stage function, and on the way out clears the study's "message pending" mark. Transient
errors (database or broker unreachable) are retried with exponential backoff and jitter;
any other error marks the study `failed` with the error type (an operator can re-queue it)
and the message is acknowledged: retrying a bug would only repeat it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from celery import Task, shared_task

from worker.context import PipelineContext, process_context
from worker.dispatch import TASK_INTERPRET_DRAIN, TASK_PREPARE, TASK_REPORT, CeleryDispatcher, Stage
from worker.stages import build_report, interpret_studies, mark_failed, prepare_study, transient_errors

log = logging.getLogger(__name__)


class StageTask(Task):
    """Delivery settings shared by the stage tasks (the app sets max_retries / backoff cap)."""

    autoretry_for = transient_errors()
    retry_backoff = 2  # seconds: 2, 4, 8, ... up to retry_backoff_max
    retry_jitter = True
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True


def _run(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int], work: Callable[[], object]) -> str:
    """Run a stage; transient errors propagate (Celery retries), others fail the studies."""
    try:
        outcome = work()
    except transient_errors():
        raise
    except Exception as exc:
        log.exception("%s of studies %s failed", stage.value, list(study_ids))
        mark_failed(ctx, study_ids, stage, exc)
        outcome = "failed"
    ctx.dispatcher.done(stage, study_ids)
    # What the worker log shows for the task: "done", or per outcome for a batch ("done=3").
    if isinstance(outcome, dict):
        counts = Counter(str(value) for value in outcome.values())
        return f"{len(outcome)} studies: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    return str(outcome)


@shared_task(name=TASK_PREPARE, base=StageTask)
def prepare_task(study_id: int) -> str:
    ctx = process_context()
    return _run(ctx, Stage.PREPARE, [study_id], lambda: prepare_study(ctx, study_id))


@shared_task(name=TASK_REPORT, base=StageTask)
def report_task(study_id: int) -> str:
    ctx = process_context()
    return _run(ctx, Stage.REPORT, [study_id], lambda: build_report(ctx, study_id))


@shared_task(name=TASK_INTERPRET_DRAIN, base=StageTask, bind=True)
def interpret_drain_task(self: Task) -> str:
    """Interpret the next batch of ready studies (nothing when another drain took them)."""
    ctx = process_context()
    dispatcher = ctx.dispatcher
    if not isinstance(dispatcher, CeleryDispatcher):
        raise RuntimeError("interpret_drain runs only with a broker (ECGWL_REDIS_URL)")
    task_id = self.request.id
    ids = dispatcher.take_batch(task_id, ctx.settings.interpret_batch_size)
    if not ids:
        return "empty"
    log.info("interpreting a batch of %d studies", len(ids))
    outcome = _run(ctx, Stage.INTERPRET, ids, lambda: interpret_studies(ctx, ids))
    dispatcher.finish_batch(task_id)
    return outcome
