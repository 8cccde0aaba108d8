"""The `ecg-worklist` command line: one entry point for every process and tool.

Each stage registers its own commands in a small module beside this one, so this file
stays a table of contents:

    cli_ingest   inspect FILE, render FILE, read FILE          (look at one ECG)
    cli_db       db upgrade/downgrade, audit verify            (schema and audit trail)
    cli_pipeline watch, batch, worker, reconcile, demo         (the worklist itself)
    cli_ops      check [--repair], requeue                     (after a bad night)
    cli_review   review serve, users add, deliver              (sign-off and HL7 delivery)
    cli_train    train ...                                     (the bundled training pipeline)
    cli_validate validate                                      (figures on the real recordings in data/real)
    cli_deploy   metrics serve, health                         (running it in containers and clusters)
"""

from __future__ import annotations

import click

from worker import cli_db, cli_deploy, cli_ingest, cli_ops, cli_pipeline, cli_review, cli_train, cli_validate
from worker.cli_errors import WorklistGroup


@click.group(cls=WorklistGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the traceback of an error (also ECGWL_DEBUG=1).")
def main(debug: bool) -> None:
    """ecg-worklist: offline batch worklist for 12-lead ECGs (drafts need a cardiologist's signature).

    Settings come from ECGWL_* environment variables (deploy/ecg-worklist.env.example). The data
    folder is ECGWL_DATA_DIR, else ~/.local/state/ecg-worklist; a mistake is reported in a line
    or two naming the setting or file (--debug shows the traceback).
    """


for module in (cli_ingest, cli_db, cli_pipeline, cli_ops, cli_review, cli_train, cli_validate, cli_deploy):
    for command in module.commands:
        main.add_command(command)
