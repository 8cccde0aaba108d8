"""Alembic environment: connects to the database named by the caller and runs revisions.

The URL comes, in this order, from a connection handed over in `config.attributes`
(what `reports.store.upgrade` does), from `-x url=...` on the alembic command line, or
from `sqlalchemy.url` in the configuration. There is no default: a migration never
guesses which database to change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from reports.db import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or use `ecg-worklist db upgrade`")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: the triggers differ per database")
run_migrations_online()
