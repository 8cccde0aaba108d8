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


commands: list[click.Command] = [review, users]
