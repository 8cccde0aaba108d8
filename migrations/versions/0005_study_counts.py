"""Study counts kept by the database itself, so "how many where" never reads every study.

Revision ID: 0005_study_counts
Revises: 0004_patient_search
Create Date: 2026-12-06

    study_counts          (state, critical, source_format, origin) -> n
                          every study, counted once: the counts by state (metrics) and the
                          queue's counts without a date filter
    study_counts_by_day   (day_kind, day, state, critical, source_format, origin) -> n
                          day_kind 'received' (the UTC day of created_at: every study) and
                          'acquired' (of acquired_at: studies that have one): the queue's
                          counts under a date filter, summed over the days asked for

Triggers on `studies` keep both current in the SAME transaction as the change, so a count
can never disagree with the rows (reports/counts.py reads them; tests compare them with a
GROUP BY after every kind of change). `origin` NULL is counted under ''.

Postgres: INSERT and DELETE are statement triggers over the transition table (one upsert per
key for a bulk load of a million rows); UPDATE is a row trigger that fires only when a counted
column changes (a heartbeat or a features update never touches the counters). Every trigger
first locks the audit head, as every audited write does anyway (a state change and its audit
row share a transaction), so counter rows are always locked after that one lock: two
transactions can never lock them in opposite orders (no deadlock), and no new serialisation
is added. SQLite: row triggers (its writers are serialised already).

SQLite drops a table's triggers when a batch migration rebuilds the table: a later migration
that rebuilds `studies` must create them again (`sqlite_triggers()` below). The counters test
runs on SQLite too, so forgetting fails the suite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_study_counts"
down_revision: str | None = "0004_patient_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("state", "critical", "source_format", "origin")
COUNTED = ("state", "critical", "source_format", "origin", "created_at", "acquired_at")


def _key_columns() -> list[sa.Column]:
    return [
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("critical", sa.Boolean(), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(255), nullable=False),
    ]


def _tables() -> None:
    op.create_table(
        "study_counts", *_key_columns(), sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name="pk_study_counts"),
    )
    op.create_table(
        "study_counts_by_day",
        sa.Column("day_kind", sa.String(8), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *_key_columns(),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day_kind", "day", *KEY, name="pk_study_counts_by_day"),
        sa.CheckConstraint("day_kind IN ('received', 'acquired')", name="ck_study_counts_by_day_day_kind"),
    )


# ---------------------------------------------------------------- Postgres


def _pg_upserts(rows: str) -> str:
    """Add each row's sign (+1/-1) of `rows` (columns: sign and the studies columns) to both tables."""
    key = ", ".join(KEY)
    return f"""
    INSERT INTO study_counts AS c ({key}, n)
    SELECT state, critical, source_format, coalesce(origin, ''), sum(sign)
      FROM ({rows}) AS moved
     GROUP BY 1, 2, 3, 4 HAVING sum(sign) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT ({key}) DO UPDATE SET n = c.n + EXCLUDED.n;
    INSERT INTO study_counts_by_day AS c (day_kind, day, {key}, n)
    SELECT kind, day, state, critical, source_format, coalesce(origin, ''), sum(sign)
      FROM ({rows}) AS moved
     CROSS JOIN LATERAL (VALUES ('received', (created_at AT TIME ZONE 'UTC')::date),
                               ('acquired', (acquired_at AT TIME ZONE 'UTC')::date)) AS days (kind, day)
     WHERE day IS NOT NULL
     GROUP BY 1, 2, 3, 4, 5, 6 HAVING sum(sign) <> 0 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (day_kind, day, {key}) DO UPDATE SET n = c.n + EXCLUDED.n;
    """


_PG_LOCK = "PERFORM 1 FROM audit_head WHERE id = 1 FOR UPDATE;"
_PG_FUNCTIONS = {
    "study_counts_on_insert": _pg_upserts("SELECT 1 AS sign, * FROM new_rows"),
    "study_counts_on_delete": _pg_upserts("SELECT -1 AS sign, * FROM old_rows"),
    "study_counts_on_update": _pg_upserts("SELECT -1 AS sign, OLD.* UNION ALL SELECT 1, NEW.*"),
}
_PG_CHANGED = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in COUNTED)
_PG_TRIGGERS = (
    "CREATE TRIGGER study_counts_on_insert AFTER INSERT ON studies REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION study_counts_on_insert()",
    "CREATE TRIGGER study_counts_on_delete AFTER DELETE ON studies REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION study_counts_on_delete()",
    f"CREATE TRIGGER study_counts_on_update AFTER UPDATE ON studies FOR EACH ROW WHEN ({_PG_CHANGED}) "
    "EXECUTE FUNCTION study_counts_on_update()",
)


def _postgres_up() -> None:
    for name, body in _PG_FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                   f"BEGIN\n  {_PG_LOCK}\n{body}\n  RETURN NULL;\nEND\n$$")
    for statement in _PG_TRIGGERS:
        op.execute(statement)


def _postgres_down() -> None:
    for name in _PG_FUNCTIONS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON studies")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")


# ---------------------------------------------------------------- SQLite


def _sqlite_add(row: str, sign: int) -> str:
    """Statements adding `sign` for the study `row` (NEW or OLD) to both tables."""
    key = ", ".join(KEY)
    values = f"{row}.state, {row}.critical, {row}.source_format, coalesce({row}.origin, '')"
    return f"""
      INSERT INTO study_counts ({key}, n) SELECT {values}, {sign} WHERE true
        ON CONFLICT ({key}) DO UPDATE SET n = n + {sign};
      INSERT INTO study_counts_by_day (day_kind, day, {key}, n) SELECT 'received', date({row}.created_at), {values}, {sign}
        WHERE true ON CONFLICT (day_kind, day, {key}) DO UPDATE SET n = n + {sign};
      INSERT INTO study_counts_by_day (day_kind, day, {key}, n) SELECT 'acquired', date({row}.acquired_at), {values}, {sign}
        WHERE {row}.acquired_at IS NOT NULL ON CONFLICT (day_kind, day, {key}) DO UPDATE SET n = n + {sign};"""


def sqlite_triggers() -> list[str]:
    """The SQLite triggers (a later migration that rebuilds `studies` runs these again)."""
    changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in COUNTED)
    return [
        f"CREATE TRIGGER study_counts_on_insert AFTER INSERT ON studies BEGIN {_sqlite_add('NEW', 1)} END",
        f"CREATE TRIGGER study_counts_on_delete AFTER DELETE ON studies BEGIN {_sqlite_add('OLD', -1)} END",
        f"CREATE TRIGGER study_counts_on_update AFTER UPDATE OF {', '.join(COUNTED)} ON studies "
        f"WHEN {changed} BEGIN {_sqlite_add('OLD', -1)} {_sqlite_add('NEW', 1)} END",
    ]


# ---------------------------------------------------------------- the existing studies


def _backfill(dialect: str) -> None:
    """Count the studies already there (the triggers count every change from now on)."""
    key = ", ".join(KEY)
    day = {"postgresql": "({column} AT TIME ZONE 'UTC')::date", "sqlite": "date({column})"}[dialect]
    op.execute(f"INSERT INTO study_counts ({key}, n) SELECT state, critical, source_format, coalesce(origin, ''), "
               f"count(*) FROM studies GROUP BY 1, 2, 3, 4")
    for kind, column in (("received", "created_at"), ("acquired", "acquired_at")):
        op.execute(f"INSERT INTO study_counts_by_day (day_kind, day, {key}, n) "
                   f"SELECT '{kind}', {day.format(column=column)}, state, critical, source_format, "
                   f"coalesce(origin, ''), count(*) FROM studies WHERE {column} IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _tables()
    if dialect == "postgresql":
        # Nothing may change a study between the count and the triggers' first firing.
        op.execute("LOCK TABLE studies IN SHARE ROW EXCLUSIVE MODE")
        _postgres_up()
    else:
        for statement in sqlite_triggers():
            op.execute(statement)
    _backfill(dialect)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_down()
    else:
        for name in ("study_counts_on_insert", "study_counts_on_delete", "study_counts_on_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("study_counts_by_day")
    op.drop_table("study_counts")
