"""The large columns compressed with lz4 instead of pglz (Postgres 14 and later, built with lz4).

Revision ID: 0007_lz4_large_columns
Revises: 0006_study_leases
Create Date: 2026-12-07

Postgres compresses a value of more than about 2 kB before it stores it out of line (TOAST), with
pglz unless a column says otherwise. A prepared study's features are some 60 kB of JSON, written
once per study: pglz spent 1.2 ms of the server's CPU on each, lz4 0.47 (storing them uncompressed
0.47 too; 20 real-recording studies' features inserted 15 times over, measured from the backend's
/proc CPU), for 18 kB on disk against pglz's 13 (uncompressed: 63). Interpretations, HL7 messages
and the outbox's payloads pass the threshold too. lz4 is the better trade for a worklist that
writes every study once and reads it a few times: its reads are as fast as pglz's.

Only the compression of values written from now on changes; values already stored stay as they
are (Postgres reads both). A server without lz4 (built without it, or older than 14) keeps pglz:
the revision is recorded all the same, so the schema's history is one on every server. SQLite
compresses nothing: nothing to do there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_lz4_large_columns"
down_revision: str | None = "0006_study_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column): the columns whose values are commonly over Postgres's 2 kB compression threshold.
LARGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("studies", "features"),
    ("studies", "interpretation"),
    ("reports", "hl7_message"),
    ("outbox", "payload"),
)


def _server_has_lz4(connection: sa.Connection) -> bool:
    """Whether this server can compress with lz4 (the setting that names the methods lists it)."""
    return bool(connection.execute(sa.text(
        "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    )).scalar_one())


def _set_compression(method: str) -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql" or not _server_has_lz4(connection):
        return
    for table, column in LARGE_COLUMNS:
        op.execute(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET COMPRESSION {method}')


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
