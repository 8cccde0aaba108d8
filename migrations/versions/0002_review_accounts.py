"""Sign-off web app: accounts, server-side sessions, and the indexes of the sign-off queue.

Revision ID: 0002_review_accounts
Revises: 0001_initial
Create Date: 2026-11-30

    users          one account per person: argon2id hash, role, lock-out counters
    web_sessions   one row per login: SHA-256 of the session token, expiry, CSRF token
    studies        two indexes for the queue's keyset paging (critical first, oldest first)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_review_accounts"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("cardiologist", "technician", "viewer", "admin")


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", _tz(), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("last_login_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="ck_users_role"),
        sa.CheckConstraint("failed_logins >= 0", name="ck_users_failed_logins"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("expires_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_web_sessions_user_id_users",
                                ondelete="CASCADE"),
        sa.UniqueConstraint("token_digest", name="uq_web_sessions_token_digest"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_index("ix_studies_queue", "studies", ["state", "critical", "created_at", "id"])
    op.create_index("ix_studies_queue_all", "studies", ["critical", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_studies_queue_all", table_name="studies")
    op.drop_index("ix_studies_queue", table_name="studies")
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("users")
