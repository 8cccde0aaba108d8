"""What the web page shows about HL7 delivery, and what a person can do about it.

    delivery_problems(session)             rows that need a look: refused (AE/AR) and held for
                                           a person, or retrying after failed attempts
    delivery_metrics(session)              counts per destination and status (for metrics)
    outbox_groups(session, states)         the GROUP BY both counts rest on (and reports.metrics' backlog)
    alert_count(session)                   messages held for a person (the queue page's alert)
    delivery_status_for_study(session, id) every delivery of every report version of a study
    retry_now(session, outbox_id, actor)   release a held or waiting row: due at once
    withdraw(session, outbox_id, actor, reason)
                                           give up on a row on purpose (it stops holding up
                                           later messages for the same patient)

Rows are `DeliveryRow`s (pydantic) with ids, codes and texts only; the page looks up the
patient from the study id itself. `error` may be an interface engine's own text, which can
quote patient data: show it to signed-in users only, never log it. The two actions write
through `reports.store`, so each is an audit row; the caller commits (`session_scope`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from reports import store
from reports.db import OutboxItem, OutboxState, Report


class DeliveryRow(BaseModel):
    outbox_id: int
    study_id: int
    report_version: int
    result_status: str  # OBR-25 of the message: P/R draft, F signed, C corrected, X rejected
    destination: str
    state: str  # the outbox state: pending, acked, error, held (sent is not used by `deliver`)
    status: str  # in words, for the page: see `describe`
    ack_code: str | None
    error: str | None
    attempts: int
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    message_control_id: str  # MSH-10: what an interface analyst searches the engine's log for


# How `reports.delivery` starts `last_error` when it stops retrying on its own: the alerts.
GAVE_UP = "gave up after "
UNENCODABLE = "not sent: "  # (in state `error`; a `held` row's reason may start so too)


def describe(state: str, attempts: int, ack_code: str | None, error: str | None = None) -> str:
    """The row's status as an interface analyst would say it."""
    if state == OutboxState.ACKED.value:
        return "delivered"
    if state == OutboxState.HELD.value:
        return "not sent"
    if state == OutboxState.ERROR.value:
        if error and error.startswith(GAVE_UP):
            return f"ALERT: gave up after {attempts} attempts, held for a person"
        if error and error.startswith(UNENCODABLE):
            return "ALERT: cannot be encoded for this destination, held for a person"
        return f"held for a person ({ack_code})" if ack_code else "held for a person"
    if state == OutboxState.SENT.value:
        return "sent, no ACK yet"
    if attempts == 0:
        return "queued"
    return f"retrying after {ack_code}" if ack_code else "retrying"


def _rows(session: Session, query: sa.Select) -> list[DeliveryRow]:
    return [
        DeliveryRow(
            outbox_id=item.id, study_id=study_id, report_version=version, result_status=result_status,
            destination=item.destination, state=item.state,
            status=describe(item.state, item.attempts, item.ack_code, item.last_error), ack_code=item.ack_code,
            error=item.last_error, attempts=item.attempts, next_attempt_at=item.next_attempt_at,
            delivered_at=item.delivered_at, message_control_id=item.message_control_id,
        )
        for item, study_id, version, result_status in session.execute(query).all()
    ]


def _select() -> sa.Select:
    return (sa.select(OutboxItem, Report.study_id, Report.version, Report.result_status)
            .join(Report, Report.id == OutboxItem.report_id))


def delivery_problems(session: Session, limit: int = 50) -> list[DeliveryRow]:
    """Rows held for a person (refused, `error`) first, then rows retrying; oldest first."""
    needs_a_person = OutboxItem.state == OutboxState.ERROR.value
    retrying = sa.and_(OutboxItem.state == OutboxState.PENDING.value, OutboxItem.attempts > 0)
    query = (_select().where(sa.or_(needs_a_person, retrying))
             .order_by(sa.case((needs_a_person, 0), else_=1), OutboxItem.created_at, OutboxItem.id)
             .limit(limit))
    return _rows(session, query)


def delivery_status_for_study(session: Session, study_id: int) -> list[DeliveryRow]:
    """Every delivery of the study's reports, by report version then destination."""
    query = _select().where(Report.study_id == study_id).order_by(Report.version, OutboxItem.destination)
    return _rows(session, query)


class DestinationCounts(BaseModel):
    """One destination's deliveries by status: what a metrics exporter publishes."""

    destination: str
    queued: int = 0  # pending, not tried yet
    retrying: int = 0  # pending after failed attempts
    needs_a_person: int = 0  # `error`: refused and held, or an alert below (the alert state)
    gave_up: int = 0  # of those: the retry ceiling was reached
    unencodable: int = 0  # of those: the destination's charset cannot carry the message
    delivered: int = 0
    not_sent: int = 0  # `held` on purpose (drafts to a finals-only destination, withdrawn)
    oldest_undelivered_seconds: float | None = None  # age of the oldest pending or error row


class OutboxGroup(NamedTuple):
    """The outbox rows of one destination in one state, split by whether they were tried and why they stopped."""

    destination: str
    state: str
    tried: bool  # attempts > 0
    gave_up: bool  # last_error starts with GAVE_UP
    unencodable: bool  # last_error starts with UNENCODABLE
    count: int
    oldest: dt.datetime | None  # the earliest created_at, in UTC


def outbox_groups(session: Session, states: Iterable[str] | None = None) -> list[OutboxGroup]:
    """The outbox counted per destination, state, tried, gave up and unencodable (one GROUP BY);
    `states`: only rows in these (the delivered history need not be read)."""
    error = OutboxItem.last_error
    query = sa.select(OutboxItem.destination, OutboxItem.state, OutboxItem.attempts > 0,
                      sa.func.coalesce(error.startswith(GAVE_UP), False),
                      sa.func.coalesce(error.startswith(UNENCODABLE), False),
                      sa.func.count(), sa.func.min(OutboxItem.created_at))
    if states is not None:
        query = query.where(OutboxItem.state.in_(tuple(states)))
    rows = session.execute(query.group_by(*(sa.text(str(position)) for position in range(1, 6)))).all()  # first 5
    # created_at is a UtcDateTime, and min() keeps its type: `oldest` comes back aware, in UTC, on every database.
    return [OutboxGroup(destination, state, bool(tried), bool(gave_up), bool(unencodable), count, oldest)
            for destination, state, tried, gave_up, unencodable, count, oldest in rows]


def delivery_metrics(session: Session, now: dt.datetime | None = None) -> list[DestinationCounts]:
    """Counts per destination (one query), for the web page and a Prometheus exporter.

    `needs_a_person` is the alert: a message that will not go out until someone retries or
    withdraws it. Rows only, never message content.
    """
    now = now or dt.datetime.now(dt.UTC)
    by_name: dict[str, DestinationCounts] = {}
    for destination, state, tried, gave_up, unencodable, count, oldest in outbox_groups(session):
        counts = by_name.setdefault(destination, DestinationCounts(destination=destination))
        if state == OutboxState.PENDING.value:
            if tried:
                counts.retrying += count
            else:
                counts.queued += count
        elif state == OutboxState.ERROR.value:
            counts.needs_a_person += count
            counts.gave_up += count if gave_up else 0
            counts.unencodable += count if unencodable else 0
        elif state == OutboxState.ACKED.value:
            counts.delivered += count
        elif state == OutboxState.HELD.value:
            counts.not_sent += count
        if state in (OutboxState.PENDING.value, OutboxState.ERROR.value, OutboxState.SENT.value) and oldest:
            age = (now - oldest).total_seconds()
            counts.oldest_undelivered_seconds = max(counts.oldest_undelivered_seconds or 0.0, age)
    return sorted(by_name.values(), key=lambda c: c.destination)


def alert_count(session: Session) -> int:
    """Messages held for a person (refused, or given up on): the queue page's alert count."""
    return session.scalar(sa.select(sa.func.count()).select_from(OutboxItem)
                          .where(OutboxItem.state == OutboxState.ERROR.value)) or 0


def _row(session: Session, outbox_id: int) -> DeliveryRow:
    [row] = _rows(session, _select().where(OutboxItem.id == outbox_id))
    return row


def retry_now(session: Session, outbox_id: int, actor: str) -> DeliveryRow:
    """Make the row due now (the next `deliver` pass sends it). Raises ValueError for a
    delivered row, LookupError for an unknown id.

    A draft released for a destination that takes no drafts is set aside again by
    `deliver`; the per-patient order still applies (it waits behind an earlier message).
    """
    store.release_outbox(session, outbox_id, actor=actor)
    return _row(session, outbox_id)


def withdraw(session: Session, outbox_id: int, actor: str, reason: str) -> DeliveryRow:
    """Stop trying to deliver the row (`held`, with who and why). Raises ValueError for a
    delivered row, LookupError for an unknown id. `retry_now` undoes it."""
    if not reason.strip():
        raise ValueError("a reason is needed to withdraw a delivery")
    store.hold_outbox(session, outbox_id, actor=actor, reason=f"withdrawn by {actor}: {reason.strip()}")
    return _row(session, outbox_id)
