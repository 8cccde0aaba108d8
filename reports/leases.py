"""The lease columns of a study in SQL: take, renew, release, retry later, and a holder gone.

    take(session, state, holder=..., until=..., prefer=[...], limit=n)   -> ids now leased to holder
    take_rows(... same, content=[...])                                  -> the leased rows themselves
    renew(session, holder, ids, until)                                  -> how many were still ours
    release(session, holder, ids)                                       free them, nothing else changes
    schedule_retry(session, id, holder=..., retry_at=..., reason=...)    free it until retry_at (audited)
    holder_gone(session, id, holder=..., why=..., poison_after=n)        free it, deaths + 1, quarantine at n
    held(session) / free_due(session, state)                           what the reconciler looks at
    batch_outlook(session, holder)                                      an interpret batch now, and what is coming
    send_back(session, id, actor=..., reason=...)                       an operator's requeue (audited)

The rules these serve are written out once, in `worker/leases.py`. Like `reports.store`,
every write that changes what a person would see about a study (a retry scheduled, a holder
lost, a quarantine) writes its audit row in the caller's transaction; taking, renewing and
releasing a lease do not (they are bookkeeping of who works on what, many per minute).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from reports import audit, store
from reports.db import Study, StudyState, utcnow

S = StudyState
# The states in which a study waits for a stage's worker, and so may be leased.
WAITING_STATES: tuple[StudyState, ...] = (S.QUEUED_PREPARE, S.QUEUED_INTERPRET, S.INTERPRETED)


def _free_for(holder: str | None, now: dt.datetime) -> sa.ColumnElement[bool]:
    """Not held by anyone else (a holder may take back its own), and not waiting for a retry time."""
    not_held = Study.lease_holder.is_(None)
    if holder is not None:
        not_held = sa.or_(not_held, Study.lease_holder == holder)
    return sa.and_(not_held, sa.or_(Study.retry_at.is_(None), Study.retry_at <= now))


def _candidates(session: Session, state: StudyState, holder: str, now: dt.datetime, *,
                among: Sequence[int] | None, excluding: Sequence[int], limit: int,
                content: Sequence[str]) -> list[Study]:
    # The JSON documents stay unread but for those the stage uses (`content`).
    query = (sa.select(Study)
             .options(*store.without_content(content))
             .where(Study.state == state.value, _free_for(holder, now))
             .order_by(Study.state_changed_at, Study.id)
             .limit(limit)
             .with_for_update(skip_locked=True))  # rows another worker is taking right now are skipped
    if among is not None:
        query = query.where(Study.id.in_(among))
    if excluding:
        query = query.where(Study.id.not_in(excluding))
    return list(session.execute(query.execution_options(populate_existing=True)).scalars())


def batch_limit(batch_size: int, holder_deaths: int) -> int:
    """How many studies with this many holder deaths one batch may hold: a full batch for
    none, an eighth of one after one death, one after two. So a poison study is alone by its
    third death, and a good study that shared a batch with it never gets that far."""
    if holder_deaths <= 0:
        return max(1, batch_size)
    return max(1, batch_size // 8) if holder_deaths == 1 else 1


def take(
    session: Session, state: StudyState | str, *, holder: str, until: dt.datetime,
    prefer: Sequence[int] = (), limit: int = 1, others: bool = True, isolate_suspects: bool = False,
    now: dt.datetime | None = None,
) -> list[int]:
    """Lease up to `limit` free studies waiting in `state` to `holder`, until `until`.

    The `prefer`red ids come first (those that are free), then, with `others`, the oldest free
    studies of that state. With `isolate_suspects` (the interpret stage's batches) a batch
    holds only studies with as many holder deaths as its first one, at most `batch_limit`.
    """
    return [study.id for study in take_rows(session, state, holder=holder, until=until, prefer=prefer, limit=limit,
                                            others=others, isolate_suspects=isolate_suspects, now=now)]


def take_rows(
    session: Session, state: StudyState | str, *, holder: str, until: dt.datetime,
    prefer: Sequence[int] = (), limit: int = 1, others: bool = True, isolate_suspects: bool = False,
    now: dt.datetime | None = None, content: Sequence[str] = (),
) -> list[Study]:
    """`take`, returning the leased rows as read under the lock: the stage works from them and
    reads nothing again before it saves. Of the JSON documents only `content` is read."""
    state, now = StudyState(state), now or utcnow()
    chosen: list[Study] = []
    if prefer:
        chosen += _candidates(session, state, holder, now, among=list(prefer), excluding=[], limit=limit,
                              content=content)
    if others and len(chosen) < limit:
        chosen += _candidates(session, state, holder, now, among=None, excluding=[study.id for study in chosen],
                              limit=limit - len(chosen), content=content)
    if isolate_suspects and chosen:
        deaths = chosen[0].holder_deaths
        chosen = [study for study in chosen if study.holder_deaths == deaths][:batch_limit(limit, deaths)]
    for study in chosen:
        study.lease_holder, study.lease_expires_at = holder, until
    session.flush()
    return chosen


def renew(session: Session, holder: str, ids: Iterable[int], until: dt.datetime) -> int:
    """Push the leases `holder` still has on `ids` to `until`; returns how many it still had."""
    ids = list(ids)
    if not ids:
        return 0
    result = session.execute(sa.update(Study).where(Study.id.in_(ids), Study.lease_holder == holder)
                             .values(lease_expires_at=until).execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def release(session: Session, holder: str, ids: Iterable[int]) -> None:
    """Free the studies `holder` still holds among `ids` (their state is left as it is)."""
    ids = list(ids)
    if ids:
        session.execute(sa.update(Study).where(Study.id.in_(ids), Study.lease_holder == holder)
                        .values(lease_holder=None, lease_expires_at=None)
                        .execution_options(synchronize_session=False))


def _locked_waiting(session: Session, study_id: int, holder: str | None) -> Study | None:
    """The study, locked, if it still waits for a stage and `holder` (when given) still holds it."""
    study = store.get_study(session, study_id, for_update=True, content=False)
    if study.state not in {s.value for s in WAITING_STATES}:
        return None
    if holder is not None and study.lease_holder not in (None, holder):
        return None
    return study


def schedule_retry(
    session: Session, study_id: int, *, holder: str | None, retry_at: dt.datetime, reason: str, actor: str,
) -> bool:
    """A transient failure: free the study, to be taken again from `retry_at` on (audited).

    `attempts` + 1 (it sets the backoff); `last_error` says why. Returns False when the
    study moved on or someone else holds it (then there is nothing to retry).
    """
    study = _locked_waiting(session, study_id, holder)
    if study is None:
        return False
    study.lease_holder = study.lease_expires_at = None
    study.retry_at = retry_at
    study.attempts += 1
    study.last_error = reason
    audit.append(session, actor=actor, action="study.retry_scheduled", entity_type="study", entity_id=study_id,
                 details={"state": study.state, "retry_at": retry_at.isoformat(), "reason": reason,
                          "attempts": study.attempts})
    return True


@dataclass(frozen=True)
class HolderLost:
    study_id: int
    state: str
    deaths: int
    quarantined: bool  # the poison limit was reached: the study is now `quarantined`
    reason: str | None  # the quarantine reason, when quarantined


def poison_reason(stage_state: str, deaths: int) -> str:
    """The quarantine reason of a study that kept killing its workers (no patient data)."""
    return (f"processing killed its worker {deaths} times (state {stage_state}): the file is set aside "
            "so it cannot take more workers down; `ecg-worklist requeue --study ID` retries it after a fix")


def holder_gone(
    session: Session, study_id: int, *, holder: str, why: str, poison_after: int, actor: str,
) -> HolderLost | None:
    """The process holding the study is gone: free it, count the death, quarantine at the limit.

    Audited as `study.holder_lost` (the holder id, why it is judged gone, the count). When the
    count reaches `poison_after` the study moves to `quarantined` with `poison_reason`. None
    when the study is no longer held by `holder` (it was freed or moved on meanwhile).
    """
    study = store.get_study(session, study_id, for_update=True, content=False)
    if study.lease_holder != holder or study.state not in {s.value for s in WAITING_STATES}:
        return None
    study.lease_holder = study.lease_expires_at = None
    study.holder_deaths += 1
    state, deaths = study.state, study.holder_deaths
    audit.append(session, actor=actor, action="study.holder_lost", entity_type="study", entity_id=study_id,
                 details={"state": state, "holder": holder, "why": why, "holder_deaths": deaths,
                          "poison_after": poison_after})
    if deaths < poison_after:
        session.flush()
        return HolderLost(study_id, state, deaths, quarantined=False, reason=None)
    reason = poison_reason(state, deaths)
    store.quarantine(session, study_id, reason, actor=actor)
    return HolderLost(study_id, state, deaths, quarantined=True, reason=reason)


@dataclass(frozen=True)
class Lease:
    study_id: int
    state: str
    holder: str
    expires_at: dt.datetime | None


def held(session: Session) -> list[Lease]:
    """Every lease on a waiting study (a handful: one per busy worker slot, a batch per GPU)."""
    rows = session.execute(
        sa.select(Study.id, Study.state, Study.lease_holder, Study.lease_expires_at)
        .where(Study.lease_holder.is_not(None), Study.state.in_([s.value for s in WAITING_STATES]))
        .order_by(Study.id))
    return [Lease(*row) for row in rows]


@dataclass(frozen=True)
class FreeStudy:
    study_id: int
    holder_deaths: int


def free_due(session: Session, state: StudyState | str, *, now: dt.datetime | None = None,
             limit: int | None = None) -> list[FreeStudy]:
    """Studies waiting in `state` that nobody holds and that may be taken now, oldest first."""
    query = (sa.select(Study.id, Study.holder_deaths)
             .where(Study.state == StudyState(state).value, _free_for(None, now or utcnow()))
             .order_by(Study.state_changed_at, Study.id))
    if limit is not None:
        query = query.limit(limit)
    return [FreeStudy(*row) for row in session.execute(query)]


@dataclass(frozen=True)
class BatchOutlook:
    """What an interpret batch taken now would hold, and whether more is on its way."""

    free_to_interpret: int  # studies waiting for interpretation that nobody holds
    being_prepared_elsewhere: int  # studies another holder is preparing now (a live lease)


def batch_outlook(session: Session, holder: str, *, now: dt.datetime | None = None) -> BatchOutlook:
    """One query, two counts (see `worker.runner` for the wait they decide)."""
    now = now or utcnow()
    free = sa.and_(Study.state == StudyState.QUEUED_INTERPRET.value, _free_for(None, now))
    preparing = sa.and_(Study.state == StudyState.QUEUED_PREPARE.value, Study.lease_holder.is_not(None),
                        Study.lease_holder != holder, Study.lease_expires_at > now)
    row = session.execute(sa.select(sa.func.count().filter(free), sa.func.count().filter(preparing))
                          .where(Study.state.in_([StudyState.QUEUED_INTERPRET.value,
                                                  StudyState.QUEUED_PREPARE.value]))).one()
    return BatchOutlook(free_to_interpret=int(row[0]), being_prepared_elsewhere=int(row[1]))


def send_back(session: Session, study_id: int, *, actor: str, reason: str | None = None,
              now: dt.datetime | None = None) -> StudyState | str:
    """An operator sends a study back to the stage that can finish it (`ecg-worklist requeue`).

    Returns the waiting state it is now in, or why nothing was done. quarantined -> prepare
    again; failed -> the first stage whose result is missing (interpretation stored ->
    report; measured -> interpret; else prepare; a scan without measurements is prepared again); a waiting study is sent now (its retry
    time and death count cleared) unless a live holder has it. Audited with `reason`.
    """
    try:
        study = store.get_study(session, study_id, for_update=True)
    except store.StudyNotFound:
        return "no such study"
    state, now = StudyState(study.state), now or utcnow()
    details = {"by": "operator", "reason": reason}
    if state in WAITING_STATES:
        if study.lease_holder and study.lease_expires_at and study.lease_expires_at > now:
            return f"held by {study.lease_holder} until {study.lease_expires_at.isoformat(timespec='seconds')}"
        study.retry_at, study.holder_deaths = None, 0
        study.lease_holder = study.lease_expires_at = None
        if state is S.INTERPRETED:  # no queued state of its own: the re-send is its own event
            study.attempts += 1
            audit.append(session, actor=actor, action="study.requeued", entity_type="study", entity_id=study_id,
                         details={**details, "state": state.value, "attempts": study.attempts})
        else:
            store.set_state(session, study_id, state, actor=actor, details=details)
        return state
    if state in (S.QUARANTINED, S.RECEIVED):
        target = S.QUEUED_PREPARE
    elif state is S.FAILED:
        target = (S.INTERPRETED if study.interpretation
                  else S.QUEUED_INTERPRET if study.features else S.QUEUED_PREPARE)
    else:
        return f"{state.value}: nothing to redo"
    store.set_state(session, study_id, target, actor=actor, details=details)
    return target
