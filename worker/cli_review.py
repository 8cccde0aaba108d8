"""Commands of `ecg-worklist` for sign-off and delivery (see worker/cli.py for the table of contents).

    review serve      the sign-off queue web app (localhost by default)
    users add NAME --role ROLE, users list, users disable NAME, users unlock NAME
                      accounts and roles for the web app
    deliver           send the outbox to the HL7 interface engines over MLLP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from worker.cli_errors import require_schema

if TYPE_CHECKING:  # imported late at run time: keeps `--help` fast
    import sqlalchemy as sa

    from reports.review.config import ReviewConfig
    from worker.settings import Settings


def _engine() -> sa.Engine:
    """The database engine, once the schema is known to be at the newest revision."""
    from reports.store import make_engine
    from worker.settings import Settings

    url = Settings().effective_database_url
    require_schema(url)
    return make_engine(url)


@click.group()
def review() -> None:
    """The cardiologists' sign-off queue (web)."""


def review_config(settings: Settings) -> ReviewConfig:
    """The web app's configuration from the `ECGWL_*` settings (the one place they meet)."""
    from reports.hl7_oru import HL7Endpoints
    from reports.review.compare import ChangeThresholds
    from reports.review.config import ReviewConfig

    return ReviewConfig(
        database_url=settings.effective_database_url,
        destinations=settings.hl7_destination_names,
        endpoints=HL7Endpoints(sending_facility=settings.sending_facility,
                               receiving_facility=settings.receiving_facility),
        critical_labels=settings.review_critical_labels,
        reject_action=settings.review_reject_action,
        image_roots=[settings.data_dir.resolve()],
        session_hours=settings.review_session_hours,
        secure_cookies=settings.review_secure_cookies,
        view_cache_dir=settings.data_dir.resolve() / "views",
        prepared_dir=settings.data_dir.resolve() / "prepared",
        change_thresholds=ChangeThresholds.model_validate(settings.review_change_thresholds),
    )


@review.command("serve")
@click.option("--host", default=None, help="Address to listen on (default ECGWL_REVIEW_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default ECGWL_REVIEW_PORT, 8080).")
def review_serve(host: str | None, port: int | None) -> None:
    """Serve the sign-off web app (server-rendered pages; put TLS in front of it)."""
    import uvicorn

    from reports.review.app import create_app
    from reports.review.queue import sync_critical
    from reports.store import make_engine, session_scope
    from worker.settings import Settings

    settings = Settings()
    config = review_config(settings)
    require_schema(config.database_url)
    engine = make_engine(config.database_url)
    with session_scope(engine) as session:
        changed = sync_critical(session, config.critical_labels, actor="review:serve")
    if changed:
        click.echo(f"critical marks re-sorted on {changed} awaiting drafts (site list)")
    app = create_app(config, engine=engine)
    host, port = host or settings.review_host, port or settings.review_port
    click.echo(f"sign-off web app on http://{host}:{port}/ (Ctrl-C stops)")
    # Proxy headers only from the local reverse proxy; access logs carry URLs (study ids), not names.
    uvicorn.run(app, host=host, port=port, proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                server_header=False)


@click.group()
def users() -> None:
    """Accounts of the sign-off web app."""


def _password_from_prompt_or_env() -> str:
    """ECGWL_NEW_USER_PASSWORD (for scripts), else asked twice without echo; never an argument."""
    import os

    password = os.environ.get("ECGWL_NEW_USER_PASSWORD")
    if password:
        return password
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["cardiologist", "technician", "viewer", "admin"]), required=True)
@click.option("--name", "display_name", default=None, help="FAMILY^GIVEN, as the signature in OBR-32 shows it.")
def users_add(username: str, role: str, display_name: str | None) -> None:
    """Add an account. The password is read from a prompt (or ECGWL_NEW_USER_PASSWORD)."""
    from reports.review.accounts import USERNAME, add_user, get_user
    from reports.store import session_scope

    name = username.strip().lower()
    if not USERNAME.match(name):
        raise click.ClickException("a user name is 2-64 characters: lower-case letters, digits, '.', '_', '-'")
    engine = _engine()
    try:
        # The name is checked before the password is asked for: nobody types a password twice
        # to learn that the account exists already.
        with session_scope(engine) as session:
            if get_user(session, name) is not None:
                raise click.ClickException(f"user {name!r} exists already")
        password = _password_from_prompt_or_env()
        with session_scope(engine) as session:
            add_user(session, name, role, password, actor="cli:users", display_name=display_name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    click.echo(f"added {name} ({role})")


@users.command("list")
def users_list() -> None:
    """Accounts: name, role, active, locked."""
    from reports.review.accounts import list_users
    from reports.store import session_scope

    engine = _engine()
    try:
        with session_scope(engine) as session:
            for user in list_users(session):
                locked = f" locked until {user.locked_until:%Y-%m-%d %H:%M} UTC" if user.locked_until else ""
                click.echo(f"{user.username}\t{user.role}\t{'active' if user.active else 'disabled'}{locked}")
    finally:
        engine.dispose()


@users.command("disable")
@click.argument("username")
def users_disable(username: str) -> None:
    """Disable an account and end its sessions (audited)."""
    from reports.review.accounts import AccountError, set_active
    from reports.store import session_scope

    engine = _engine()
    try:
        with session_scope(engine) as session:
            set_active(session, username, False, actor="cli:users")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    click.echo(f"disabled {username}")


@users.command("unlock")
@click.argument("username")
def users_unlock(username: str) -> None:
    """End an account's lock-out after failed logins now, and clear its failure count (audited)."""
    from reports.review.accounts import AccountError, unlock
    from reports.store import session_scope

    engine = _engine()
    try:
        with session_scope(engine) as session:
            user = unlock(session, username, actor="cli:users")
            name = user.username
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
    click.echo(f"unlocked {name}")


@click.command()
@click.option("--once", is_flag=True, help="One pass over the due rows, print the counts, exit.")
@click.option("--destination", "names", multiple=True, metavar="NAME",
              help="Only this configured destination (repeatable). Default: all of ECGWL_HL7_DESTINATIONS.")
def deliver(once: bool, names: tuple[str, ...]) -> None:
    """Send the outbox to the HL7 interface engines over MLLP (AA/CA marks a row delivered).

    Runs until SIGTERM unless --once. Prints counts only: no patient data.
    """
    from reports.delivery import DeliverySummary, deliver_due, run_delivery_loop
    from reports.store import make_engine
    from worker.settings import Settings

    settings = Settings()
    configured = {d.name: d for d in settings.hl7_destinations}
    unknown = [n for n in names if n not in configured]
    if unknown:
        raise click.BadParameter(f"not configured: {', '.join(unknown)} (configured: "
                                 f"{', '.join(configured) or 'none'})", param_hint="--destination")
    chosen = [configured[n] for n in names] if names else list(configured.values())
    no_address = [d.name for d in chosen if not d.has_address]
    if no_address:
        raise click.UsageError(f"destination(s) without host and port: {', '.join(no_address)}; set them in "
                               "ECGWL_HL7_DESTINATIONS, e.g. [{\"name\": \"his\", \"host\": \"10.0.0.5\", "
                               "\"port\": 2575}]")
    require_schema(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    try:
        if once:
            summary = deliver_due(engine, chosen)
            click.echo(f"delivery: {summary.line()}")
            return
        from worker.logs import configure_logging

        configure_logging(settings.log_format)
        click.echo(f"delivering to {', '.join(d.name for d in chosen)} (every "
                   f"{settings.delivery_poll_seconds:g} s; SIGTERM stops)")

        def report(summary: DeliverySummary) -> None:
            if summary.did_something:
                click.echo(f"delivery: {summary.line()}")

        total = run_delivery_loop(engine, chosen, poll_seconds=settings.delivery_poll_seconds, on_pass=report)
        click.echo(f"delivery stopped; in total: {total.line()}")
    finally:
        engine.dispose()


commands: list[click.Command] = [review, users, deliver]
