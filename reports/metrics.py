"""What the database says about the running worklist, for the metrics exporter (worker/metrics.py).

    study_counts_by_state(session)     {state: count}: THE one query for "how many studies where"
    delivery_backlog(session, now)     undelivered HL7 messages per destination: queued, retrying,
                                       held for a person (the MLLP alert), oldest age
    AuditTail(engine).advance()        the audit events written since the last call, turned into
                                       counters (events by action, study transitions, delivery
                                       state changes) and stage latencies (time spent in each state)

Every query here must stay cheap with a million studies, because Prometheus asks every 15-60 s:

- `study_counts_by_state` reads the counters the database keeps in the transaction of every
  change (`reports.counts`; a GROUP BY over every study took about 240 ms at 1M studies,
  `benchmarks/metrics.py`), so the exporter reads it every scrape by default. With
  `ECGWL_METRICS_RECOUNT_SECONDS` > 0 it reads it that often (`counts_with_head`) and keeps
  the counts current in between from the audit tail: every state change is an audit row
  (`TailBatch.state_moves`).
- `delivery_backlog` reads only the rows not yet delivered (state pending/sent/error, the
  first column of `ix_outbox_state_next_attempt`), never the delivered history.
- `AuditTail` reads only the events after the last one it saw (primary key range), so its
  cost is the number of new events, not the size of the trail. Its counters start at zero
  when the exporter starts, as every Prometheus counter does (rate() copes with restarts).

Nothing here reads patient data: states, counts, destinations, actions and times only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from reports.counts import counts_by_state
from reports.db import AuditEvent, OutboxState, Study, StudyState
from reports.delivery_view import outbox_groups

# The audit actions that put a study INTO a state (its clock starts); `study.requeued` does
# not, so time in a queued state counts from the first enqueue, retries included.
_ENTERS_STATE = ("study.registered", "study.state")
# Where the pipeline's work is done and a draft waits for a person: the end of "to draft".
_DRAFT_STATE = StudyState.AWAITING_SIGNOFF.value
# States after which a study's clock is no longer needed by the tail (it forgets them).
_RESTING_STATES = frozenset({StudyState.SIGNED.value, StudyState.REJECTED.value,
                             StudyState.QUARANTINED.value, StudyState.FAILED.value})


def study_counts_by_state(session: Session) -> dict[str, int]:
    """How many studies are in each state (every state listed, 0 where none).

    Read from the counters the database keeps in the transaction of every change
    (`reports.counts`): exact, and a few small rows whatever the number of studies.
    """
    return counts_by_state(session)


def counts_with_head(engine: sa.Engine) -> tuple[dict[str, int], int]:
    """The counts by state and the id of the newest audit event they include, from ONE snapshot.

    A state change and its audit row commit together, and audit ids are handed out under the
    audit head's lock in commit order, so these counts are exactly the sum of every audit event
    up to that id: the moves of later events can be added to them one by one.
    """
    with Session(engine) as session:
        if engine.dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        head = session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0)))
        counts = study_counts_by_state(session)
    return counts, int(head or 0)


class DestinationBacklog(BaseModel):
    """The HL7 messages one destination has not acknowledged yet."""

    destination: str
    queued: int = 0  # pending, never tried
    retrying: int = 0  # pending after failed attempts (connection refused, timeout, AE with retry)
    needs_a_person: int = 0  # state `error`: refused and held, or an alert below: nothing goes until someone acts
    gave_up: int = 0  # of those: the retry ceiling (max_attempts) was reached
    unencodable: int = 0  # of those: the destination's character set cannot carry the message
    sent_unacked: int = 0  # state `sent`: written, no ACK recorded yet
    oldest_seconds: float = 0.0  # age of the oldest of these rows

    @property
    def undelivered(self) -> int:
        return self.queued + self.retrying + self.needs_a_person + self.sent_unacked


_UNDELIVERED = (OutboxState.PENDING.value, OutboxState.SENT.value, OutboxState.ERROR.value)


def delivery_backlog(session: Session, now: dt.datetime | None = None) -> list[DestinationBacklog]:
    """Per destination, the messages not yet delivered, by why (one query over undelivered rows only)."""
    now = now or dt.datetime.now(dt.UTC)
    by_name: dict[str, DestinationBacklog] = {}
    for destination, state, tried, gave_up, unencodable, count, oldest in outbox_groups(session, _UNDELIVERED):
        backlog = by_name.setdefault(destination, DestinationBacklog(destination=destination))
        if state == OutboxState.PENDING.value:
            if tried:
                backlog.retrying += count
            else:
                backlog.queued += count
        elif state == OutboxState.SENT.value:
            backlog.sent_unacked += count
        else:
            backlog.needs_a_person += count
            backlog.gave_up += count if gave_up else 0
            backlog.unencodable += count if unencodable else 0
        if oldest is not None:
            backlog.oldest_seconds = max(backlog.oldest_seconds, (now - oldest).total_seconds())
    return sorted(by_name.values(), key=lambda b: b.destination)


@dataclass(frozen=True)
class StateSpan:
    """A study spent `seconds` in `left` before it moved to `entered`."""

    left: str
    entered: str
    seconds: float


@dataclass
class TailBatch:
    """What the audit events since the last `advance` say, for the exporter to count."""

    actions: dict[str, int] = field(default_factory=dict)  # events by action
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)  # study (from, to)
    delivery_changes: dict[tuple[str, str], int] = field(default_factory=dict)  # (destination, to)
    spans: list[StateSpan] = field(default_factory=list)  # time in each state left
    to_draft_seconds: list[float] = field(default_factory=list)  # registration -> awaiting sign-off
    # (audit event id, state left or None for a new study, state entered): keeps counts current
    state_moves: list[tuple[int, str | None, str]] = field(default_factory=list)
    events: int = 0


@dataclass
class AuditTail:
    """Reads the audit trail forward from where it last stopped, and remembers when each
    study in the pipeline entered its current state (to time the state when it leaves it).

    `advance()` starts from the trail's current end the first time it is called (no replay
    of history), then reads at most `max_events` per call, so a backlog of events after a
    pause is worked off over a few scrapes instead of one long query.
    """

    engine: sa.Engine
    max_events: int = 50_000
    last_id: int | None = None
    entered_at: dict[int, tuple[str, dt.datetime]] = field(default_factory=dict)

    def advance(self) -> TailBatch:
        batch = TailBatch()
        with Session(self.engine) as session:
            if self.last_id is None:
                self.last_id = session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.id), 0)))
                return batch
            events = session.execute(
                sa.select(AuditEvent.id, AuditEvent.at, AuditEvent.action, AuditEvent.entity_type,
                          AuditEvent.entity_id, AuditEvent.details)
                .where(AuditEvent.id > self.last_id).order_by(AuditEvent.id).limit(self.max_events)
            ).all()
            if not events:
                return batch
            self._load_unknown_clocks(session, events)
            leaving_for_draft = []
            for event_id, at, action, entity_type, entity_id, details in events:
                batch.events += 1
                batch.actions[action] = batch.actions.get(action, 0) + 1
                if entity_type == "study":
                    drafted = self._study_event(batch, event_id, int(entity_id), action, at, details or {})
                    if drafted:
                        leaving_for_draft.append((int(entity_id), at))
                elif entity_type == "outbox" and action.startswith("outbox.") and details:
                    key = (str(details.get("destination", "")), action.removeprefix("outbox."))
                    batch.delivery_changes[key] = batch.delivery_changes.get(key, 0) + 1
                self.last_id = event_id
            batch.to_draft_seconds = self._to_draft(session, leaving_for_draft)
        return batch

    def _study_event(self, batch: TailBatch, event_id: int, study_id: int, action: str, at: dt.datetime,
                     details: dict) -> bool:
        """Count one study event; True when the study just reached awaiting sign-off."""
        if action == "study.registered":
            state = str(details.get("state", StudyState.RECEIVED.value))
            self.entered_at[study_id] = (state, at)
            batch.state_moves.append((event_id, None, state))
            return False
        if action != "study.state":
            return False
        left, entered = str(details.get("from", "")), str(details.get("to", ""))
        batch.transitions[(left, entered)] = batch.transitions.get((left, entered), 0) + 1
        batch.state_moves.append((event_id, left, entered))
        known = self.entered_at.get(study_id)
        if known is not None:
            batch.spans.append(StateSpan(left, entered, max(0.0, (at - known[1]).total_seconds())))
        if entered in _RESTING_STATES:
            self.entered_at.pop(study_id, None)
        else:
            self.entered_at[study_id] = (entered, at)
        return entered == _DRAFT_STATE

    def _load_unknown_clocks(self, session: Session, events: Iterable[sa.Row]) -> None:
        """For studies whose last state change happened before this tail started (the exporter
        restarted), look up when they entered their state: one indexed query per batch."""
        unknown = {str(entity_id) for _, _, action, entity_type, entity_id, _ in events
                   if entity_type == "study" and action == "study.state"
                   and int(entity_id) not in self.entered_at}
        if not unknown:
            return
        first_new = min(event_id for event_id, *_ in events)
        rows = session.execute(
            sa.select(AuditEvent.entity_id, sa.func.max(AuditEvent.at))
            .where(AuditEvent.entity_type == "study", AuditEvent.entity_id.in_(sorted(unknown)),
                   AuditEvent.action.in_(_ENTERS_STATE), AuditEvent.id < first_new)
            .group_by(AuditEvent.entity_id)
        ).all()
        for entity_id, at in rows:
            self.entered_at[int(entity_id)] = ("", at)

    @staticmethod
    def _to_draft(session: Session, drafted: list[tuple[int, dt.datetime]]) -> list[float]:
        """Seconds from registration to awaiting sign-off, for the studies that just got there."""
        if not drafted:
            return []
        created = dict(session.execute(
            sa.select(Study.id, Study.created_at).where(Study.id.in_(sorted({i for i, _ in drafted})))
        ).all())
        return [max(0.0, (at - created[i]).total_seconds()) for i, at in drafted if i in created]
