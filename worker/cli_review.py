"""Commands of `ecg-worklist` for sign-off and delivery (see worker/cli.py for the table of contents).

    review serve      the sign-off queue web app (localhost by default)
    users add ...     accounts and roles for the web app
    deliver           send the outbox to the HL7 interface engines over MLLP
"""

from __future__ import annotations

import click


@click.group()
def review() -> None:
    """The cardiologists' sign-off queue (web)."""


@click.group()
def users() -> None:
    """Accounts of the sign-off web app."""


@click.command()
@click.option("--once", is_flag=True, help="One pass over the due rows, print the counts, exit.")
@click.option("--destination", "names", multiple=True, metavar="NAME",
              help="Only this configured destination (repeatable). Default: all of ECGWL_HL7_DESTINATIONS.")
def deliver(once: bool, names: tuple[str, ...]) -> None:
    """Send the outbox to the HL7 interface engines over MLLP (AA/CA marks a row delivered).

    Runs until SIGTERM unless --once. Prints counts only: no patient data.
    """
    import logging

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
    engine = make_engine(settings.effective_database_url)
    try:
        if once:
            summary = deliver_due(engine, chosen)
            click.echo(f"delivery: {summary.line()}")
            return
        logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
