"""The Celery application: Redis broker, three queues, and the delivery guarantees the pipeline relies on.

    app = make_celery(settings)        # producers (watch, batch, reconcile) and workers alike

Queues (one worker kind each, see `ecg-worklist worker --queues ...`):
    prepare     CPU: read, resample, render, measure          prefork pool, one per core
    interpret   GPU: batches of studies through the interpreter  solo pool, one per GPU
    report      CPU: HL7 draft, outbox row, .hl7 file          prefork pool (light)

Guarantees, and why each setting is there. Recovery itself does not rest on the broker:
the database knows who holds each study (worker/leases.py) and the reconciler makes up
any message that is lost, so these settings only keep the normal path quick and cheap.
- `task_acks_late`: a message is acknowledged when its task ENDS, not when it starts, so a
  worker that dies mid-task leaves the message to be delivered again;
- `task_reject_on_worker_lost`: when a prefork child is killed, its task goes back to the
  queue at once; the next task finds the study's holder dead on this machine and takes it;
- `worker_prefetch_multiplier=1`: a worker holds one message per process, so a GPU
  worker busy with a batch does not sit on messages another worker could run, and a
  crash strands at most one message per process (the reconciler makes it up);
- Redis `visibility_timeout` (ECGWL_VISIBILITY_TIMEOUT_SECONDS, default 6 h): Redis gives a
  taken-but-unacknowledged message to another worker after this long. Keep it above the
  longest task (a GPU batch of an 8B model takes minutes), or a healthy task is woken twice
  (harmless: it finds its studies held or done). It plays no part in recovery;
- a lost broker connection does NOT cancel running tasks: they finish and save their
  results (the database is the record); their acknowledgement may be lost, which costs one
  empty task later;
- no Celery retries: a task waits out a database outage itself and frees a study with a
  retry time for other passing troubles (see worker.runner);
- JSON only: task arguments are study ids, never pickled objects or patient data;
- no result backend: results live in the database.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from worker.dispatch import TASK_INTERPRET_DRAIN, TASK_PREPARE, TASK_REPORT, Stage
from worker.settings import Settings


def make_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise ValueError("Celery needs a broker: set ECGWL_REDIS_URL (without it, tasks run in-process)")
    app = Celery("ecg-worklist", broker=settings.redis_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        broker_connection_retry_on_startup=True,
        # Running tasks finish when the broker connection drops (cancelling would kill the
        # child mid-study, which the leases would count as a death of the study's holder).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # Each queue its own direct exchange and routing key: a message for one queue can
        # never be bound into another.
        task_queues=[Queue(stage.value, Exchange(stage.value, type="direct"), routing_key=stage.value)
                     for stage in Stage],
        task_default_exchange=Stage.PREPARE.value,
        task_default_routing_key=Stage.PREPARE.value,
        task_default_queue=Stage.PREPARE.value,
        task_routes={
            TASK_PREPARE: {"queue": Stage.PREPARE.value},
            TASK_INTERPRET_DRAIN: {"queue": Stage.INTERPRET.value},
            TASK_REPORT: {"queue": Stage.REPORT.value},
        },
        enable_utc=True,
        timezone="UTC",
        worker_send_task_events=False,
    )
    return app
