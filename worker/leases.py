"""Who holds a study, and how the pipeline recovers whatever dies: the rules, in one place.

Postgres, not the broker, knows who is working on what. Redis messages only wake workers up.

THE RULES

1. Free or held. A study waiting for a stage (queued_prepare -> prepare, queued_interpret ->
   interpret, interpreted -> report) is either held by ONE worker process (its lease:
   `lease_holder` = "host:pid:start", `lease_expires_at` in the future) or free. A worker
   takes free studies in one short transaction (SELECT ... FOR UPDATE SKIP LOCKED, then its
   holder id and expiry), works outside any transaction, and saves its result in a
   transaction that checks the state again, moves it on and ends the lease.

2. Heartbeat. While it works, a process renews its leases every `heartbeat_seconds`, each
   time to now + `lease_seconds`, from a thread of its own, so a GPU batch that runs for
   minutes stays held for as long as its process lives.

3. A holder is gone when its lease ran out (it did not renew for `lease_seconds`: killed,
   frozen, its machine lost) or, for a holder on the reconciler's own machine, as soon as
   its process no longer exists. The reconciler (`worker/reconcile.py`) then frees the study:
   audit row `study.holder_lost`, `holder_deaths` + 1. A task whose own study is held by a
   dead process on its machine does the same at once (a killed prefork child's message
   comes straight back).

4. Messages are wake-ups. A task message names a study, but any free study of that stage
   will do: a task whose study is held or already done takes the oldest free one instead,
   or ends. So a lost message (Redis flushed or restarted, a worker killed with messages it
   had taken) loses no study: every `reconcile_every_seconds` the reconciler counts, per
   stage, the free studies and the messages waiting in the queue, and sends the ones
   missing (for the interpret stage through Celery, one: each batch hands on the rest; for
   the prepare and report stages one per batch; see `worker.dispatch`). A message too many costs
   one empty task. Redis's visibility timeout
   (long, for long GPU batches) plays no part in recovery.

5. Poison. A study whose holder died `poison_after` times (default 3) at the same stage is
   quarantined with that reason (audit row, `.reason` file) instead of being handed to
   another worker. A batch (of studies to prepare, a GPU batch, a batch of drafts) holds only
   studies with the same number of deaths: a full batch for none, an eighth of one after one death, a batch of one
   after two. So a poison ECG is alone by its third death, and the good ECGs that shared a
   batch with it never reach three.

6. Transient failures never end in `failed`. Database unreachable: the task waits for it
   (holding its message, up to `database_wait_seconds`) and carries on. Disk full, a
   read-only volume, the broker unreachable: the study is freed with `retry_at` = now +
   backoff (from `retry_base_seconds`, doubling, at most `retry_max_seconds`) and a
   `last_error` saying why; the reconciler wakes it when due, so it finishes once the cause
   clears. `failed` is kept for errors a retry would only repeat (a bug, an interpreter
   crash), always with the reason; `ecg-worklist requeue` sends those back after a fix.
   After a database outage the reconciler waits one lease period before judging holders,
   so workers that were only waiting for the database can renew first.

7. Idempotent. Every stage checks the state in the transaction that saves its result and a
   report is unique per (study, version), so a task run twice never makes a second report.
   The draft's outbound `.hl7` file is written and synced BEFORE the study says
   `awaiting_signoff` (a full outbound volume retries, rule 6).

THE BOUND. A holder dies at t. By t + lease_seconds its lease has run out (on the same
machine: at once), by then + reconcile_every_seconds the reconciler has freed the study
and sent a message. Defaults 90 s + 30 s: back in a queue within 2 minutes, then processed
like any other study. A transient failure is retried at most `retry_max_seconds` (60 s)
after its cause clears, plus one reconciler interval.

This module is the worker's side: the holder's identity, taking and holding leases with the
heartbeat, and declaring a holder gone. The SQL is in `reports/leases.py`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from reports import leases as lease_sql
from reports.db import Study, StudyState, utcnow
from reports.store import session_scope
from worker.dispatch import Stage

if TYPE_CHECKING:
    from worker.context import PipelineContext

log = logging.getLogger(__name__)

RECONCILE_ACTOR = "worker:reconcile"
# The state in which a study waits for each stage.
WAITING_FOR: dict[Stage, StudyState] = {
    Stage.PREPARE: StudyState.QUEUED_PREPARE,
    Stage.INTERPRET: StudyState.QUEUED_INTERPRET,
    Stage.REPORT: StudyState.INTERPRETED,
}
STAGE_OF: dict[str, Stage] = {state.value: stage for stage, state in WAITING_FOR.items()}


# ---------------------------------------------------------------- who is the holder


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5); the name before may hold spaces


@cache
def _hostname() -> str:
    return socket.gethostname()


def holder_id() -> str:
    """This process as a lease holder: "host:pid:start" (start time where the system tells it)."""
    pid = os.getpid()
    return f"{_hostname()}:{pid}:{_process_start(pid) or '?'}"


def local_holder_alive(holder: str) -> bool | None:
    """Whether a holder on THIS machine still runs (same pid, same start time); None when the
    holder is on another machine or the system cannot tell (then only its lease decides)."""
    host, _, rest = holder.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != _hostname() or not pid_text.isdigit() or start == "?":
        return None
    return _process_start(int(pid_text)) == start


# ---------------------------------------------------------------- holding, with a heartbeat


class LeaseKeeper:
    """This process's leases: which studies it holds, renewed by a heartbeat thread.

    One per process (`PipelineContext.leases`), made on first use, so a prefork child makes
    its own after the fork.
    """

    def __init__(self, engine: sa.Engine, *, lease_seconds: float, heartbeat_seconds: float) -> None:
        self.engine = engine
        self.holder = holder_id()
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def until(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self.lease_seconds)

    def hold(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._held.update(ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
                self._thread.start()

    def let_go(self, ids: Sequence[int]) -> None:
        with self._lock:
            self._held.difference_update(ids)

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)

    def renew_now(self) -> int:
        """Renew every lease this process holds (the heartbeat's one step); how many were still ours."""
        ids = self.held()
        if not ids:
            return 0
        with session_scope(self.engine) as session:
            return lease_sql.renew(session, self.holder, ids, self.until())

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.renew_now()
                if failing:
                    log.info("lease heartbeat: the database answers again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive any outage
                if not failing:
                    log.warning("lease heartbeat: cannot renew (%s); retrying", type(exc).__name__)
                failing = True

    def close(self) -> None:
        self._stop.set()


@dataclass(frozen=True)
class StudyView:
    """What a stage reads from the study row before working outside a transaction."""

    id: int
    state: str
    sha256: str
    source_format: str
    path: Path  # the archived copy, or the original for a batch study
    features: dict[str, Any] | None  # only for the interpret stage (the others leave it unread)

    @classmethod
    def of(cls, study: Study, *, features: bool = False) -> StudyView:
        return cls(study.id, study.state, study.sha256, study.source_format,
                   Path(study.archive_path or study.source_path), study.features if features else None)


# The JSON documents a stage works from, read with its lease (the others stay unread).
STAGE_CONTENT: dict[Stage, tuple[str, ...]] = {Stage.PREPARE: (), Stage.INTERPRET: ("features",), Stage.REPORT: ()}


def take(ctx: PipelineContext, stage: Stage, prefer: Sequence[int], *, limit: int, others: bool) -> list[StudyView]:
    """Lease studies waiting for `stage` to this process: `prefer` first, then (with `others`)
    the oldest free ones, up to `limit`; the rows as read under the lock, so the stage need
    not read them again. Preferred studies held by a dead process on this machine are freed
    (rule 3) and taken, in the same transaction."""
    keeper = ctx.leases
    content = STAGE_CONTENT[stage]
    lost: list[tuple[str, lease_sql.HolderLost]] = []

    def take_rows(session: Session) -> list[Study]:
        return lease_sql.take_rows(session, WAITING_FOR[stage], holder=keeper.holder, until=keeper.until(),
                                   prefer=list(prefer), limit=limit, others=others,
                                   isolate_suspects=True, content=content)

    with ctx.session() as session:
        rows = take_rows(session)
        # Only a preferred study that could not be taken may be held by a dead process here: looked for
        # after the take, so the usual message, whose studies are free, costs no extra SELECT. Where one
        # is freed, the take is made again as one (a batch keeps its suspects apart, `take_rows`).
        taken = {row.id for row in rows}
        missing = [study_id for study_id in prefer if study_id not in taken]
        if missing and ctx.settings.check_local_holders:
            lost = _free_if_holder_died_here(ctx, session, stage, missing, keeper.holder)
            if lost:
                lease_sql.release(session, keeper.holder, taken)
                rows = take_rows(session)
        views = [StudyView.of(row, features="features" in content) for row in rows]
    for holder, loss in lost:
        _after_loss(ctx, holder, "its process on this machine is gone", loss)
    return views


def _free_if_holder_died_here(ctx: PipelineContext, session: Session, stage: Stage, ids: Sequence[int],
                              me: str) -> list[tuple[str, lease_sql.HolderLost]]:
    rows = session.execute(sa.select(Study.id, Study.lease_holder).where(
        Study.id.in_(list(ids)), Study.state == WAITING_FOR[stage].value,
        Study.lease_holder.is_not(None), Study.lease_holder != me)).all()
    lost = []
    for study_id, holder in rows:
        if local_holder_alive(holder) is False:
            loss = lease_sql.holder_gone(session, study_id, holder=holder, why="its process on this machine is gone",
                                         poison_after=ctx.settings.poison_after, actor=f"worker:{stage.value}")
            if loss is not None:
                lost.append((holder, loss))
    return lost


@contextmanager
def holding(ctx: PipelineContext, ids: Sequence[int]) -> Iterator[set[int]]:
    """Keep the leases on `ids` renewed while the block runs; free what is still held after it.

    Yields the ids to free afterwards: the block removes those whose lease its stage ended
    already (a state change ends it), so a stage that completes costs no extra transaction.
    A study skipped or failed is freed here. If the database is unreachable the leases simply
    run out.
    """
    keeper = ctx.leases
    keeper.hold(ids)
    to_free = set(ids)
    try:
        yield to_free
    finally:
        keeper.let_go(ids)
        if to_free:
            try:
                with ctx.session() as session:
                    lease_sql.release(session, keeper.holder, sorted(to_free))
            except Exception as exc:  # noqa: BLE001 - never hide the block's own error
                log.warning("could not free leases on %d studies (%s); they run out by themselves",
                            len(to_free), type(exc).__name__)


# ---------------------------------------------------------------- a holder is gone


def lose_holder(ctx: PipelineContext, study_id: int, holder: str, *, why: str,
                actor: str = RECONCILE_ACTOR) -> lease_sql.HolderLost | None:
    """Free a study whose holder is gone (rule 3); at `poison_after` deaths, quarantine it (rule 5)."""
    with ctx.session() as session:
        lost = lease_sql.holder_gone(session, study_id, holder=holder, why=why,
                                     poison_after=ctx.settings.poison_after, actor=actor)
    if lost is not None:
        _after_loss(ctx, holder, why, lost)
    return lost


def _after_loss(ctx: PipelineContext, holder: str, why: str, lost: lease_sql.HolderLost) -> None:
    """Once the loss is committed: a poisoned study's files to quarantine, and the log line."""
    study_id = lost.study_id
    if lost.quarantined and lost.reason:
        from worker.stages import keep_in_quarantine

        try:
            keep_in_quarantine(ctx, study_id, lost.reason)
        except OSError as exc:  # the database already says why; `ecg-worklist check` repairs the file
            log.warning("study %s quarantined, but its files could not be copied (%s)", study_id, exc.strerror)
        log.warning("study %s quarantined: its processing killed its worker %d times", study_id, lost.deaths)
    else:
        log.warning("study %s: holder %s is gone (%s); freed (%d death(s) at %s)",
                    study_id, holder, why, lost.deaths, lost.state)
