"""Initial schema: studies, reports, outbox, the hash-chained audit trail and its guards.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24

The audit table refuses UPDATE and DELETE (and, on Postgres, TRUNCATE) through triggers,
so the trail is append-only for every role that cannot disable triggers. Run the
application as a role that does not own the tables (see deploy/) so it cannot either.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64

STUDY_STATES = ("received", "queued_prepare", "prepared", "queued_interpret", "interpreted",
                "awaiting_signoff", "signed", "rejected", "quarantined", "failed")
REPORT_STATUSES = ("draft", "signed", "amended", "rejected")
RESULT_STATUSES = ("P", "R", "F", "C", "X")
OUTBOX_STATES = ("pending", "sent", "acked", "error", "held")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_GUARD = """
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
"""

SQLITE_GUARDS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END""",
)


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("archive_path", sa.Text(), nullable=True),
        sa.Column("origin", sa.String(255), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("state_changed_at", _tz(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("demographics", sa.JSON(), nullable=True),
        sa.Column("acquired_at", _tz(), nullable=True),
        sa.Column("measurements", sa.JSON(), nullable=True),
        sa.Column("features", sa.JSON(), nullable=True),
        sa.Column("image_path", sa.Text(), nullable=True),
        sa.Column("interpretation", sa.JSON(), nullable=True),
        sa.Column("critical", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("placer_order_number", sa.String(64), nullable=True),
        sa.Column("filler_order_number", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("sha256", name="uq_studies_sha256"),
        sa.CheckConstraint(_in("state", STUDY_STATES), name="ck_studies_state"),
        sa.CheckConstraint("attempts >= 0", name="ck_studies_attempts"),
    )
    op.create_index("ix_studies_state_changed", "studies", ["state", "state_changed_at"])

    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result_status", sa.String(1), nullable=False),
        sa.Column("hl7_message", sa.Text(), nullable=False),
        sa.Column("message_control_id", sa.String(20), nullable=False),
        sa.Column("impression", sa.Text(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("signed_by", sa.String(255), nullable=True),
        sa.Column("signed_at", _tz(), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reports"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_reports_study_id_studies"),
        sa.UniqueConstraint("study_id", "version", name="uq_reports_study_id_version"),
        sa.UniqueConstraint("message_control_id", name="uq_reports_message_control_id"),
        sa.CheckConstraint("version >= 1", name="ck_reports_version"),
        sa.CheckConstraint(_in("status", REPORT_STATUSES), name="ck_reports_status"),
        sa.CheckConstraint(_in("result_status", RESULT_STATUSES), name="ck_reports_result_status"),
    )

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("message_control_id", sa.String(20), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _tz(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("ack_code", sa.String(2), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("delivered_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], name="fk_outbox_report_id_reports"),
        sa.UniqueConstraint("report_id", "destination", name="uq_outbox_report_id_destination"),
        sa.CheckConstraint(_in("state", OUTBOX_STATES), name="ck_outbox_state"),
    )
    op.create_index("ix_outbox_state_next_attempt", "outbox", ["state", "next_attempt_at"])

    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=False),
        sa.Column("at", _tz(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.UniqueConstraint("row_hash", name="uq_audit_events_row_hash"),
    )
    op.create_index("ix_audit_events_entity", "audit_events", ["entity_type", "entity_id"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    op.bulk_insert(audit_head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH}])

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_GUARD)
    elif dialect == "sqlite":
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_refuse_change()")
    elif dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_events_entity", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_outbox_state_next_attempt", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("reports")
    op.drop_index("ix_studies_state_changed", table_name="studies")
    op.drop_table("studies")
