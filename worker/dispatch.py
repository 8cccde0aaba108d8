"""How one stage hands studies to the next: through Redis/Celery, or in this process.

    dispatcher.prepare([study_id, ...])     CPU queue `prepare`: one message per prepare batch
    dispatcher.interpret([study_id, ...])   GPU queue `interpret`: one message per call, for a batch
    dispatcher.report([study_id, ...])      queue `report`: one message per report batch
    dispatcher.queued(stage)                messages waiting in that stage's queue (the reconciler counts)
    hand_on(ctx, stage, [study_id, ...])    send them once their state is committed; a broker that is
                                            down is logged and left to the reconciler

Both dispatchers are called only AFTER the study's new state is committed, so the
database is always at least as far along as the queue. A message is a wake-up, not the
work itself (worker/leases.py, rule 4): the task it starts takes its study if that study
is free, else the oldest free study of the stage, else nothing. A message lost between the
commit and the send, or with Redis, is made up by the reconciler, which compares the free
studies of each stage with `queued(stage)`.

`CeleryDispatcher` (ECGWL_REDIS_URL set) sends task messages by name, so the watcher and
the batch command never import the heavy stage code.

Batching for the GPU: `interpret` sends ONE "drain" message per call, naming the studies
it was called with, and none while a drain message is already waiting in the queue: that one
will take them. The GPU worker (solo pool, one task at a time) takes up to
`interpret_batch_size` free studies (those named first, then the oldest) and interprets
them as ONE batch, then hands on what is left (`worker.runner.hand_on_the_rest`: a drain for
the free studies still waiting, unless one waits already). So the queue holds one interpret
message however many studies wait (a nightly batch of 100,000 does not queue 100,000 wake-ups
that mostly find nothing), and the reconciler expects one (`hands_on_batches`).

Studies are prepared and their reports drafted in batches too (`worker.stages.prepare_studies`,
`build_reports`: one transaction to save a batch): `prepare` and `report` send one message per
`prepare_batch_size` / `report_batch_size` studies, and the task takes those, or as many of the
oldest free ones. The watcher and the batch command hand on the studies of a scan together
(`worker.intake.PrepareMessages`), so a burst of arrivals is prepared in batches while a study
that trickles in alone is a batch of one.

`InProcessDispatcher` (no broker: the embedded default) keeps the same three queues in
memory and `run_until_idle` calls the SAME stage runner (`worker.runner.run_stage`)
directly: prepare in batches of `prepare_batch_size`, interpret in batches of
`interpret_batch_size`, draft reports in batches of `report_batch_size`. This is a tiny
in-process runner, not Celery's eager mode: eager mode would run each `interpret` at the
moment it is sent, one study at a time, and never batch.
"""

from __future__ import annotations

import logging
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


# Celery task names (worker/tasks.py registers them).
TASK_PREPARE = "ecgwl.prepare"
TASK_INTERPRET_DRAIN = "ecgwl.interpret_drain"
TASK_REPORT = "ecgwl.report"
# kombu's Redis transport keeps a queue as one list per priority step: the queue's own name
# (no priority) and the name + "\x06\x16" + step for steps 3, 6, 9 (kombu.transport.redis).
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


class Dispatcher(Protocol):
    def prepare(self, study_ids: Sequence[int]) -> None: ...

    def interpret(self, study_ids: Sequence[int]) -> None: ...

    def report(self, study_ids: Sequence[int]) -> None: ...

    # Whether a message names a batch: one waiting interpret message serves every free study, a
    # prepare or report message a batch (see the module's docstring); else each study has its own place.
    hands_on_batches: bool

    def queued(self, stage: Stage) -> int:
        """How many messages wait in `stage`'s queue (taken-but-unfinished ones not counted)."""
        ...


class CeleryDispatcher:
    """Sends stage tasks to Redis queues (the production path)."""

    # An interpret task takes any free studies and hands on the rest: one waiting message is enough.
    hands_on_batches = True

    def __init__(self, app: Celery, redis_client: redis.Redis, *, prepare_batch_size: int = 1,
                 report_batch_size: int = 1) -> None:
        self.app = app
        self.redis = redis_client
        self.prepare_batch_size = max(1, prepare_batch_size)
        self.report_batch_size = max(1, report_batch_size)

    def prepare(self, study_ids: Sequence[int]) -> None:
        self._send_batches(TASK_PREPARE, Stage.PREPARE, study_ids, self.prepare_batch_size)

    def interpret(self, study_ids: Sequence[int]) -> None:
        if study_ids and self.queued(Stage.INTERPRET) == 0:  # a waiting drain takes these too
            self.app.send_task(TASK_INTERPRET_DRAIN, args=[list(study_ids)], queue=Stage.INTERPRET.value)

    def report(self, study_ids: Sequence[int]) -> None:
        self._send_batches(TASK_REPORT, Stage.REPORT, study_ids, self.report_batch_size)

    def _send_batches(self, task: str, stage: Stage, study_ids: Sequence[int], size: int) -> None:
        ids = list(study_ids)
        for first in range(0, len(ids), size):
            self.app.send_task(task, args=[ids[first:first + size]], queue=stage.value)

    def queued(self, stage: Stage) -> int:
        names = [stage.value] + [f"{stage.value}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return sum(int(length) for length in pipe.execute())


def hand_on(ctx: PipelineContext, stage: Stage, study_ids: Sequence[int]) -> None:
    """Send the messages of `stage` for studies whose new state is committed already: if the broker
    is down now, the reconciler sends them once it is back (worker/leases.py, rule 4)."""
    from worker.failures import retry_later_reason

    if not study_ids:
        return
    send = {Stage.PREPARE: ctx.dispatcher.prepare, Stage.INTERPRET: ctx.dispatcher.interpret,
            Stage.REPORT: ctx.dispatcher.report}[stage]
    try:
        send(study_ids)
    except Exception as exc:  # noqa: BLE001 - the database is the record; a lost message is made up
        if retry_later_reason(exc) is None:
            raise
        log.warning("could not send %d %s message(s) (%s); the reconciler will", len(study_ids), stage.value,
                    type(exc).__name__)


# Called after each in-process step with the stage and each study's outcome ("done", ...).
ProgressCallback = Callable[[Stage, dict[int, str]], None]


class InProcessDispatcher:
    """The embedded default: queues in memory, drained by `run_until_idle` in this process."""

    # Runs exactly the studies queued: every free study needs its own place in a queue.
    hands_on_batches = False

    def __init__(self) -> None:
        self.queues: dict[Stage, deque[int]] = {stage: deque() for stage in Stage}

    def prepare(self, study_ids: Sequence[int]) -> None:
        self.queues[Stage.PREPARE].extend(study_ids)

    def interpret(self, study_ids: Sequence[int]) -> None:
        self.queues[Stage.INTERPRET].extend(study_ids)

    def report(self, study_ids: Sequence[int]) -> None:
        self.queues[Stage.REPORT].extend(study_ids)

    def queued(self, stage: Stage) -> int:
        return len(set(self.queues[stage]))

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

    def _next(self, batch_size: int, report_batch_size: int, prepare_batch_size: int) -> tuple[Stage, list[int]]:
        """Reports first, in batches; an interpret batch as soon as it is full (or nothing is left to
        prepare); else prepare the next batch. So the interpreter gets full batches, and a
        stopped run leaves at most one batch of studies half-way."""
        if self.queues[Stage.REPORT]:
            return Stage.REPORT, self._take(Stage.REPORT, report_batch_size)
        waiting = len(set(self.queues[Stage.INTERPRET]))
        if waiting >= batch_size or (waiting and not self.queues[Stage.PREPARE]):
            return Stage.INTERPRET, self._take(Stage.INTERPRET, batch_size)
        return Stage.PREPARE, self._take(Stage.PREPARE, prepare_batch_size)

    def run_until_idle(self, ctx: PipelineContext, *, on_progress: ProgressCallback | None = None,
                       on_start: Callable[[Stage, list[int]], None] | None = None) -> None:
        """Run every queued stage until all three queues are empty.

        Preparation runs in batches of `prepare_batch_size`, interpretation in batches of
        `interpret_batch_size`, reports in batches of `report_batch_size`, as the Celery workers do;
        failures are sorted out by `worker.runner.run_stage` and the rest go on.
        """
        from worker.runner import run_stage_in_process

        batch_size = max(1, ctx.settings.interpret_batch_size)
        report_batch_size = max(1, ctx.settings.report_batch_size)
        prepare_batch_size = max(1, ctx.settings.prepare_batch_size)
        while not self.idle:
            stage, ids = self._next(batch_size, report_batch_size, prepare_batch_size)
            if on_start is not None:
                on_start(stage, list(ids))
            outcomes = run_stage_in_process(ctx, stage, ids)
            if on_progress is not None:
                on_progress(stage, outcomes)
