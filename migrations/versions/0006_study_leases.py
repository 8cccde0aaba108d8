"""Study leases: the database knows which worker holds a study, and until when.

Revision ID: 0006_study_leases
Revises: 0005_study_counts
Create Date: 2026-12-02

    studies.lease_holder       "host:pid:start" of the worker process working on the study, or NULL
    studies.lease_expires_at   the holder renews this while it works; past it, the holder is gone
    studies.holder_deaths      how often a holder died while working on this study at its current
                               stage (reset when the stage completes): the poison counter
    studies.retry_at           a transient failure (disk full, broker down) waits until this time

The rules that use them are in worker/leases.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_study_leases"
down_revision: str | None = "0005_study_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("lease_holder", sa.String(255), nullable=True))
    op.add_column("studies", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("studies", sa.Column("holder_deaths", sa.Integer(), server_default="0", nullable=False))
    op.add_column("studies", sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
    # The reconciler's question: whose lease ran out?
    op.create_index("ix_studies_lease_expires_at", "studies", ["lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_studies_lease_expires_at", table_name="studies")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too): a batch rebuild of `studies` would
    # drop the SQLite triggers that keep the study counts (0005_study_counts).
    for column in ("retry_at", "holder_deaths", "lease_expires_at", "lease_holder"):
        op.drop_column("studies", column)
