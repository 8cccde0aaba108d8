"""The database schema of ecg-worklist as SQLAlchemy 2 models: studies, reports, outbox, audit.

Postgres is the source of truth for every study's state (SQLite is the embedded default,
so every type here is portable: JSON, timezone-aware DateTime, plain strings with CHECK
constraints instead of native enums). The schema is only ever created by the Alembic
migrations in `migrations/`; these models must match them (a test compares the two).

    studies        one row per distinct ECG file content (sha256 UNIQUE), its state in the
                   pipeline, and what was read, measured and interpreted
    reports        the HL7 ORU^R01 messages of a study, one row per version
                   (1 = the machine draft; sign, amend, reject each add a version)
    outbox         one delivery of one report to one destination (MLLP), with retries
    audit_events   the append-only, hash-chained trail of every state change
    audit_head     one row: the id and hash of the newest audit event; locking it
                   serialises appends so the chain never forks
    study_counts, study_counts_by_day
                   how many studies per state, critical flag, format and origin (and per
                   day), kept by triggers in the transaction of every change
    users          accounts of the sign-off web app (argon2 hash, role, lock-out counters)
    web_sessions   the web app's logins: the SHA-256 of the session token, expiry, CSRF token

Patient identifiers live in `studies.demographics` and in the HL7 messages, and nowhere
else: never in audit details, never in logs.

Write through `reports.store`, which keeps each change and its audit row in one
transaction; read freely.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Constraint names are fixed by convention so migrations can name what they alter
# (SQLite's batch mode needs names to drop or recreate constraints).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; Postgres gets a 64-bit id.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """A point in time, stored in UTC and always read back timezone-aware (UTC).

    Postgres keeps the zone itself; SQLite stores text without one, so without this an
    aware time in another zone would be stored as its wall-clock reading and read back
    naive. Naive values given to it are taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _in(column: str, values: type[StrEnum] | tuple[str, ...]) -> str:
    """SQL `column IN ('a', 'b')` for a CHECK constraint."""
    items = [v.value for v in values] if isinstance(values, type) else list(values)
    return f"{column} IN ({', '.join(repr(v) for v in items)})"


class StudyState(StrEnum):
    """Where a study is on its journey (see `reports.store.TRANSITIONS` for the moves)."""

    RECEIVED = "received"  # registered, file archived, not yet queued
    QUEUED_PREPARE = "queued_prepare"  # a prepare task was sent to the broker
    PREPARED = "prepared"  # read, rendered, measured
    QUEUED_INTERPRET = "queued_interpret"  # an interpret task was sent to the broker
    INTERPRETED = "interpreted"  # the interpreter's text is stored
    AWAITING_SIGNOFF = "awaiting_signoff"  # the draft report (v1, status P) exists
    SIGNED = "signed"  # a cardiologist signed (OBR-25 F), possibly amended later (C)
    REJECTED = "rejected"  # a cardiologist rejected the draft
    QUARANTINED = "quarantined"  # the input is unusable, or it killed its worker N times; the file is kept
    FAILED = "failed"  # an error retrying would only repeat (a bug); the reason is in last_error


class ReportStatus(StrEnum):
    DRAFT = "draft"  # machine draft, awaiting sign-off (result status P or R)
    SIGNED = "signed"  # signed by a cardiologist (F)
    AMENDED = "amended"  # a correction after signing (C)
    REJECTED = "rejected"  # the draft was rejected (X: the preliminary result is withdrawn)


class OutboxState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENT = "sent"  # written to the connection, no ACK yet
    ACKED = "acked"  # the receiver answered AA (or CA)
    ERROR = "error"  # the receiver answered AE/AR, or delivery kept failing: shown to a person
    HELD = "held"  # deliberately not sent (e.g. drafts to a receiver that only takes finals)


RESULT_STATUSES = ("P", "R", "F", "C", "X")  # HL7 table 0123, the subset this system sends


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(sa.String(64), unique=True)
    source_format: Mapped[str] = mapped_column(sa.String(16))
    source_path: Mapped[str] = mapped_column(sa.Text)  # where the file was found
    archive_path: Mapped[str | None] = mapped_column(sa.Text)  # where it is kept (content-addressed)
    origin: Mapped[str | None] = mapped_column(sa.String(255))  # inbox name or "batch"
    state: Mapped[str] = mapped_column(sa.String(32))
    state_changed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    demographics: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # ingest.ecg.Demographics dump
    acquired_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    measurements: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # ingest.ecg.Measurements dump
    features: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # GroundingFeatures dump
    image_path: Mapped[str | None] = mapped_column(sa.Text)  # PNG shown on the review page
    interpretation: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # Interpretation dump + flags
    critical: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    labels: Mapped[list[str] | None] = mapped_column(sa.JSON)
    triage: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # reports.triage.Triage dump: who found what
    measurement_sources: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)  # field -> "device" | "computed"
    # HL7 order numbers (ORC-2/OBR-2 placer, ORC-3/OBR-3 filler): fixed at the first report
    # so every later version (sign, correction) refers to the same order.
    placer_order_number: Mapped[str | None] = mapped_column(sa.String(64))
    filler_order_number: Mapped[str | None] = mapped_column(sa.String(64))
    # Search keys of the demographics (`reports.patient_keys.search_key`: accents dropped, case
    # folded), kept beside the JSON so the review page's search and the previous-ECG lookup
    # are index scans. Written with the demographics by `reports.store.save_prepared`.
    patient_id_key: Mapped[str | None] = mapped_column(sa.String(128))
    patient_name_key: Mapped[str | None] = mapped_column(sa.String(255))
    accession_key: Mapped[str | None] = mapped_column(sa.String(128))
    # Who is working on the study now, and until when (worker/leases.py has the rules): the
    # holder renews `lease_expires_at` while it works; a lease past it means the holder is gone.
    lease_holder: Mapped[str | None] = mapped_column(sa.String(255))  # "host:pid:start"
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    holder_deaths: Mapped[int] = mapped_column(sa.Integer, server_default="0")  # at this stage: the poison counter
    retry_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # a transient failure waits until then

    reports: Mapped[list[Report]] = relationship(back_populates="study", order_by="Report.version")

    __table_args__ = (
        sa.CheckConstraint(_in("state", StudyState), name="state"),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
        # The reconciler's question: which studies sit in state X since before T?
        sa.Index("ix_studies_state_changed", "state", "state_changed_at"),
        # The sign-off queue (reports.review.queue): critical first, then oldest first, paged
        # by key. One index range scan per (state, critical) segment; the second index serves
        # the "all states" view.
        sa.Index("ix_studies_queue", "state", "critical", "created_at", "id"),
        sa.Index("ix_studies_queue_all", "critical", "created_at", "id"),
        # Search (equality and prefix LIKE) and the patient's previous ECG. text_pattern_ops lets
        # Postgres use the index for LIKE 'abc%' whatever the database's collation.
        *(sa.Index(f"ix_studies_{column}", column, postgresql_ops={column: "text_pattern_ops"})
          for column in ("patient_id_key", "patient_name_key", "accession_key")),
        sa.Index("ix_studies_lease_expires_at", "lease_expires_at"),
    )


class StudyCount(Base):
    """How many studies have this state, critical flag, source format and origin ('' for none).

    Kept by triggers on `studies` in the transaction of every change (migration
    0005_study_counts), never written by application code; read through `reports.counts`.
    """

    __tablename__ = "study_counts"

    state: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    critical: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    source_format: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    origin: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    n: Mapped[int] = mapped_column(sa.BigInteger)


class StudyCountByDay(Base):
    """The same counts per UTC day the study was received (`created_at`) or acquired
    (`acquired_at`, only for studies that have one): the queue's counts under a date filter."""

    __tablename__ = "study_counts_by_day"

    day_kind: Mapped[str] = mapped_column(sa.String(8), primary_key=True)  # "received" | "acquired"
    day: Mapped[dt.date] = mapped_column(sa.Date, primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    critical: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    source_format: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    origin: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    n: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (sa.CheckConstraint("day_kind IN ('received', 'acquired')", name="day_kind"),)


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"))
    version: Mapped[int] = mapped_column(sa.Integer)  # 1 = the machine draft
    status: Mapped[str] = mapped_column(sa.String(16))
    result_status: Mapped[str] = mapped_column(sa.String(1))  # OBR-25 / OBX-11 of the message
    hl7_message: Mapped[str] = mapped_column(sa.Text)  # ER7, segments separated by \r
    message_control_id: Mapped[str] = mapped_column(sa.String(20), unique=True)  # MSH-10
    impression: Mapped[str | None] = mapped_column(sa.Text)
    labels: Mapped[list[str] | None] = mapped_column(sa.JSON)
    # The measurements this version sends: {"values": {field: value}, "sources": {field: "device" | "computed" | "reviewer"}}.
    measurements: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_by: Mapped[str] = mapped_column(sa.String(255))  # interpreter name or user name
    signed_by: Mapped[str | None] = mapped_column(sa.String(255))
    signed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    study: Mapped[Study] = relationship(back_populates="reports")
    deliveries: Mapped[list[OutboxItem]] = relationship(back_populates="report", order_by="OutboxItem.id")

    __table_args__ = (
        # A redelivered task can never make a second report of the same version.
        sa.UniqueConstraint("study_id", "version"),
        sa.CheckConstraint("version >= 1", name="version"),
        sa.CheckConstraint(_in("status", ReportStatus), name="status"),
        sa.CheckConstraint(_in("result_status", RESULT_STATUSES), name="result_status"),
    )


class OutboxItem(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(sa.ForeignKey("reports.id"))
    destination: Mapped[str] = mapped_column(sa.String(128))  # a configured receiver's name
    message_control_id: Mapped[str] = mapped_column(sa.String(20))  # what the ACK's MSA-2 must echo
    payload: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    ack_code: Mapped[str | None] = mapped_column(sa.String(2))  # MSA-1: AA, AE, AR (CA, CE, CR)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    report: Mapped[Report] = relationship(back_populates="deliveries")

    __table_args__ = (
        sa.UniqueConstraint("report_id", "destination"),
        sa.CheckConstraint(_in("state", OutboxState), name="state"),
        sa.Index("ix_outbox_state_next_attempt", "state", "next_attempt_at"),
    )


class AuditEvent(Base):
    """One link of the audit chain. Never updated, never deleted (the database refuses)."""

    __tablename__ = "audit_events"

    # Assigned by `reports.audit.append` from audit_head (no sequence), so ids have no gaps
    # and a missing row shows up as a gap as well as a broken link.
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(sa.String(255))  # "worker:prepare", "user:jdoe", ...
    action: Mapped[str] = mapped_column(sa.String(64))  # "study.state", "report.signed", ...
    entity_type: Mapped[str] = mapped_column(sa.String(32))  # "study", "report", "outbox", ...
    entity_id: Mapped[str] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # never patient identifiers
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    row_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)

    __table_args__ = (sa.Index("ix_audit_events_entity", "entity_type", "entity_id"),)


class AuditHead(Base):
    """The single row naming the newest audit event; appends lock it (SELECT ... FOR UPDATE)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(sa.BigInteger)  # 0 before the first event
    last_hash: Mapped[str] = mapped_column(sa.String(64))  # GENESIS_HASH before the first event

    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)


class Role(StrEnum):
    """What an account of the sign-off web app may do (see reports.review.security)."""

    CARDIOLOGIST = "cardiologist"  # reads, edits, signs, amends, rejects
    TECHNICIAN = "technician"  # looks only
    VIEWER = "viewer"  # looks only
    ADMIN = "admin"  # manages accounts; looks

    @property
    def can_sign(self) -> bool:
        return self is Role.CARDIOLOGIST


class User(Base):
    """An account of the sign-off web app. The password is kept only as an argon2id hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(sa.String(255))  # "FAMILY^GIVEN" for OBR-32
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())
    failed_logins: Mapped[int] = mapped_column(sa.Integer, server_default="0")  # in a row, since the last success
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        sa.CheckConstraint(_in("role", Role), name="role"),
        sa.CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )


class WebSession(Base):
    """One login. The cookie holds the token; only its SHA-256 is stored here."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    token_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship()

    __table_args__ = (sa.Index("ix_web_sessions_user_id", "user_id"),)
