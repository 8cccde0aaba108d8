"""Patient search keys on studies, for the review page's search and the previous-ECG lookup.

Revision ID: 0004_patient_search
Revises: 0003_triage_signoff
Create Date: 2026-12-01

    studies.patient_id_key, patient_name_key, accession_key
        the demographics' MRN, name and accession with accents dropped and case folded
        (reports/patient_keys.py), each with an index; on Postgres the index uses
        text_pattern_ops so a prefix search (LIKE 'rossi%') is an index scan whatever the
        database's collation. Existing studies get their keys from the stored demographics.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_patient_search"
down_revision: str | None = "0003_triage_signoff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = {"patient_id_key": 128, "patient_name_key": 255, "accession_key": 128}
SOURCES = {"patient_id_key": "patient_id", "patient_name_key": "patient_name", "accession_key": "accession"}
BATCH = 1000


def _key(text: object, limit: int) -> str | None:
    """reports.patient_keys.search_key as of this revision (a migration never imports app code)."""
    if not text:
        return None
    decomposed = unicodedata.normalize("NFKD", str(text))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    key = " ".join(plain.casefold().replace("^", " ").replace(",", " ").split())[:limit].strip()
    return key or None


def _backfill() -> None:
    studies = sa.table("studies", sa.column("id", sa.Integer), sa.column("demographics", sa.JSON),
                       *(sa.column(name, sa.String) for name in COLUMNS))
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(studies.c.id, studies.c.demographics)
            .where(studies.c.id > last_id, studies.c.demographics.is_not(None))
            .order_by(studies.c.id).limit(BATCH)
        ).all()
        if not rows:
            return
        last_id = rows[-1].id
        for row in rows:
            demographics = row.demographics or {}
            keys = {name: _key(demographics.get(SOURCES[name]), limit) for name, limit in COLUMNS.items()}
            if any(keys.values()):
                connection.execute(sa.update(studies).where(studies.c.id == row.id).values(**keys))


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        for name, length in COLUMNS.items():
            batch.add_column(sa.Column(name, sa.String(length), nullable=True))
    _backfill()
    for name in COLUMNS:
        op.create_index(f"ix_studies_{name}", "studies", [name], postgresql_ops={name: "text_pattern_ops"})


def downgrade() -> None:
    for name in COLUMNS:
        op.drop_index(f"ix_studies_{name}", table_name="studies")
    with op.batch_alter_table("studies") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
