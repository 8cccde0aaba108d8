"""Every write the worker and the review app make to the database, each with its audit row.

The rule this module exists for: a state change of a study, a report or a delivery and
the audit event that records it are written in the SAME transaction, so neither can exist
without the other. Callers open a transaction with `session_scope(engine)` and call the
functions below; none of them commits.

    engine & schema   make_engine(url), session_scope(engine), upgrade(url), downgrade(url)
    studies           register_study, register_studies, get_study, claim_study, study_by_sha256, set_state, quarantine, fail,
                      save_prepared, save_interpretation, studies_in_state_older_than
    reports           draft_report (build + validate + store v1 + outbox, the worker's call),
                      publish_draft(s) (v1's outbound file is written: -> awaiting_signoff),
                      create_draft_report (store a given v1 message), add_report_version
                      (sign / amend / reject), latest_report, order_numbers
    outbox            add_outbox, due_outbox, record_delivery, hold_outbox, release_outbox

Idempotency (tasks are delivered at least once): `register_study` is keyed by the file's
sha256, `create_draft_report` by (study, version 1), `add_outbox` by (report, destination),
and `set_state` to the state a study is already in changes nothing (except a queued
state, where it counts a re-enqueue).

No function here logs or audits patient identifiers: audit details carry ids, hashes,
states and codes only.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, defer

from ingest.ecg import Demographics, Measurements
from ingest.interpretation import Interpretation
from ingest.measure.measured import GroundingFeatures
from reports import audit, row_locks
from reports.db import OutboxItem, OutboxState, Report, ReportStatus, Study, StudyState, utcnow
from reports.hl7_oru import HL7Endpoints, OruReport, OruStudy, build_oru, new_control_id, read_header
from reports.hl7_validate import validate_oru
from reports.patient_keys import ID_KEY_LENGTH, search_key

# `migrations` is a sibling top-level package, installed beside `reports` (or, in an editable
# install, both live in the checkout).
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

S = StudyState
QUEUED_STATES: frozenset[StudyState] = frozenset({S.QUEUED_PREPARE, S.QUEUED_INTERPRET})

# The state machine. A move not listed here raises InvalidTransition. The three waiting
# states (queued_prepare, queued_interpret, interpreted) may be leased to one worker at a
# time (reports/leases.py; the rules are in worker/leases.py).
TRANSITIONS: dict[StudyState, frozenset[StudyState]] = {
    S.RECEIVED: frozenset({S.QUEUED_PREPARE, S.QUARANTINED, S.FAILED}),
    S.QUEUED_PREPARE: frozenset({S.QUEUED_PREPARE, S.PREPARED, S.QUARANTINED, S.FAILED}),
    S.PREPARED: frozenset({S.QUEUED_INTERPRET, S.FAILED}),
    # Quarantine from the later waiting states: a study that keeps killing its workers
    # (poison), or whose draft cannot be a valid message because of what the file holds.
    S.QUEUED_INTERPRET: frozenset({S.QUEUED_INTERPRET, S.INTERPRETED, S.QUARANTINED, S.FAILED}),
    # awaiting_signoff only once the draft's outbound .hl7 file is written (`publish_draft`).
    S.INTERPRETED: frozenset({S.AWAITING_SIGNOFF, S.QUARANTINED, S.FAILED}),
    S.AWAITING_SIGNOFF: frozenset({S.SIGNED, S.REJECTED}),
    S.SIGNED: frozenset(),  # corrections are new report versions; the study stays signed
    S.REJECTED: frozenset(),
    # An operator may retry after fixing the cause (`ecg-worklist requeue`).
    S.QUARANTINED: frozenset({S.QUEUED_PREPARE}),
    S.FAILED: frozenset({S.QUEUED_PREPARE, S.QUEUED_INTERPRET, S.INTERPRETED}),
}

# Which study state each kind of report version moves the study to.
_STUDY_STATE_FOR_REPORT = {
    ReportStatus.DRAFT: S.AWAITING_SIGNOFF,
    ReportStatus.SIGNED: S.SIGNED,
    ReportStatus.AMENDED: S.SIGNED,
    ReportStatus.REJECTED: S.REJECTED,
}
_RESULT_STATUSES_FOR_REPORT = {
    ReportStatus.DRAFT: {"P", "R"},
    ReportStatus.SIGNED: {"F"},
    ReportStatus.AMENDED: {"C"},
    ReportStatus.REJECTED: {"X"},
}


class StoreError(Exception):
    """Base class of the errors this module raises on purpose."""


class StudyNotFound(StoreError, LookupError):
    pass


class InvalidTransition(StoreError, ValueError):
    def __init__(self, study_id: int, current: str, wanted: str) -> None:
        super().__init__(f"study {study_id}: cannot move from {current} to {wanted}")
        self.study_id, self.current, self.wanted = study_id, current, wanted


class InvalidMessage(StoreError, ValueError):
    """An HL7 message failed validation; it was NOT stored."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("HL7 message refused: " + "; ".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- engine and schema


def json_text(value: Any) -> str:
    """A JSON column's text, as json.dumps writes it (keys made strings, unicode kept; pydantic's JSON
    dumps carry no NaN), by orjson: five times faster on a study's features (~70 kB, written once
    and read by every later stage and page). The audit chain hashes its own canonical JSON
    (`reports.audit`), so the column's spelling is not part of any hash."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")


def make_engine(url: str, *, echo: bool = False) -> sa.Engine:
    """An engine for `url`. SQLite gets foreign keys, WAL, a busy timeout, and BEGIN IMMEDIATE.

    BEGIN IMMEDIATE takes SQLite's write lock when a transaction starts, so concurrent
    writers queue up instead of failing mid-transaction, and audit appends are serialised.
    JSON columns are written and read with orjson (`json_text`).
    """
    json_codec = {"json_serializer": json_text, "json_deserializer": orjson.loads}
    if not url.startswith("sqlite"):
        return sa.create_engine(url, echo=echo, pool_pre_ping=True, **json_codec)
    engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 30}, **json_codec)

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook below start transactions
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if ":memory:" not in url and url not in ("sqlite://", "sqlite+pysqlite://"):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def session_scope(engine: sa.Engine) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back if it raises."""
    # A plain Session, not a sessionmaker made here: sessionmaker() builds a new Session
    # subclass on every call, which cost about 0.3 ms of CPU per transaction (a web request
    # opens one or more; benchmarks/review_queue.py).
    with Session(bind=engine, expire_on_commit=False) as session, session.begin():
        yield session


def alembic_config(url: str) -> Any:
    """The Alembic configuration for this project's migrations, pointed at `url`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation: a password may contain one.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _run_alembic(url: str, action: str, revision: str) -> None:
    from alembic import command

    config = alembic_config(url)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` (the only way the schema is made)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    _run_alembic(url, "upgrade", revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Take the schema at `url` down to `revision` ("base" drops everything, audit included)."""
    _run_alembic(url, "downgrade", revision)


def current_revision(url: str) -> str | None:
    """The Alembic revision the database at `url` is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


# ---------------------------------------------------------------- studies


def _audit_study(session: Session, study: Study, action: str, actor: str, details: dict[str, Any]) -> None:
    audit.append(session, actor=actor, action=action, entity_type="study", entity_id=study.id, details=details)


def _dialect_insert(session: Session) -> Any:
    """The database's own INSERT construct (both have ON CONFLICT DO NOTHING and RETURNING)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


@dataclass(frozen=True)
class NewStudy:
    """One ECG to register: its content hash and where it was found (and kept)."""

    sha256: str
    source_format: str
    source_path: str
    archive_path: str | None = None
    origin: str | None = None


@dataclass(frozen=True)
class Registered:
    """The study a `NewStudy` is: the new one (`created`), or the one its content already had."""

    study: Study
    created: bool


def register_study(
    session: Session, *, sha256: str, source_format: str, source_path: str,
    archive_path: str | None = None, origin: str | None = None, actor: str = "ingest",
) -> tuple[Study, bool]:
    """The study for this file content: `(study, True)` when new, `(existing, False)` when seen."""
    [registered] = register_studies(session, [NewStudy(sha256=sha256, source_format=str(source_format),
                                                       source_path=str(source_path), archive_path=archive_path,
                                                       origin=origin)], actor=actor)
    return registered.study, registered.created


def register_studies(session: Session, wanted: Sequence[NewStudy], *, actor: str = "ingest") -> list[Registered]:
    """The study of each entry's content, in the entries' order, new ones registered with their audit rows.

    One SELECT finds the content seen before and one INSERT adds the rest, whatever their number
    (a scan's or a batch's arrivals), instead of two statements an ECG. The same content twice in
    `wanted` is one study: the first entry registers it, the later ones get it with created False.

    Safe under concurrency: two watchers registering the same content at once get one
    study (the unique sha256 decides; the loser reads the winner's row).
    """
    for entry in wanted:
        if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
            raise ValueError("sha256 must be 64 lowercase hex digits")
    hashes = list(dict.fromkeys(entry.sha256 for entry in wanted))
    # Content seen before (a duplicate drop, or a stopped batch resumed over what it registered): only its
    # identity and state are wanted here, so its JSON documents are not read (they load on first access).
    found = _studies_by_sha256(session, hashes)
    first_entries = {entry.sha256: entry for entry in reversed(wanted)}  # the first entry of each content
    new = [first_entries[sha] for sha in hashes if sha not in found]
    created: set[str] = set()
    if new:
        now = utcnow()
        # INSERT ... ON CONFLICT (sha256) DO NOTHING RETURNING the rows: when another transaction registers
        # the same content at the same moment, the database waits for it and inserts nothing for that
        # row, with no savepoint to set and release around the insert.
        inserted = session.execute(
            _dialect_insert(session)(Study).values([
                {"sha256": entry.sha256, "source_format": entry.source_format, "source_path": entry.source_path,
                 "archive_path": entry.archive_path, "origin": entry.origin, "state": S.RECEIVED.value,
                 "state_changed_at": now, "created_at": now, "attempts": 0, "critical": False}
                for entry in new
            ]).on_conflict_do_nothing(index_elements=["sha256"]).returning(Study)
        ).scalars().all()
        with audit.batched(session):  # the batch's audit rows in one statement
            for study in sorted(inserted, key=lambda study: study.id):  # audit rows in the order of the ids
                found[study.sha256] = study
                created.add(study.sha256)
                entry = first_entries[study.sha256]
                _audit_study(session, study, "study.registered", actor,
                             {"sha256": study.sha256, "source_format": entry.source_format, "origin": entry.origin,
                              "state": study.state})
                # A row this transaction inserted is invisible to others until the commit, so it is as good as
                # locked: a state change in the same transaction (the batch queues what it registers) reads nothing.
                row_locks.remember(session, Study, study.id, study)
        raced = [entry.sha256 for entry in new if entry.sha256 not in found]
        if raced:  # another transaction registered the same content first
            found |= _studies_by_sha256(session, raced)
            if missing := [sha for sha in raced if sha not in found]:
                raise RuntimeError(f"study with sha256 {missing[0][:12]}... neither inserted nor found")
    results = []
    for entry in wanted:
        results.append(Registered(study=found[entry.sha256], created=entry.sha256 in created))
        created.discard(entry.sha256)  # a later entry of the same content is not new
    return results


def _studies_by_sha256(session: Session, hashes: Sequence[str]) -> dict[str, Study]:
    """The studies of these contents that exist, by hash, without their JSON documents."""
    if not hashes:
        return {}
    query = sa.select(Study).options(*without_content()).where(Study.sha256.in_(hashes))
    return {study.sha256: study for study in session.execute(query).scalars()}


# The study's JSON documents: read only by the code that uses them (the interpret stage the
# features, the report the demographics, measurements and interpretation), never by a lock
# or a state change. A deferred column loads on first access, in the same transaction.
CONTENT_COLUMNS = ("demographics", "measurements", "features", "interpretation", "triage", "measurement_sources")
# What `draft_report` builds the message from.
DRAFT_CONTENT = ("demographics", "measurements", "interpretation", "measurement_sources")


def without_content(but: Iterable[str] = ()) -> tuple[Any, ...]:
    """Loader options for a `select(Study)` that leaves the JSON documents unread (deferred),
    but those named in `but`."""
    return _deferred_content(frozenset(but))


@functools.lru_cache(maxsize=None)
def _deferred_content(wanted: frozenset[str]) -> tuple[Any, ...]:
    # Made once per set of wanted columns: loader options are immutable, and building them
    # (attribute lookups, option objects) cost ~0.1 ms per select, several selects per study.
    return tuple(defer(getattr(Study, name)) for name in CONTENT_COLUMNS if name not in wanted)


def load_content(session: Session, study: Study, *names: str) -> None:
    """Read the study's JSON documents `names` (all of them when none are named) that are not
    loaded yet, in one SELECT, instead of one per attribute on first access."""
    unloaded = sa.inspect(study).unloaded
    missing = [name for name in (names or CONTENT_COLUMNS) if name in unloaded]
    if missing:
        session.refresh(study, attribute_names=missing)


def get_study(session: Session, study_id: int, *, for_update: bool = False,
              content: bool | Iterable[str] = True) -> Study:
    """The study `study_id` (locked until the transaction ends with `for_update`).

    A study this transaction has locked already is returned as it is, without selecting it
    again: nobody else can have changed the row since, and the session's copy carries this
    transaction's own changes. So a stage that claims a study and then saves, moves and
    audits it reads the row once. With `content=False` the JSON documents are left unread
    until something touches them (`CONTENT_COLUMNS`); with a list of names, only those are read.
    """
    if for_update and (locked := row_locks.held(session, Study, study_id)) is not None:
        return locked  # type: ignore[no-any-return]
    query = sa.select(Study).where(Study.id == study_id)
    if content is not True:
        query = query.options(*without_content(() if content is False else content))
    if for_update:
        # Refresh a copy this session already holds: the lock is only worth the row as it is now.
        query = query.with_for_update().execution_options(populate_existing=True)
    study = session.execute(query).scalar_one_or_none()
    if study is None:
        raise StudyNotFound(f"study {study_id} does not exist")
    if for_update:
        row_locks.remember(session, Study, study_id, study)
    return study


def claim_study(session: Session, study_id: int, expected_state: StudyState | str, *,
                content: Iterable[str] = ()) -> Study | None:
    """The study, locked for this transaction, if it is in `expected_state`; else None.

    How a task starts: `claim_study(session, id, "queued_prepare")` returns None for a
    stale or redelivered task (the study moved on, or was quarantined), which the task
    then skips. Raises StudyNotFound for an unknown id. Of the JSON documents only `content`
    is read (e.g. `DRAFT_CONTENT` before `draft_report`).
    """
    study = get_study(session, study_id, for_update=True, content=content)
    return study if study.state == StudyState(expected_state).value else None


def claim_studies(session: Session, study_ids: Iterable[int], expected_state: StudyState | str, *,
                  content: Iterable[str] = ()) -> list[int]:
    """`claim_study` for many at once, in one SELECT: the ids (ascending) of those in `expected_state`,
    now locked for this transaction. The rows are locked in id order, as one at a time in that order
    would, so two batches that share studies cannot deadlock. Unknown ids are left out. Of the JSON
    documents only `content` is read."""
    ids = sorted(set(study_ids))
    if not ids:
        return []
    query = (sa.select(Study).options(*without_content(content)).where(Study.id.in_(ids)).order_by(Study.id)
             .with_for_update().execution_options(populate_existing=True))
    claimed = []
    for study in session.execute(query).scalars():
        row_locks.remember(session, Study, study.id, study)
        if study.state == StudyState(expected_state).value:
            claimed.append(study.id)
    return claimed


def study_by_sha256(session: Session, sha256: str, *, content: bool = True) -> Study | None:
    """The study of this file content, if any; with `content=False` its JSON documents are left unread
    (`CONTENT_COLUMNS`: a prepared study's features alone are some 50-65 kB of JSON)."""
    query = sa.select(Study).where(Study.sha256 == sha256)
    if not content:
        query = query.options(*without_content())
    return session.execute(query).scalar_one_or_none()


def set_state(
    session: Session, study_id: int, new_state: StudyState | str, *, actor: str,
    details: dict[str, Any] | None = None, error: str | None = None,
) -> Study:
    """Move a study to `new_state` along `TRANSITIONS`, with its audit row.

    - to the state it is already in: nothing changes (a redelivered task is harmless),
      except for a queued state, where it is a re-enqueue: `attempts` + 1, the clock restarts;
    - entering a queued state from elsewhere sets `attempts` to 1; reaching `prepared`
      or `interpreted` resets it to 0 and clears `last_error`;
    - any move to another state ends the study's lease and retry time (the work of the
      state it leaves is done) and resets `holder_deaths`, except into `quarantined` or
      `failed`, where the count stays as evidence;
    - `error` is stored in `last_error` (text about the file or the failure, never
      patient identifiers) and copied into the audit details.
    Raises InvalidTransition for any other move.
    """
    new_state = StudyState(new_state)
    study = get_study(session, study_id, for_update=True, content=False)
    current = StudyState(study.state)
    if new_state == current and new_state not in QUEUED_STATES:
        return study
    if new_state not in TRANSITIONS[current]:
        raise InvalidTransition(study_id, current.value, new_state.value)
    if new_state in QUEUED_STATES:
        study.attempts = study.attempts + 1 if new_state == current else 1
    elif new_state in (S.PREPARED, S.INTERPRETED):
        study.attempts = 0
        study.last_error = None
    if error is not None:
        study.last_error = error
    if new_state != current:
        study.lease_holder = study.lease_expires_at = study.retry_at = None
        if new_state not in (S.QUARANTINED, S.FAILED):
            study.holder_deaths = 0
    study.state = new_state.value
    study.state_changed_at = utcnow()
    record = {**(details or {}), "from": current.value, "to": new_state.value, "attempts": study.attempts}
    if error is not None:
        record["error"] = error
    action = "study.requeued" if new_state == current else "study.state"
    _audit_study(session, study, action, actor, record)
    # Not flushed here: the session writes the row before its next query or at commit, with the other
    # state changes of the transaction in one UPDATE (a flush per change was one statement each).
    return study


def quarantine(session: Session, study_id: int, reason: str, *, actor: str) -> Study:
    """Mark the study's input unusable (the `IngestError` reason, without the path)."""
    return set_state(session, study_id, S.QUARANTINED, actor=actor, error=reason, details={"quarantined": True})


def fail(session: Session, study_id: int, error: str, *, actor: str) -> Study:
    """An error retrying would only repeat (a bug, an interpreter crash); an operator may re-queue it."""
    return set_state(session, study_id, S.FAILED, actor=actor, error=error)


def studies_in_state_older_than(
    session: Session, states: Iterable[StudyState | str], older_than: dt.timedelta, *,
    now: dt.datetime | None = None, limit: int | None = None,
) -> list[Study]:
    """Studies sitting in one of `states` since before `now - older_than`, oldest first.

    The reconciler's question: a study queued this long lost its task (a Redis restart,
    a killed worker) and must be enqueued again.
    """
    cutoff = (now or utcnow()) - older_than
    query = (
        sa.select(Study)
        .where(Study.state.in_([StudyState(s).value for s in states]), Study.state_changed_at < cutoff)
        .order_by(Study.state_changed_at, Study.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.execute(query).scalars())


def _dump(value: Any) -> Any:
    """Pydantic models become JSON-ready dicts; dicts and None pass through."""
    if value is None or isinstance(value, dict):
        return value
    return value.model_dump(mode="json", by_alias=True)


def save_prepared(
    session: Session, study_id: int, *, actor: str,
    demographics: Demographics | dict[str, Any] | None = None,
    measurements: Measurements | dict[str, Any] | None = None,
    features: GroundingFeatures | dict[str, Any] | None = None,
    image_path: str | None = None,
    measurement_sources: dict[str, str] | None = None,
) -> Study:
    """Store what preparation read and measured, and move the study to `prepared`.

    `measurements` are the global measurements to report, one value per quantity (the
    device's where it printed one, else the measured one: `reports.measurements.merge`), and
    `measurement_sources` says which ("device" or "computed") per field. Idempotent: a study
    that is already prepared (or further) is returned unchanged.
    """
    study = get_study(session, study_id, for_update=True, content=False)
    if StudyState(study.state) != S.QUEUED_PREPARE:
        if study.state in (S.PREPARED, S.QUEUED_INTERPRET, S.INTERPRETED, S.AWAITING_SIGNOFF, S.SIGNED, S.REJECTED):
            return study
        raise InvalidTransition(study_id, study.state, S.PREPARED.value)
    demographics_json = _dump(demographics)
    study.demographics = demographics_json
    study.acquired_at = _acquired_at(demographics_json)
    study.patient_id_key, study.patient_name_key, study.accession_key = _search_keys(demographics_json)
    study.measurements = _dump(measurements)
    study.measurement_sources = dict(measurement_sources) if measurement_sources is not None else None
    study.features = _dump(features)
    study.image_path = image_path
    return set_state(session, study_id, S.PREPARED, actor=actor,
                     details={"has_features": features is not None, "has_image": image_path is not None})


def _search_keys(demographics: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """(patient id, name, accession) as search keys, for the review page's search."""
    found = demographics or {}
    return (search_key(found.get("patient_id"), ID_KEY_LENGTH), search_key(found.get("patient_name")),
            search_key(found.get("accession"), ID_KEY_LENGTH))


def _acquired_at(demographics: dict[str, Any] | None) -> dt.datetime | None:
    """Acquisition time for sorting. Devices record naive local time; stored as if UTC."""
    raw = (demographics or {}).get("acquired_at")
    if not raw:
        return None
    value = dt.datetime.fromisoformat(raw)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def save_interpretation(
    session: Session, study_id: int, interpretation: Interpretation, *, actor: str,
    critical: bool = False, labels: list[str] | None = None, flags: list[str] | None = None,
    triage: dict[str, Any] | None = None,
) -> Study:
    """Store the interpreter's output (verbatim and parsed) and move the study to `interpreted`.

    `labels` default to the parsed answer labels; `flags` are the claim checks' findings
    (e.g. "QTc claimed 420 ms, measured 510 ms"), kept beside the interpretation and shown
    to the cardiologist. Idempotent like `save_prepared`.
    """
    study = get_study(session, study_id, for_update=True, content=False)
    if StudyState(study.state) != S.QUEUED_INTERPRET:
        if study.state in (S.INTERPRETED, S.AWAITING_SIGNOFF, S.SIGNED, S.REJECTED):
            return study
        raise InvalidTransition(study_id, study.state, S.INTERPRETED.value)
    record = interpretation.model_dump(mode="json")
    record["flags"] = list(flags or [])
    study.interpretation = record
    study.labels = list(labels if labels is not None else interpretation.parsed.labels)
    study.critical = bool(critical)
    study.triage = triage  # reports.triage.Triage: who found what (None: not triaged, e.g. older rows)
    return set_state(session, study_id, S.INTERPRETED, actor=actor, details={
        "interpreter": interpretation.interpreter, "interpreter_version": interpretation.interpreter_version,
        "demonstration": interpretation.is_demonstration, "critical": study.critical,
        "critical_by": sorted({f["by"] for f in (triage or {}).get("findings", [])}),
        "well_formed": interpretation.parsed.well_formed, "flags": len(record["flags"]),
    })


# ---------------------------------------------------------------- reports


def order_numbers(session: Session, study: Study) -> tuple[str, str]:
    """(placer, filler) order numbers of the study, fixed on first use and never changed.

    The placer number is the accession number when the source had one (the order the
    hospital placed), else one made here; the filler number is this system's own.
    """
    if study.placer_order_number is None or study.filler_order_number is None:
        accession = (study.demographics or {}).get("accession")
        study.placer_order_number = study.placer_order_number or (accession or f"ECG{study.id}")[:64]
        study.filler_order_number = study.filler_order_number or f"ECGWL{study.id}"
        # Written with the transaction's next flush (the report's INSERT follows at once).
    return study.placer_order_number, study.filler_order_number


def latest_report(session: Session, study_id: int) -> Report | None:
    return session.execute(
        sa.select(Report).where(Report.study_id == study_id).order_by(Report.version.desc()).limit(1)
    ).scalar_one_or_none()


def _report_by_version(session: Session, study_id: int, version: int) -> Report | None:
    return session.execute(
        sa.select(Report).where(Report.study_id == study_id, Report.version == version)
    ).scalar_one_or_none()


def _checked_message(message: str, study: Study, status: ReportStatus, *,
                     built_here: bool = False) -> tuple[str, str]:
    """Validate `message` for this study and kind of report; (control id, result status).
    `built_here`: `build_oru` made it in this call (a fixed structure, lengths checked as written)."""
    problems = validate_oru(message, structure=not built_here)
    header = read_header(message)
    placer, filler = study.placer_order_number, study.filler_order_number
    if header.result_status not in _RESULT_STATUSES_FOR_REPORT[status]:
        allowed = "/".join(sorted(_RESULT_STATUSES_FOR_REPORT[status]))
        problems.append(f"a {status.value} report needs OBR-25 {allowed}, the message has {header.result_status!r}")
    if placer is not None and header.placer_order_number != placer:
        problems.append(f"OBR-2 {header.placer_order_number!r} is not the study's placer order number")
    if filler is not None and header.filler_order_number != filler:
        problems.append(f"OBR-3 {header.filler_order_number!r} is not the study's filler order number")
    if problems:
        raise InvalidMessage(problems)
    return header.control_id, header.result_status


def create_draft_report(
    session: Session, study_id: int, message: str, *, created_by: str, actor: str,
    impression: str | None = None, labels: list[str] | None = None, publish: bool = True,
) -> Report:
    """Store the machine draft (report version 1) and move the study to `awaiting_signoff`
    (with `publish=False` the study stays `interpreted` until `publish_draft`).

    The message must validate (`validate_oru`), carry OBR-25 P or R and the study's order
    numbers (see `order_numbers`); otherwise InvalidMessage is raised and nothing is
    stored. Idempotent: when version 1 exists it is returned unchanged.
    """
    study = get_study(session, study_id, for_update=True, content=False)
    existing = _report_by_version(session, study_id, 1)
    if existing is not None:
        return existing
    if StudyState(study.state) != S.INTERPRETED:
        raise InvalidTransition(study_id, study.state, S.AWAITING_SIGNOFF.value)
    return _insert_report(session, study, 1, message, status=ReportStatus.DRAFT, created_by=created_by,
                          actor=actor, impression=impression, labels=labels, move_study=publish)


def add_report_version(
    session: Session, study_id: int, message: str, *, status: ReportStatus | str, actor: str,
    created_by: str, impression: str | None = None, labels: list[str] | None = None,
    signed_by: str | None = None, signed_at: dt.datetime | None = None, destinations: Iterable[str] = (),
    measurements: dict[str, Any] | None = None, audit_details: dict[str, Any] | None = None,
) -> Report:
    """Store the next report version after a cardiologist's act, and move the study.

    `measurements` ({"values", "sources"}) are what the version sends; `audit_details` what the
    cardiologist confirmed (statements, impression, entered measurements, an amendment's reason
    and changes), written into the report's audit row.

    - `signed`   (OBR-25 F) from a study awaiting sign-off; the study becomes `signed`;
    - `amended`  (C) a correction of a signed study; it stays `signed`;
    - `rejected` (X) the draft is withdrawn; the study becomes `rejected`.
    The message is validated as in `create_draft_report`. Signing and amending need
    `signed_by`. One outbox row is queued per destination. Returns the new report (its
    version is the previous one + 1).
    """
    status = ReportStatus(status)
    if status is ReportStatus.DRAFT:
        raise ValueError("a draft is version 1: use create_draft_report")
    if status in (ReportStatus.SIGNED, ReportStatus.AMENDED) and not signed_by:
        raise ValueError(f"a {status.value} report needs signed_by")
    study = get_study(session, study_id, for_update=True, content=False)
    current = StudyState(study.state)
    needed = S.SIGNED if status is ReportStatus.AMENDED else S.AWAITING_SIGNOFF
    if current != needed:
        raise InvalidTransition(study_id, current.value, _STUDY_STATE_FOR_REPORT[status].value)
    previous = latest_report(session, study_id)
    version = (previous.version if previous else 0) + 1
    report = _insert_report(session, study, version, message, status=status, created_by=created_by, actor=actor,
                            impression=impression, labels=labels, signed_by=signed_by,
                            signed_at=signed_at or (utcnow() if signed_by else None), measurements=measurements,
                            audit_details=audit_details)
    add_outboxes(session, [report], destinations, actor=actor)
    return report


def _new_report(
    session: Session, study: Study, version: int, message: str, *, status: ReportStatus, created_by: str,
    impression: str | None, labels: list[str] | None, signed_by: str | None = None,
    signed_at: dt.datetime | None = None, measurements: dict[str, Any] | None = None, built_here: bool = False,
) -> Report:
    """The report row for `message`, checked (`_checked_message`) and not yet added to the session; the
    study's order numbers are fixed first, as the message must carry them. InvalidMessage if it fails."""
    order_numbers(session, study)
    control_id, result_status = _checked_message(message, study, status, built_here=built_here)
    return Report(
        study_id=study.id, version=version, status=status.value, result_status=result_status,
        hl7_message=message, message_control_id=control_id, impression=impression,
        labels=list(labels) if labels is not None else None, created_by=created_by,
        signed_by=signed_by, signed_at=signed_at, created_at=utcnow(), measurements=measurements,
    )


def _audit_report(session: Session, report: Report, *, actor: str, audit_details: dict[str, Any] | None = None) -> None:
    """The audit row of a stored report (its id known: after the flush that inserted it)."""
    audit.append(session, actor=actor, action=f"report.{report.status}", entity_type="report", entity_id=report.id,
                 details={"study_id": report.study_id, "version": report.version,
                          "result_status": report.result_status, "message_control_id": report.message_control_id,
                          "created_by": report.created_by, "signed_by": report.signed_by} | (audit_details or {}))


def _insert_report(
    session: Session, study: Study, version: int, message: str, *, status: ReportStatus, created_by: str,
    actor: str, impression: str | None, labels: list[str] | None,
    signed_by: str | None = None, signed_at: dt.datetime | None = None, move_study: bool = True,
    measurements: dict[str, Any] | None = None, audit_details: dict[str, Any] | None = None,
    built_here: bool = False,
) -> Report:
    report = _new_report(session, study, version, message, status=status, created_by=created_by,
                         impression=impression, labels=labels, signed_by=signed_by, signed_at=signed_at,
                         measurements=measurements, built_here=built_here)
    session.add(report)
    session.flush()
    _audit_report(session, report, actor=actor, audit_details=audit_details)
    target = _STUDY_STATE_FOR_REPORT[status]
    if move_study and StudyState(study.state) != target:
        set_state(session, study.id, target, actor=actor, details={"report_version": version})
    return report


def oru_inputs(
    session: Session, study: Study, *, version: int, labels: list[str] | None = None,
    impression: str | None = None, signed_by: str | None = None, signed_by_name: str | None = None,
    signed_at: dt.datetime | None = None, comments: list[str] | None = None,
) -> tuple[OruStudy, OruReport, Measurements | None, Interpretation | None]:
    """What `build_oru` needs, read from the study row (labels/impression default to the interpreter's)."""
    placer, filler = order_numbers(session, study)
    interpretation = Interpretation.model_validate(study.interpretation) if study.interpretation else None
    narrative = interpretation.parsed.narrative if interpretation else ""
    oru_study = OruStudy(
        study_id=study.id, demographics=Demographics.model_validate(study.demographics or {}),
        placer_order_number=placer, filler_order_number=filler, received_at=study.created_at,
    )
    oru_report = OruReport(
        version=version,
        labels=list(labels if labels is not None else (study.labels or [])),
        impression=impression if impression is not None else narrative,
        flags=list((study.interpretation or {}).get("flags", [])),
        signed_by=signed_by, signed_by_name=signed_by_name, signed_at=signed_at,
        comments=list(comments or []), measurement_sources=dict(study.measurement_sources or {}),
    )
    measurements = Measurements.model_validate(study.measurements) if study.measurements else None
    return oru_study, oru_report, measurements, interpretation


class DraftRefused(StoreError):
    """The draft of one study of a batch could not be made (`draft_reports`): `problem` says why."""

    def __init__(self, study_id: int, problem: Exception) -> None:
        super().__init__(f"study {study_id}: its draft could not be made ({type(problem).__name__}: {problem})")
        self.study_id, self.problem = study_id, problem


def draft_report(
    session: Session, study_id: int, *, endpoints: HL7Endpoints, actor: str,
    result_status: str = "P", destinations: Iterable[str] = (), publish: bool = True,
) -> Report:
    """The worker's call after interpretation: build, validate and store the v1 draft.

    Builds the ORU^R01 (OBR-25 = `result_status`, P or R) from the study row, stores it as
    report version 1, moves the study to `awaiting_signoff`, and queues one outbox row per
    destination, all in the caller's transaction. Idempotent: a second call returns the
    existing draft (and adds only outbox rows that are missing). With `publish=False` the
    study stays `interpreted` (and `destinations` should be empty) until `publish_draft`,
    called once the draft's outbound file is on disk.
    """
    try:
        report = draft_reports(session, [study_id], endpoints=endpoints, actor=actor, result_status=result_status,
                               publish=publish)[study_id]
    except DraftRefused as refused:
        raise refused.problem from None
    add_outboxes(session, [report], destinations, actor=actor)
    return report


def draft_reports(
    session: Session, study_ids: Sequence[int], *, endpoints: HL7Endpoints, actor: str, result_status: str = "P",
    publish: bool = False,
) -> dict[int, Report]:
    """`draft_report` for a batch of studies, no destinations: {study id: its version 1}. Without
    `publish` (the report stage) the studies stay `interpreted` until `publish_drafts`, once their
    files are on disk; with it, each study a draft is made for moves to `awaiting_signoff`.

    The batch's existing drafts are read in one SELECT, the new ones inserted in one statement (their
    studies' order numbers in one more), then audited one by one: a batch costs a few statements
    and each study its audit row, where one study at a time cost four statements each. Raises
    `DraftRefused` for the first study whose draft cannot be made (not `interpreted`, a message the
    validator refuses, a database error reading its row), before anything of the batch is written
    but the rows it has locked: the caller rolls back and drafts the others again without it.
    """
    ids = list(dict.fromkeys(study_ids))
    # Each study locked before its draft is looked for, in id order (as `claim_studies` locks; free when it
    # did): a draft made meanwhile by another transaction is then seen, not made twice.
    studies: dict[int, Study] = {}
    for study_id in sorted(ids):
        try:
            studies[study_id] = get_study(session, study_id, for_update=True, content=False)
        except Exception as exc:
            raise DraftRefused(study_id, exc) from exc
    drafts = {report.study_id: report for report in session.execute(
        sa.select(Report).where(Report.study_id.in_(ids), Report.version == 1)).scalars()}
    to_draft = [studies[study_id] for study_id in ids if study_id not in drafts]
    for study in to_draft:
        # Read before any draft fixes its study's order numbers: a read in between would flush them one by one.
        try:
            load_content(session, study, *DRAFT_CONTENT)
        except Exception as exc:
            raise DraftRefused(study.id, exc) from exc
    new: list[Report] = []
    for study in to_draft:
        try:
            new.append(_drafted(session, study, endpoints=endpoints, result_status=result_status))
        except Exception as exc:
            raise DraftRefused(study.id, exc) from exc
    session.add_all(new)
    session.flush()  # one INSERT ... RETURNING for the batch's reports (and one UPDATE for the order numbers)
    with audit.batched(session):  # their audit rows in one statement
        for report in new:
            _audit_report(session, report, actor=actor)
            if publish:
                set_state(session, report.study_id, S.AWAITING_SIGNOFF, actor=actor, details={"report_version": 1})
            drafts[report.study_id] = report
    return drafts


def _drafted(session: Session, study: Study, *, endpoints: HL7Endpoints, result_status: str) -> Report:
    """A study's v1 draft built from its row (locked and read by the caller) and checked, not yet added
    to the session."""
    if StudyState(study.state) != S.INTERPRETED:
        raise InvalidTransition(study.id, study.state, S.AWAITING_SIGNOFF.value)
    oru_study, oru_report, measurements, interpretation = oru_inputs(session, study, version=1)
    message = build_oru(oru_study, oru_report, measurements, interpretation, result_status=result_status,
                        endpoints=endpoints, control_id=new_control_id())
    created_by = interpretation.interpreter if interpretation else "unknown-interpreter"
    # What create_draft_report checks first (no version 1, state interpreted) was checked by the caller and
    # above; hl7apy validated the structure while building it: the store's check does the rest once.
    return _new_report(session, study, 1, message, status=ReportStatus.DRAFT, created_by=created_by,
                       impression=oru_report.impression, labels=oru_report.labels, built_here=True)


def publish_draft(
    session: Session, study_id: int, *, actor: str, destinations: Iterable[str] = (),
    outbound_file: str | None = None,
) -> Report:
    """The draft's outbound .hl7 file is written and synced: queue its deliveries and move the
    study to `awaiting_signoff`, so the state never says more than the disk holds.

    Idempotent: an already published draft is returned (missing outbox rows are added).
    """
    files = {study_id: outbound_file} if outbound_file is not None else {}
    return publish_drafts(session, [study_id], actor=actor, destinations=destinations, outbound_files=files)[study_id]


def publish_drafts(
    session: Session, study_ids: Sequence[int], *, actor: str, destinations: Iterable[str] = (),
    outbound_files: Mapping[int, str] | None = None,
) -> dict[int, Report]:
    """`publish_draft` for a batch of studies (the report stage's), their drafts read in one SELECT:
    {study id: its version 1}. `outbound_files`: each study's file name, for its audit row."""
    destinations = list(destinations)
    drafts = {report.study_id: report for report in session.execute(
        sa.select(Report).where(Report.study_id.in_(list(study_ids)), Report.version == 1)).scalars()}
    studies = [get_study(session, study_id, for_update=True, content=False) for study_id in study_ids]
    for study in studies:
        if study.id not in drafts:
            raise InvalidTransition(study.id, study.state, S.AWAITING_SIGNOFF.value)
    # The state changes after the outbox rows: their INSERT would flush the changes before it; after
    # it, the batch's changes are written together at commit. The audit rows of both in one statement.
    with audit.batched(session):
        add_outboxes(session, [drafts[study.id] for study in studies], destinations, actor=actor)
        for study in studies:
            if StudyState(study.state) == S.INTERPRETED:
                set_state(session, study.id, S.AWAITING_SIGNOFF, actor=actor,
                          details={"report_version": 1, "outbound_file": (outbound_files or {}).get(study.id)})
    return drafts


# ---------------------------------------------------------------- outbox


def add_outbox(session: Session, report_id: int, destination: str, *, actor: str, held: bool = False) -> OutboxItem:
    """Queue the report's message for `destination` (idempotent per report and destination).

    `held` keeps it from being sent (e.g. a receiver that takes only final results).
    """
    report = session.get(Report, report_id)  # in the session already when the caller just stored it
    if report is None:
        raise LookupError(f"report {report_id} does not exist")
    return add_outboxes(session, [report], [destination], actor=actor, held=held)[0]


def add_outboxes(session: Session, reports: Sequence[Report], destinations: Iterable[str], *, actor: str,
                 held: bool = False) -> list[OutboxItem]:
    """`add_outbox` for every report and destination, in ONE statement: the rows of each report, one per
    destination in the order given. A (report, destination) already queued is left as it is and
    returned; each new row gets its audit row, in that order."""
    destinations = list(destinations)
    # Each (report, destination) once: a destination named twice must not be audited twice.
    pairs = list(dict.fromkeys((report, destination) for report in reports for destination in destinations))
    if not pairs:
        return []
    now = utcnow()
    state = (OutboxState.HELD if held else OutboxState.PENDING).value
    # Inserted unless (report, destination) is queued already: no SELECT first, no savepoint.
    inserted = {(item.report_id, item.destination): item for item in session.execute(
        _dialect_insert(session)(OutboxItem).values([
            {"report_id": report.id, "destination": destination, "message_control_id": report.message_control_id,
             "payload": report.hl7_message, "state": state, "attempts": 0,
             "next_attempt_at": None if held else now, "created_at": now}
            for report, destination in pairs])
        .on_conflict_do_nothing(index_elements=["report_id", "destination"]).returning(OutboxItem)).scalars()}
    queued_before = [(report.id, destination) for report, destination in pairs
                     if (report.id, destination) not in inserted]
    existing = {} if not queued_before else {(item.report_id, item.destination): item for item in session.execute(
        sa.select(OutboxItem).where(sa.tuple_(OutboxItem.report_id, OutboxItem.destination).in_(queued_before))
    ).scalars()}
    items = []
    with audit.batched(session):  # the new rows' audit rows in one statement
        for report, destination in pairs:
            item = inserted.get((report.id, destination))
            if item is None:
                items.append(existing[(report.id, destination)])
                continue
            audit.append(session, actor=actor, action="outbox.queued", entity_type="outbox", entity_id=item.id,
                         details={"report_id": report.id, "destination": destination, "state": item.state,
                                  "message_control_id": item.message_control_id})
            items.append(item)
    return items


def due_outbox(
    session: Session, *, destination: str | None = None, now: dt.datetime | None = None, limit: int = 50,
) -> list[OutboxItem]:
    """Pending deliveries whose next attempt is due, oldest first, locked for this transaction.

    On Postgres rows another sender already locked are skipped (FOR UPDATE SKIP LOCKED),
    so several delivery processes share the work without sending a message twice.
    """
    query = (
        sa.select(OutboxItem)
        .where(OutboxItem.state == OutboxState.PENDING.value, OutboxItem.next_attempt_at <= (now or utcnow()))
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if destination is not None:
        query = query.where(OutboxItem.destination == destination)
    return list(session.execute(query).scalars())


def record_delivery(
    session: Session, outbox_id: int, *, actor: str, ack_code: str | None = None,
    error: str | None = None, retry_at: dt.datetime | None = None, error_from_receiver: bool = False,
) -> OutboxItem:
    """Record one delivery attempt and its outcome.

    - `ack_code` AA/CA: delivered (`acked`);
    - `ack_code` AE/AR/CE/CR: the receiver refused: `pending` again at `retry_at` when the
      destination retries refusals, else `error`, kept and shown until a person acts;
    - no ACK (`error` set, connection or timeout): `pending` again at `retry_at`, or
      `error` when `retry_at` is None (the caller gave up).
    `error_from_receiver`: the text came from the other system (an ACK's MSA-3/ERR), which
    may quote patient data; it is kept on the outbox row (beside the message itself) but
    the audit row gets only its SHA-256.

    One audit row per change of the delivery's state, not per attempt: the first failed
    attempt (queued -> retrying) and every change of state are audited; a further retry of a
    row already retrying only updates the row (attempts, last error, next attempt), so a
    receiver that is down for a day does not write an audit row every few minutes.
    """
    item = session.execute(sa.select(OutboxItem).where(OutboxItem.id == outbox_id).with_for_update()).scalar_one()
    previous = item.state
    first_attempt = item.attempts == 0
    item.attempts += 1
    item.ack_code = ack_code
    item.last_error = error
    now = utcnow()
    if ack_code in ("AA", "CA"):
        item.state, item.delivered_at, item.next_attempt_at = OutboxState.ACKED.value, now, None
        item.last_error = None
    elif retry_at is not None:
        item.state, item.next_attempt_at = OutboxState.PENDING.value, retry_at
    else:
        item.state, item.next_attempt_at = OutboxState.ERROR.value, None
    session.flush()
    if item.state == previous and not first_attempt:
        return item  # still retrying: the row says how often and why; the audit trail already does
    audited_error: str | None = error
    if error is not None and error_from_receiver:
        audited_error = "receiver text sha256:" + hashlib.sha256(error.encode("utf-8")).hexdigest()
    audit.append(session, actor=actor, action=f"outbox.{item.state}", entity_type="outbox", entity_id=item.id,
                 details={"from": previous, "to": item.state, "attempts": item.attempts, "ack_code": ack_code,
                          "error": audited_error, "destination": item.destination,
                          "message_control_id": item.message_control_id,
                          "retry_at": retry_at.isoformat() if item.state == OutboxState.PENDING.value else None})
    return item


def _locked_outbox(session: Session, outbox_id: int) -> OutboxItem:
    item = session.execute(
        sa.select(OutboxItem).where(OutboxItem.id == outbox_id).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if item is None:
        raise LookupError(f"outbox row {outbox_id} does not exist")
    return item


def hold_outbox(session: Session, outbox_id: int, *, actor: str, reason: str) -> OutboxItem:
    """Set a delivery aside without sending it (`held`), with the reason shown beside it.

    For a draft to a receiver that takes only signed results, or a person withdrawing a
    message the receiver keeps refusing. A delivered row cannot be held.
    """
    item = _locked_outbox(session, outbox_id)
    if item.state == OutboxState.ACKED.value:
        raise ValueError(f"outbox row {outbox_id} was already delivered")
    previous = item.state
    item.state, item.next_attempt_at, item.last_error = OutboxState.HELD.value, None, reason
    session.flush()
    audit.append(session, actor=actor, action="outbox.held", entity_type="outbox", entity_id=item.id,
                 details={"from": previous, "to": item.state, "reason": reason, "destination": item.destination,
                          "message_control_id": item.message_control_id})
    return item


def release_outbox(session: Session, outbox_id: int, *, actor: str, at: dt.datetime | None = None) -> OutboxItem:
    """Make a held, refused or waiting delivery due again at `at` (default now): "retry now".

    The last error and ACK code stay on the row until the next attempt replaces them. A
    delivered row cannot be released (resending it is not what this is for).
    """
    item = _locked_outbox(session, outbox_id)
    if item.state == OutboxState.ACKED.value:
        raise ValueError(f"outbox row {outbox_id} was already delivered")
    previous = item.state
    item.state, item.next_attempt_at = OutboxState.PENDING.value, at or utcnow()
    session.flush()
    audit.append(session, actor=actor, action="outbox.released", entity_type="outbox", entity_id=item.id,
                 details={"from": previous, "to": item.state, "attempts": item.attempts,
                          "destination": item.destination, "message_control_id": item.message_control_id})
    return item
