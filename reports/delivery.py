"""HL7 delivery: send the outbox to the interface engines over MLLP and record every ACK.

`deliver_due` makes one pass over the due outbox rows; `run_delivery_loop` repeats it until
SIGTERM (the `ecg-worklist deliver` daemon). For each row, in its own short transaction:

1. claim it: SELECT ... FOR UPDATE SKIP LOCKED, so two `deliver` processes never send the
   same row at the same time (the other one skips it);
2. per patient in order: if an earlier message for the same patient to the same
   destination is still undelivered (pending or refused), this one waits, so a
   correction never overtakes its original; other patients are not held up;
3. a draft to a destination that takes no drafts is set aside (`held`), never sent;
4. send it (`reports.mllp.send_message`) and wait for the ACK;
5. record the outcome through `reports.store` (each change is an audit row):
   - AA/CA whose MSA-2 echoes our MSH-10: delivered (`acked`); nothing else marks a row delivered;
   - AE/CE, AR/CR: the ACK's text is kept in `last_error`; retried with backoff or held
     for a person (`error`), as the destination says (`on_ae`, `on_ar`);
   - no ACK (refused, dropped, timed out; an ACK frame ending in 0x1C without 0x0D counts as
     an ACK), or an ACK for another message: retried with exponential backoff (capped);
     the row stays visible as "retrying";
   - after `max_attempts` attempts (the retry ceiling) a row that would retry is held for a
     person instead (`error`, "gave up after N attempts"): the alert the web page and
     `delivery_view.delivery_metrics` show;
   - a message with a character the destination's charset cannot carry is not sent and is
     held for a person; what is sent is encoded in that charset, with MSH-18 saying so.

Guarantee: a message is never lost and never marked delivered without its ACK. On the
wire it is at-least-once: if this process dies (or the database is unreachable) after
the engine answered AA but before the commit, the row is still pending and the message is
sent again with the SAME MSH-10; the receiving engine drops duplicates by MSH-10 (as
interface engines are set up to do). A timeout after the engine took the message has the
same effect.

Logs carry outbox ids, destinations, MSH-10 and ACK codes, never patient data or ACK text
(an engine's error text may quote the patient; it is on the outbox row and the web page).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from reports import store
from reports.db import OutboxItem, OutboxState, Report, Study, utcnow
from reports.delivery_view import GAVE_UP, UNENCODABLE
from reports.destinations import HL7Destination, OnRefusal
from reports.mllp import Ack, MllpError, UnencodableMessage, encode, send_message

log = logging.getLogger(__name__)

ACTOR = "delivery"
# States in which a message still has to reach its destination: they keep later messages
# for the same patient waiting. `held` (set aside on purpose) and `acked` do not.
UNDELIVERED = (OutboxState.PENDING.value, OutboxState.SENT.value, OutboxState.ERROR.value)
NO_DRAFTS_REASON = "not sent: this destination takes only signed, corrected or rejected reports (drafts: false)"


class DeliverySummary(BaseModel):
    """What one pass (or a whole run) did; counts only, safe to log."""

    sent: int = 0  # send attempts (messages written to a connection, or tried)
    accepted: int = 0  # AA/CA with the right MSA-2: delivered
    errors: int = 0  # AE/CE answers
    rejected: int = 0  # AR/CR answers
    # What became of the attempts that were not accepted:
    retried: int = 0  # due again later (no ACK, a wrong ACK, or an AE/AR set to retry)
    held: int = 0  # an AE/AR set to hold: waiting for a person (state `error`)
    waiting: int = 0  # not tried: an earlier message for the same patient is not delivered yet
    drafts_held: int = 0  # drafts set aside: the destination takes no drafts
    gave_up: int = 0  # the retry ceiling (max_attempts) reached: held for a person (state `error`)
    unencodable: int = 0  # not sent: a character the destination's charset cannot carry (held)

    def add(self, other: DeliverySummary) -> None:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def did_something(self) -> bool:
        return any(getattr(self, name) for name in type(self).model_fields if name != "waiting")

    def line(self) -> str:
        return ", ".join(f"{name} {getattr(self, name)}" for name in type(self).model_fields)


@dataclass(frozen=True)
class _Attempt:
    """How one attempt ends: the summary counters it adds to, and what the store records."""

    counters: tuple[str, ...]
    ack_code: str | None = None
    error: str | None = None
    retry_at: dt.datetime | None = None
    from_receiver: bool = False


# ---------------------------------------------------------------- one pass


def deliver_due(
    engine: sa.Engine, destinations: Sequence[HL7Destination], *, now: dt.datetime | None = None,
    limit: int = 100, stop: threading.Event | None = None,
) -> DeliverySummary:
    """One pass: try each due outbox row of these destinations once (at most `limit` rows).

    `now` is the pass's clock (which rows are due, when retries fall due); tests move it
    forward. Destinations without a host and port are skipped. Stops between rows when
    `stop` is set.
    """
    now = now or utcnow()
    by_name = {d.name: d for d in destinations if d.has_address}
    summary = DeliverySummary()
    for outbox_id in _due_ids(engine, list(by_name), now, limit):
        if stop is not None and stop.is_set():
            break
        with store.session_scope(engine) as session:
            item = _claim(session, outbox_id, now)
            if item is None:  # another process has it, or it changed since the listing
                continue
            counters = _deliver_one(session, item, by_name[item.destination], now)
        for counter in counters:
            setattr(summary, counter, getattr(summary, counter) + 1)
    return summary


def _due_ids(engine: sa.Engine, names: list[str], now: dt.datetime, limit: int) -> list[int]:
    """Ids of due rows in the order they were queued, read without locking (each is claimed
    on its own). By id, not by due time: a retried original is due later than the correction
    queued after it, yet must go first (in the same pass, not one poll later)."""
    if not names:
        return []
    with store.session_scope(engine) as session:
        return list(session.execute(
            sa.select(OutboxItem.id)
            .where(OutboxItem.state == OutboxState.PENDING.value, OutboxItem.next_attempt_at <= now,
                   OutboxItem.destination.in_(names))
            .order_by(OutboxItem.id)
            .limit(limit)
        ).scalars())


def _claim(session: Session, outbox_id: int, now: dt.datetime) -> OutboxItem | None:
    """The row, locked until this transaction ends, if it is still due and nobody holds it."""
    return session.execute(
        sa.select(OutboxItem)
        .where(OutboxItem.id == outbox_id, OutboxItem.state == OutboxState.PENDING.value,
               OutboxItem.next_attempt_at <= now)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()


def _deliver_one(
    session: Session, item: OutboxItem, destination: HL7Destination, now: dt.datetime,
) -> tuple[str, ...]:
    """Decide, send and record one claimed row; returns the summary counters it adds to."""
    report = session.get(Report, item.report_id)
    assert report is not None  # a foreign key
    if not destination.takes(report.status):
        store.hold_outbox(session, item.id, actor=ACTOR, reason=NO_DRAFTS_REASON)
        log.info("outbox %s -> %s: draft not sent (destination takes no drafts)", item.id, destination.name)
        return ("drafts_held",)
    if _waits_for_earlier(session, item, report):
        return ("waiting",)
    attempt = _send(item, destination, now)
    store.record_delivery(session, item.id, actor=ACTOR, ack_code=attempt.ack_code, error=attempt.error,
                          retry_at=attempt.retry_at, error_from_receiver=attempt.from_receiver)
    log.info("outbox %s -> %s MSH-10 %s: %s (ACK %s, attempt %d)", item.id, destination.name,
             item.message_control_id, "/".join(attempt.counters[1:]), attempt.ack_code or "none", item.attempts)
    return attempt.counters


def _send(item: OutboxItem, destination: HL7Destination, now: dt.datetime) -> _Attempt:
    """One MLLP round trip, judged; at the retry ceiling a failure holds the row for a person."""
    attempt = _round_trip(item, destination, now)
    if attempt.retry_at is None or item.attempts + 1 < destination.max_attempts:
        return attempt
    counters = tuple(c for c in attempt.counters if c != "retried") + ("gave_up",)
    return _Attempt(counters, ack_code=attempt.ack_code, from_receiver=attempt.from_receiver, retry_at=None,
                    error=f"{GAVE_UP}{item.attempts + 1} attempts (max_attempts, the retry ceiling); "
                          f"last: {attempt.error}")


def _round_trip(item: OutboxItem, destination: HL7Destination, now: dt.datetime) -> _Attempt:
    """One MLLP round trip, judged. Only an accepting ACK that echoes our MSH-10 delivers."""
    assert destination.host is not None and destination.port is not None
    try:
        wire = encode(item.payload, destination.charset)
    except UnencodableMessage as exc:  # resending will not help: a person decides
        return _Attempt(("unencodable", "held"), error=f"{UNENCODABLE}{exc} (the destination's charset)")
    ack: Ack | None = None
    problem = ""
    try:
        ack = send_message(destination.host, destination.port, wire, timeout_s=destination.ack_timeout_seconds,
                           charset=destination.charset)
    except MllpError as exc:
        problem = str(exc)
    # Counted from the end of this attempt (a pass may be long), or from the pass's clock when
    # a test moved it ahead.
    retry_at = max(now, utcnow()) + destination.retry_delay(item.attempts + 1)
    if ack is None:
        return _Attempt(("sent", "retried"), error=f"no ACK: {problem}", retry_at=retry_at)
    if ack.control_id != item.message_control_id:
        # Not our ACK (a confused engine or a stale reply): the message may not have been taken.
        return _Attempt(("sent", "retried"), retry_at=retry_at,
                        error=f"ACK for another message: MSA-2 {ack.control_id[:40]!r}, "
                              f"expected {item.message_control_id!r} (MSA-1 {ack.code[:2]!r})")
    if ack.accepted:
        return _Attempt(("sent", "accepted"), ack_code=ack.code)
    if ack.code not in ("AE", "AR", "CE", "CR"):
        return _Attempt(("sent", "retried"), retry_at=retry_at,
                        error=f"ACK with an unknown MSA-1 {ack.code[:10]!r}")
    answer = "rejected" if ack.code in ("AR", "CR") else "errors"
    text = ack.text or f"{ack.code} without an error text"
    if destination.on_refusal(ack.code) is OnRefusal.RETRY:
        return _Attempt(("sent", answer, "retried"), ack_code=ack.code, error=text, retry_at=retry_at,
                        from_receiver=True)
    return _Attempt(("sent", answer, "held"), ack_code=ack.code, error=text, from_receiver=True)


def _waits_for_earlier(session: Session, item: OutboxItem, report: Report) -> bool:
    """Is an earlier message for the same patient to the same destination still undelivered?

    "Same patient" is the patient id of the study's demographics; a study without one is
    its own patient (its versions still go in order). Rows are created in the order the
    reports were made, so a smaller outbox id is an earlier message.
    """
    study = session.get(Study, report.study_id)
    assert study is not None
    patient_id = (study.demographics or {}).get("patient_id")
    same_patient = (Study.demographics["patient_id"].as_string() == patient_id if patient_id
                    else Study.id == study.id)
    earlier = session.execute(
        sa.select(OutboxItem.id)
        .join(Report, Report.id == OutboxItem.report_id)
        .join(Study, Study.id == Report.study_id)
        .where(OutboxItem.destination == item.destination, OutboxItem.id < item.id,
               OutboxItem.state.in_(UNDELIVERED), same_patient)
        .limit(1)
    ).first()
    return earlier is not None


# ---------------------------------------------------------------- the daemon


def run_delivery_loop(
    engine: sa.Engine, destinations: Sequence[HL7Destination], *, poll_seconds: float = 5.0,
    stop: threading.Event | None = None, limit: int = 100,
    on_pass: Callable[[DeliverySummary], None] | None = None,
) -> DeliverySummary:
    """Deliver until stopped: a pass, then wait `poll_seconds` (at once again after a full pass).

    SIGTERM and SIGINT set `stop` when this runs in the main thread: the message being sent
    finishes (bounded by its ACK timeout) and is recorded, then the loop returns. A database
    outage is logged and waited out rather than ending the process.
    """
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    total = DeliverySummary()
    try:
        while not stop.is_set():
            try:
                summary = deliver_due(engine, destinations, limit=limit, stop=stop)
            except (OperationalError, InterfaceError) as exc:
                log.warning("delivery pass failed, database unreachable (%s); trying again", type(exc).__name__)
                stop.wait(poll_seconds)
                continue
            total.add(summary)
            if on_pass is not None:
                on_pass(summary)
            tried = summary.sent + summary.drafts_held + summary.unencodable
            if tried < limit:  # a full pass means more may be due now
                stop.wait(poll_seconds)
    finally:
        restore()
    return total


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM/SIGINT set `stop`; returns a function restoring the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current message", signum)
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
