"""Commands of `ecg-worklist` for the schema and the audit trail (see worker/cli.py).

    ecg-worklist db upgrade [REVISION]      make or update the schema (Alembic; default head)
    ecg-worklist db downgrade REVISION      step back ("base" drops every table: asks first)
    ecg-worklist db current                 the revision the database is at
    ecg-worklist audit verify               walk the hash chain (and the signed checkpoints); exit 1 at a problem
    ecg-worklist audit checkpoint           sign the chain's head into the checkpoint file (outside the database)

The database URL is `Settings().effective_database_url` (ECGWL_DATABASE_URL, or the
embedded SQLite file under ECGWL_DATA_DIR). The URL is never printed: it may hold a password.
"""

from __future__ import annotations

from pathlib import Path

import click

from worker.cli_errors import require_schema
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
@click.option("--checkpoints", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The signed checkpoint file (default: ECGWL_AUDIT_CHECKPOINT_PATH).")
def audit_verify(checkpoints: Path | None) -> None:
    """Check every audit event's hash and link, and (with ECGWL_AUDIT_CHECKPOINT_KEY) every
    signed checkpoint kept outside the database; exit status 1 names the first problem."""
    from reports.audit import verify_chain
    from reports.audit_anchor import verify_with_checkpoints
    from reports.store import make_engine, session_scope

    settings = Settings()
    key = settings.audit_key_bytes
    require_schema(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    try:
        with session_scope(engine) as session:
            if key is None:
                result = verify_chain(session)
                click.echo(result.describe())
                click.echo("no ECGWL_AUDIT_CHECKPOINT_KEY: the chain was checked against itself only, which does "
                           "not catch a rewrite that re-hashes it")
                ok = result.ok
            else:
                anchored = verify_with_checkpoints(session, checkpoints or settings.audit_checkpoint_file, key)
                click.echo(anchored.describe())
                ok = anchored.ok
    finally:
        engine.dispose()
    if not ok:
        raise SystemExit(1)


@audit_group.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the audit chain's head and append it to the checkpoint file (`watch` does this
    every ECGWL_AUDIT_CHECKPOINT_EVERY_SECONDS); exit 1 if the chain since the last one is broken."""
    from reports.audit_anchor import CheckpointError, write_checkpoint
    from reports.store import make_engine, session_scope

    settings = Settings()
    key = settings.audit_key_bytes
    if key is None:
        raise click.UsageError("ECGWL_AUDIT_CHECKPOINT_KEY is not set")
    require_schema(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    try:
        with session_scope(engine) as session:
            checkpoint = write_checkpoint(session, settings.audit_checkpoint_file, key)
    except CheckpointError as exc:
        click.echo(f"audit checkpoint REFUSED: {exc}", err=True)
        raise SystemExit(1) from exc
    finally:
        engine.dispose()
    if checkpoint is None:
        click.echo("audit checkpoint: the head has not moved since the last one")
    else:
        click.echo(f"audit checkpoint: event {checkpoint.last_id} signed at {checkpoint.at}")


commands: list[click.Command] = [db_group, audit_group]
