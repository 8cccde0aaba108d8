"""Commands of `ecg-worklist` for this stage (see worker/cli.py for the table of contents)."""

from __future__ import annotations

import click

commands: list[click.Command] = []
