"""How one stage hands studies to the next: through Redis/Celery, or in this process.

    dispatcher.prepare([study_id, ...])     CPU queue `prepare`: one task per study
    dispatcher.interpret([study_id, ...])   GPU queue `interpret`: studies grouped into batches
    dispatcher.report([study_id, ...])      queue `report`: one task per study
    dispatcher.done(stage, [study_id, ...]) a stage's task for these studies has ended

Both dispatchers are called only AFTER the study's new state is committed, so the
database is always at least as far along as the queue (Postgres is the source of truth;
a message lost between the commit and the send is found by the reconciler).

`CeleryDispatcher` (ECGWL_REDIS_URL set) sends task messages by name, so the watcher and
the batch command never import the heavy stage code. It also keeps, per stage, a Redis
sorted set of the studies that have a live message (score: when it was sent); the
reconciler re-enqueues a stale study only when its entry is missing (Redis was flushed
or restarted) or older than the visibility timeout (the message should have come back).

Batching for the GPU: `interpret` appends the ids to the Redis list `ecgwl:interpret:ready`
and sends one small "drain" task per call to the `interpret` queue. The GPU worker (solo
pool, one task at a time) takes a drain task, moves up to `interpret_batch_size` ids from
the list into an in-flight list named after that task, and interprets them as ONE batch.
While the GPU is busy, ids pile up, so the next drain takes a full batch; when it is idle
a lone study goes at once. If the worker dies mid-batch, Redis re-delivers the drain task
(acks_late) with the same task id, and it resumes the ids of its in-flight list. Drain
tasks that find the list empty end at once.

`InProcessDispatcher` (no broker: the embedded default) keeps the same three queues in
memory and `run_until_idle` calls the SAME stage functions (`worker.stages`) directly:
prepare each study, interpret in batches of `interpret_batch_size`, build each report.
This is a tiny in-process runner, not Celery's eager mode: eager mode would run each
`interpret` at the moment it is sent, one study at a time, and never batch.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import redis
    from celery import Celery

    from worker.context import PipelineContext

log = logging.getLogger(__name__)


class Stage(StrEnum):
    PREPARE = "prepare"
    INTERPRET = "interpret"
    REPORT = "report"


# Celery task names (worker/tasks.py registers them) and Redis keys.
TASK_PREPARE = "ecgwl.prepare"
TASK_INTERPRET_DRAIN = "ecgwl.interpret_drain"
TASK_REPORT = "ecgwl.report"
READY_KEY = "ecgwl:interpret:ready"
INFLIGHT_PREFIX = "ecgwl:interpret:inflight:"
PENDING_PREFIX = "ecgwl:pending:"


class Dispatcher(Protocol):
    def prepare(self, study_ids: Sequence[int]) -> None: ...

    def interpret(self, study_ids: Sequence[int]) -> None: ...

    def report(self, study_ids: Sequence[int]) -> None: ...

    def done(self, stage: Stage, study_ids: Sequence[int]) -> None: ...

    def pending_since(self, stage: Stage) -> dict[int, float] | None:
        """Studies with a live message for `stage` -> when it was sent; None if not tracked."""
        ...


def pending_key(stage: Stage) -> str:
    return f"{PENDING_PREFIX}{stage.value}"


# Moves up to ARGV[1] ids from the ready list into the task's in-flight list, atomically,
# so no id is ever only in this process's memory. Returns the ids moved (or nil).
_TAKE_BATCH = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if ids then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return ids
"""


class CeleryDispatcher:
    """Sends stage tasks to Redis queues (the production path)."""

    def __init__(self, app: Celery, redis_client: redis.Redis, *, inflight_ttl_seconds: int) -> None:
        self.app = app
        self.redis = redis_client
        self.inflight_ttl_seconds = inflight_ttl_seconds
        self._take_batch = redis_client.register_script(_TAKE_BATCH)

    def _mark_pending(self, stage: Stage, study_ids: Sequence[int]) -> None:
        if not study_ids:
            return
        now = time.time()
        self.redis.zadd(pending_key(stage), {str(i): now for i in study_ids})

    def prepare(self, study_ids: Sequence[int]) -> None:
        self._mark_pending(Stage.PREPARE, study_ids)
        for study_id in study_ids:
            self.app.send_task(TASK_PREPARE, args=[study_id], queue=Stage.PREPARE.value)

    def interpret(self, study_ids: Sequence[int]) -> None:
        if not study_ids:
            return
        self._mark_pending(Stage.INTERPRET, study_ids)
        self.redis.rpush(READY_KEY, *[str(i) for i in study_ids])
        self.app.send_task(TASK_INTERPRET_DRAIN, queue=Stage.INTERPRET.value)

    def report(self, study_ids: Sequence[int]) -> None:
        self._mark_pending(Stage.REPORT, study_ids)
        for study_id in study_ids:
            self.app.send_task(TASK_REPORT, args=[study_id], queue=Stage.REPORT.value)

    def done(self, stage: Stage, study_ids: Sequence[int]) -> None:
        if study_ids:
            self.redis.zrem(pending_key(stage), *[str(i) for i in study_ids])

    def pending_since(self, stage: Stage) -> dict[int, float]:
        return {int(member): score for member, score in self.redis.zscan_iter(pending_key(stage))}

    def take_batch(self, task_id: str, limit: int) -> list[int]:
        """The ids the drain task `task_id` interprets: its in-flight list, else up to `limit` ready ids."""
        inflight = INFLIGHT_PREFIX + task_id
        ids = self.redis.lrange(inflight, 0, -1)
        if not ids:
            ids = self._take_batch(keys=[READY_KEY, inflight], args=[limit, self.inflight_ttl_seconds]) or []
        return list(dict.fromkeys(int(i) for i in ids))  # unique, in order

    def finish_batch(self, task_id: str) -> None:
        self.redis.delete(INFLIGHT_PREFIX + task_id)


# Called after each in-process step with the stage and each study's outcome ("done", ...).
ProgressCallback = Callable[[Stage, dict[int, str]], None]


class InProcessDispatcher:
    """The embedded default: queues in memory, drained by `run_until_idle` in this process."""

    def __init__(self) -> None:
        self.queues: dict[Stage, deque[int]] = {stage: deque() for stage in Stage}

    def prepare(self, study_ids: Sequence[int]) -> None:
        self.queues[Stage.PREPARE].extend(study_ids)

    def interpret(self, study_ids: Sequence[int]) -> None:
        self.queues[Stage.INTERPRET].extend(study_ids)

    def report(self, study_ids: Sequence[int]) -> None:
        self.queues[Stage.REPORT].extend(study_ids)

    def done(self, stage: Stage, study_ids: Sequence[int]) -> None:
        """Nothing to clear: a message in memory is gone once taken."""

    def pending_since(self, stage: Stage) -> None:
        return None

    @property
    def idle(self) -> bool:
        return not any(self.queues.values())

    def _take(self, stage: Stage, limit: int) -> list[int]:
        queue = self.queues[stage]
        taken: list[int] = []
        while queue and len(taken) < limit:
            study_id = queue.popleft()
            if study_id not in taken:
                taken.append(study_id)
        return taken

    def _next(self, batch_size: int) -> tuple[Stage, list[int]]:
        """Reports first; an interpret batch as soon as it is full (or nothing is left to
        prepare); else prepare the next study. So the interpreter gets full batches, and a
        stopped run leaves at most one batch of studies half-way."""
        if self.queues[Stage.REPORT]:
            return Stage.REPORT, self._take(Stage.REPORT, 1)
        waiting = len(set(self.queues[Stage.INTERPRET]))
        if waiting >= batch_size or (waiting and not self.queues[Stage.PREPARE]):
            return Stage.INTERPRET, self._take(Stage.INTERPRET, batch_size)
        return Stage.PREPARE, self._take(Stage.PREPARE, 1)

    def run_until_idle(self, ctx: PipelineContext, *, on_progress: ProgressCallback | None = None) -> None:
        """Run every queued stage until all three queues are empty.

        Preparation runs one study at a time, interpretation in batches of
        `interpret_batch_size`, reports one at a time, exactly as the Celery workers do;
        a failure marks its studies failed (see `worker.stages.run_stage`) and the rest go on.
        """
        from worker.stages import run_stage

        batch_size = max(1, ctx.settings.interpret_batch_size)
        while not self.idle:
            stage, ids = self._next(batch_size)
            outcomes = run_stage(ctx, stage, ids)
            if on_progress is not None:
                on_progress(stage, outcomes)
