"""Commands of `ecg-worklist` for the schema and the audit trail (see worker/cli.py).

    ecg-worklist db upgrade [REVISION]      make or update the schema (Alembic; default head)
    ecg-worklist db downgrade REVISION      step back ("base" drops every table: asks first)
    ecg-worklist db current                 the revision the database is at
    ecg-worklist audit verify               walk the hash chain; exit 1 at the first broken row

The database URL is `Settings().effective_database_url` (ECGWL_DATABASE_URL, or the
embedded SQLite file under ECGWL_DATA_DIR). The URL is never printed: it may hold a password.
"""

from __future__ import annotations

import click

from worker.settings import Settings


def _url() -> str:
    return Settings().effective_database_url


@click.group("db")
def db_group() -> None:
    """Schema migrations (Alembic is the only way the schema is made or changed)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Bring the database up to REVISION (default: the newest)."""
    from reports.store import current_revision, upgrade

    url = _url()
    upgrade(url, revision)
    click.echo(f"database at revision {current_revision(url)}")


@db_group.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask before dropping tables.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Take the database down to REVISION ("base" drops everything, the audit trail included)."""
    from reports.store import current_revision, downgrade

    if revision == "base" and not yes:
        click.confirm("This drops every table, the audit trail included. Continue?", abort=True)
    url = _url()
    downgrade(url, revision)
    click.echo(f"database at revision {current_revision(url) or 'base (empty)'}")


@db_group.command("current")
def db_current() -> None:
    """Print the revision the database is at."""
    from reports.store import current_revision

    click.echo(current_revision(_url()) or "base (empty)")


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit trail."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check every audit event's hash and link; exit status 1 names the first broken row."""
    from reports.audit import verify_chain
    from reports.store import make_engine, session_scope

    engine = make_engine(_url())
    try:
        with session_scope(engine) as session:
            result = verify_chain(session)
    finally:
        engine.dispose()
    click.echo(result.describe())
    if not result.ok:
        raise SystemExit(1)


commands: list[click.Command] = [db_group, audit_group]
