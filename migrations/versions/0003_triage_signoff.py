"""Triage from the evidence and the cardiologist's confirmed measurements.

Revision ID: 0003_triage_signoff
Revises: 0002_review_accounts
Create Date: 2026-12-04

    studies.triage               why a study is critical, reader by reader (measured values, the
                                 protocol reader, the model), whether it had a signal, and the
                                 protocol reader's second reading beside a model (reports/triage.py)
    studies.measurement_sources  per reported measurement, where its value came from: "device"
                                 or "computed" (reports/measurements.py)
    reports.measurements         the measurements a report version sends, each with its source
                                 (a signed version: what the cardiologist confirmed or entered)

Existing rows keep NULL: their sources show as "not recorded", and the queue's `critical`
flag they already have is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_triage_signoff"
down_revision: str | None = "0002_review_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("triage", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("measurement_sources", sa.JSON(), nullable=True))
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("measurements", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("measurements")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("measurement_sources")
        batch.drop_column("triage")
