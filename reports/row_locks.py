"""Rows this transaction has locked already (SELECT ... FOR UPDATE), so a second lock reads nothing.

    row = row_locks.held(session, Study, study_id)       # the session's copy, or None
    row_locks.remember(session, Study, study_id, row)    # after locking it

Once a transaction holds a row's lock nobody else can change the row until it ends, and the
session's copy carries this transaction's own changes: it IS the row. So a stage that claims
a study, stores its result, moves its state and appends audit rows selects the study and the
audit head once each instead of once per call. What is remembered belongs to the session's
current transaction and is forgotten when another begins. A bulk UPDATE or DELETE through the
session (which may change rows behind the copies) forgets everything; raw SQL text that
changes locked rows inside the same transaction is not seen, and nothing here runs any.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_KEY = "ecgwl.row_locks"


def _held_rows(session: Session) -> dict[tuple[type, Any], Any]:
    transaction = session.get_transaction()
    held = session.info.get(_KEY)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        session.info[_KEY] = held
    rows: dict[tuple[type, Any], Any] = held[1]
    return rows


def held(session: Session, model: type, key: Any) -> Any | None:
    """The row of `model` with primary key `key` if this transaction locked it already."""
    return _held_rows(session).get((model, key))


def remember(session: Session, model: type, key: Any, row: Any) -> None:
    """Note that this transaction has locked `row` (of `model`, primary key `key`)."""
    _held_rows(session)[(model, key)] = row


def forget(session: Session, model: type, key: Any) -> None:
    """Drop what was remembered of one row (its copy may no longer be the row)."""
    _held_rows(session).pop((model, key), None)


@event.listens_for(Session, "do_orm_execute")
def _forget_on_bulk_writes(state: Any) -> None:
    if state.is_update or state.is_delete:
        state.session.info.pop(_KEY, None)
