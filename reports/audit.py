"""The append-only, hash-chained audit trail: append one event, verify the whole chain.

Each event's `row_hash` is the SHA-256 of a canonical JSON of its content (id, time,
actor, action, entity, details) together with the previous event's hash, so changing,
removing or re-ordering any row breaks every link after it. The database refuses UPDATE,
DELETE and TRUNCATE on `audit_events` (triggers made by the migrations); the chain is what
catches someone who bypassed the triggers (a superuser, a restored backup, a file edit).

Appends are serialised by locking the one-row `audit_head` table (SELECT ... FOR UPDATE
on Postgres; on SQLite the database-wide write lock does it, see `reports.store.make_engine`),
so concurrent writers never fork the chain. The lock is held until the caller's
transaction ends: keep transactions that audit short.

The chain alone cannot stop someone who can write the table and re-hash it (the hash function
is public); `reports.audit_anchor` signs the head now and then with a key the database never
sees and keeps the signature outside it, and `verify_chain(anchors=...)` checks against that.

Callers do not use `append` directly for state changes: `reports.store` writes the audit
row in the same transaction as the change it records.

`append` writes its two rows (the event, the head) with statements built once, on the session's
connection, not through the ORM: a study's journey appends eight events, and the ORM's flush and
per-call statement building cost 0.6 ms of CPU an event against 0.4 ms so. On Postgres the INSERT
and the head's UPDATE are one statement (a data-modifying WITH), one round trip an event.
The head read under its lock is kept for the rest of the transaction (`_LockedHead`) and read
again after a savepoint ends.

A batch's stage appends two or three events per study in one transaction; inside `batched(session)`
each `append` computes its event as before (same head lock, same hash) and the block's events are
written together when it ends: on Postgres one INSERT that takes each column's values as one
array (its head move in the same statement), on SQLite an executemany and one UPDATE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from reports import row_locks
from reports.db import AuditEvent, AuditHead, utcnow

GENESIS_HASH = "0" * 64  # the prev_hash of the first event


class Anchor(NamedTuple):
    """What a signed checkpoint outside the database says about one event."""

    row_hash: str
    at: str  # when the checkpoint was written, for the message


class VerifyResult(BaseModel):
    """The outcome of walking the chain; `ok` is False at the first broken row."""

    ok: bool
    events_checked: int
    last_id: int = 0
    last_hash: str | None = None  # the row_hash of event `last_id`, when the chain is intact
    broken_id: int | None = None  # the first row that fails (None when ok or the head is wrong)
    reason: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.events_checked} events, last id {self.last_id}"
        where = f"event {self.broken_id}" if self.broken_id is not None else "audit head"
        return f"audit chain BROKEN at {where}: {self.reason}"


def _timestamp(at: dt.datetime) -> str:
    """A fixed text form of a time, equal before and after a database round trip.

    SQLite returns naive datetimes (stored as UTC by this module), Postgres returns aware
    ones in the session's time zone; both become the same UTC text with microseconds.
    """
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_hash(
    *, id: int, at: dt.datetime, actor: str, action: str, entity_type: str, entity_id: str,
    details: dict[str, Any], prev_hash: str,
) -> str:
    """SHA-256 (hex) of the event's canonical content and the previous event's hash."""
    content = {
        "id": id,
        "at": _timestamp(at),
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def _event_hash(event: Any) -> str:
    """The hash of an AuditEvent or of a row of audit_events."""
    return compute_hash(
        id=event.id, at=event.at, actor=event.actor, action=event.action,
        entity_type=event.entity_type, entity_id=event.entity_id,
        details=event.details, prev_hash=event.prev_hash,
    )


class AppendedEvent(NamedTuple):
    """What `append` wrote: one row of audit_events, as plain values."""

    id: int
    at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    details: dict[str, Any]
    prev_hash: str
    row_hash: str


def append(
    session: Session, *, actor: str, action: str, entity_type: str, entity_id: str | int,
    details: dict[str, Any] | None = None, at: dt.datetime | None = None,
) -> AppendedEvent:
    """Add one event at the end of the chain, inside the caller's transaction.

    `details` must be JSON (it is stored and hashed as JSON) and must not carry patient
    identifiers. Raises ValueError for details that are not plain JSON.
    """
    # Normalise through JSON so what is hashed is exactly what the database gives back.
    try:
        details = json.loads(canonical_json(details or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit details must be plain JSON: {exc}") from exc
    # Postgres and SQLite keep microseconds; anything finer would not survive the round trip.
    at = (at or utcnow()).astimezone(dt.UTC)
    head = _locked_head(session)
    # Plain values, not an ORM object: the row is written by the statement below, never through the
    # session, and building and reading a mapped object cost about an eighth of an append's CPU.
    content = {"id": head.last_id + 1, "at": at, "actor": actor, "action": action, "entity_type": entity_type,
               "entity_id": str(entity_id), "details": details, "prev_hash": head.last_hash}
    event = AppendedEvent(**content, row_hash=compute_hash(**content))
    pending = _pending(session)
    if pending is not None:
        if pending.spoiled:
            raise _savepoint_in_block()
        pending.events.append(event)
    else:
        _write(session, [event])
    head.last_id, head.last_hash = event.id, event.row_hash
    return event


class _Pending:
    """The events appended inside `batched` and not yet written, for one transaction."""

    def __init__(self, transaction: Any) -> None:
        self.transaction = transaction
        self.events: list[AppendedEvent] = []
        self.spoiled = False  # a savepoint ended while events waited (see _forget_head_after_a_savepoint)

    def take(self) -> list[AppendedEvent]:
        """The waiting events, handed over once to be written; refused when a savepoint ended while they waited."""
        if self.spoiled:
            raise _savepoint_in_block()
        events, self.events = self.events, []
        return events


_PENDING_KEY = "ecgwl.audit_pending"


def _pending(session: Session) -> _Pending | None:
    pending: _Pending | None = session.info.get(_PENDING_KEY)
    if pending is not None and pending.transaction is not session.get_transaction():
        return None  # left over from a transaction that ended inside the block (see _write_before_commit)
    return pending


@contextmanager
def batched(session: Session) -> Iterator[None]:
    """Write the events appended inside the block together when it ends (see the module's notes).

    Each event is chained and hashed by `append` as it comes, so ids, hashes and the head's lock are
    what they would be without the block; only the writing waits. Nothing inside the block may read
    `audit_events` (the rows are not there yet) or end a savepoint while events wait (`append` then
    refuses rather than fork the chain). A commit inside the block writes them first. When the block
    raises, the events appended so far are written all the same, as single appends would have been,
    so the transaction holds an audit row for every change it made; the block's error is what raises.
    A block inside another block adds to the outer one's events.
    """
    if _pending(session) is not None:
        yield
        return
    session.connection()  # the transaction begins now, so the events are known to belong to it
    pending = _Pending(session.get_transaction())
    session.info[_PENDING_KEY] = pending
    try:
        yield
    except BaseException:
        _end_block(session, pending, quietly=True)
        raise
    _end_block(session, pending, quietly=False)


def _end_block(session: Session, pending: _Pending, *, quietly: bool) -> None:
    session.info.pop(_PENDING_KEY, None)
    if not pending.events or pending.transaction is not session.get_transaction():
        return  # nothing waits (a commit inside the block wrote them), or their transaction ended without them
    try:
        _write(session, pending.take())
    except Exception:
        # The head in memory names events the database does not have: the next append reads it again.
        row_locks.forget(session, _LockedHead, 1)
        if not quietly:
            raise


# Events waiting in a block when a savepoint ends may or may not have been rolled back with it: the
# block writes none of them (the head is read again after a savepoint, so chaining on would fork).
def _savepoint_in_block() -> RuntimeError:
    return RuntimeError("audit.batched: a savepoint ended inside the block while events waited; none were "
                        "written (end savepoints before or after the block)")


@sa.event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    pending = session.info.get(_PENDING_KEY)
    if pending is not None and pending.events and pending.transaction is session.get_transaction():
        _write(session, pending.take())


def _write(session: Session, events: list[AppendedEvent]) -> None:
    """Insert the events (consecutive, oldest first) and move the head to the last of them."""
    connection = session.connection()
    moved = {"moved_to_id": events[-1].id, "moved_to_hash": events[-1].row_hash}
    postgres = connection.dialect.name == "postgresql"
    if postgres and len(events) > 1:
        # The events as one array a column, unnested: one statement whatever their number, built and
        # planned once (a multi-row VALUES is a new statement for every count, and compiling it cost
        # the client more than the round trips it saved).
        arrays = {f"{column}s": list(values)
                  for column, values in zip(_EVENT_COLUMNS, zip(*events, strict=True), strict=True)}
        arrays["detailss"] = [orjson.dumps(details).decode("utf-8") for details in arrays["detailss"]]
        connection.execute(_INSERT_EVENTS_MOVING_HEAD, arrays | moved)
        return
    rows = [{f"event_{column}": value for column, value in zip(_EVENT_COLUMNS, event, strict=True)}
            for event in events]
    if postgres:
        connection.execute(_INSERT_EVENT_MOVING_HEAD, rows[0] | moved)
    else:  # SQLite has no data-modifying WITH: the rows (an executemany), then the head, in the same transaction
        connection.execute(_INSERT_EVENT, rows)
        connection.execute(_MOVE_HEAD, moved)


# The statements of an append, built once: parameters bound at execution need no per-call
# statement construction (which, with values given inline, cost more than the database's work).
# On Postgres the event and the head's move are one statement (the UPDATE in a WITH runs exactly
# once, in the same snapshot and transaction as the INSERT): one round trip an event instead of two,
# 8 fewer statements in a study's journey. The event's parameters are named event_*, so none of
# them can be taken for a column of audit_head.
_EVENTS, _HEAD = AuditEvent.__table__, AuditHead.__table__
_EVENT_COLUMNS = ("id", "at", "actor", "action", "entity_type", "entity_id", "details", "prev_hash", "row_hash")
_INSERT_EVENT = sa.insert(_EVENTS).values({column: sa.bindparam(f"event_{column}") for column in _EVENT_COLUMNS})
_MOVE_HEAD = (sa.update(_HEAD).where(_HEAD.c.id == 1)
              .values(last_id=sa.bindparam("moved_to_id"), last_hash=sa.bindparam("moved_to_hash")))
_INSERT_EVENT_MOVING_HEAD = _INSERT_EVENT.add_cte(_MOVE_HEAD.cte("moved_head"))
# A batch's events on Postgres: each column's values as one array parameter (psycopg sends a list as
# an array), the head moved in the same statement.
_INSERT_EVENTS_MOVING_HEAD = sa.text("""
    WITH moved_head AS (UPDATE audit_head SET last_id = :moved_to_id, last_hash = :moved_to_hash WHERE id = 1)
    INSERT INTO audit_events (id, at, actor, action, entity_type, entity_id, details, prev_hash, row_hash)
    SELECT id, at, actor, action, entity_type, entity_id, CAST(details AS JSON), prev_hash, row_hash
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:ats AS TIMESTAMPTZ[]), CAST(:actors AS VARCHAR[]),
                CAST(:actions AS VARCHAR[]), CAST(:entity_types AS VARCHAR[]), CAST(:entity_ids AS VARCHAR[]),
                CAST(:detailss AS TEXT[]), CAST(:prev_hashs AS VARCHAR[]), CAST(:row_hashs AS VARCHAR[]))
        AS event(id, at, actor, action, entity_type, entity_id, details, prev_hash, row_hash)
""")
_LOCK_HEAD = sa.select(_HEAD.c.last_id, _HEAD.c.last_hash).where(_HEAD.c.id == 1).with_for_update()


class _LockedHead:
    """The audit head as this transaction locked and then moved it."""

    def __init__(self, last_id: int, last_hash: str) -> None:
        self.last_id, self.last_hash = last_id, last_hash


def _locked_head(session: Session) -> _LockedHead:
    """The head, locked once per transaction: a second event in it appends after the first
    without a read. The lock (SELECT ... FOR UPDATE) is held until the transaction ends."""
    head = row_locks.held(session, _LockedHead, 1)
    if head is None:
        row = session.connection().execute(_LOCK_HEAD).one_or_none()
        if row is None:
            raise RuntimeError("audit_head row is missing: was the database made by `ecg-worklist db upgrade`?")
        head = _LockedHead(row.last_id, row.last_hash)
        row_locks.remember(session, _LockedHead, 1, head)
    return head


@sa.event.listens_for(Session, "after_transaction_end")
def _forget_head_after_a_savepoint(session: Session, transaction: Any) -> None:
    # Events appended inside a savepoint moved the head, and a rollback to the savepoint moves it
    # back: either way the remembered head may be wrong now, so the next append reads it again.
    if transaction.nested:
        row_locks.forget(session, _LockedHead, 1)
        pending = session.info.get(_PENDING_KEY)
        if pending is not None and pending.events:
            # Whether the savepoint's events still stand is not known here: refuse to write any.
            pending.spoiled = True


def verify_chain(session: Session, *, batch_size: int = 1000, anchors: Mapping[int, Anchor] | None = None,
                 after: tuple[int, str] | None = None) -> VerifyResult:
    """Walk every event in id order and report the first one whose hash or link is wrong.

    Checks, per event: ids have no gaps, `prev_hash` equals the previous event's
    `row_hash`, and `row_hash` matches the event's content. The walk ends at the event the
    head named when verification started (events appended meanwhile are left for the next
    run), and that event's hash must be the head's: a removed tail shows up there.

    `anchors` (event id -> the hash a signed checkpoint outside the database recorded for it,
    see `reports.audit_anchor`) catch what the chain alone cannot: a superuser who changes a
    row and re-hashes every row after it, or removes the last rows and moves the head back.
    `after` = (id, row_hash) checks only the events after that one, which must chain onto
    that hash (a new checkpoint checks what was added since the last one).
    """
    anchors = anchors or {}
    head = session.execute(sa.select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).one_or_none()
    if head is None:
        return VerifyResult(ok=False, events_checked=0, reason="audit_head row is missing")
    table = AuditEvent.__table__
    last_id, expected_prev = after or (0, GENESIS_HASH)
    expected_id = last_id + 1
    checked = 0
    while expected_id <= head.last_id:
        # Plain rows, not ORM objects: a long chain must not fill the session's identity map.
        events = session.execute(
            sa.select(table).where(table.c.id >= expected_id, table.c.id <= head.last_id)
            .order_by(table.c.id).limit(batch_size)
        ).all()
        if not events:
            break
        for event in events:
            problem = None
            if event.id != expected_id:
                problem = f"id gap: expected event {expected_id}, found {event.id} (rows removed)"
            elif event.prev_hash != expected_prev:
                problem = "broken link: prev_hash does not match the previous event's row_hash"
            elif _event_hash(event) != event.row_hash:
                problem = "content hash mismatch: the row was changed after it was written"
            elif (anchor := anchors.get(event.id)) is not None and anchor.row_hash != event.row_hash:
                problem = (f"differs from the signed checkpoint of {anchor.at}: the chain up to this event was "
                           "rewritten (changed and re-hashed) after that checkpoint")
            if problem:
                return VerifyResult(ok=False, events_checked=checked, last_id=last_id, broken_id=event.id,
                                    reason=problem)
            expected_prev = event.row_hash
            expected_id += 1
            last_id = event.id
            checked += 1
    if last_id != head.last_id or expected_prev != head.last_hash:
        return VerifyResult(ok=False, events_checked=checked, last_id=last_id,
                            reason=f"head names event {head.last_id} but the chain ends at {last_id} "
                                   "(events removed from the end, or the head was changed)")
    if anchors and (newest := max(anchors)) > last_id:
        return VerifyResult(ok=False, events_checked=checked, last_id=last_id,
                            reason=f"the signed checkpoint of {anchors[newest].at} names event {newest}, but the "
                                   f"chain ends at {last_id}: events were removed from the end and the head moved")
    return VerifyResult(ok=True, events_checked=checked, last_id=last_id, last_hash=expected_prev)
