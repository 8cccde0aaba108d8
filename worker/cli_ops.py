"""Operator commands of `ecg-worklist` after a bad night (see worker/cli.py for the table of contents).

    ecg-worklist check [--repair]                         studies whose expected files or rows are missing
    ecg-worklist requeue --state failed|quarantined|...   send studies back to their stage, audited
    ecg-worklist requeue --study ID [--study ID ...]

Both use the configuration every process uses (ECGWL_* variables); with no broker
configured, re-queued studies are then run here.
"""

from __future__ import annotations

import getpass

import click
import sqlalchemy as sa

from worker.cli_errors import needs_readers, require_readers, require_schema
from worker.settings import Settings

REQUEUE_STATES = ["failed", "quarantined", "received", "queued_prepare", "queued_interpret", "interpreted"]


def _operator() -> str:
    """Who ran the command, for the audit row (the login name: never a patient's)."""
    try:
        return f"operator:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name (a container): still an operator
        return "operator:unknown"


def _waiting_summary(ctx) -> list[str]:  # noqa: ANN001 - a PipelineContext
    from reports.db import Study, StudyState

    lines = []
    with ctx.session() as session:
        failed = session.execute(sa.select(Study.id, Study.last_error).where(
            Study.state == StudyState.FAILED.value).order_by(Study.id)).all()
        retrying = session.execute(sa.select(Study.id, Study.state, Study.retry_at, Study.last_error).where(
            Study.retry_at.is_not(None)).order_by(Study.id)).all()
    for study_id, error in failed[:50]:
        lines.append(f"study {study_id} failed: {error or '(no reason recorded)'}")
    if failed:
        lines.append(f"{len(failed)} failed: `ecg-worklist requeue --state failed` once the cause is fixed")
    for study_id, state, retry_at, error in retrying[:50]:
        lines.append(f"study {study_id} ({state}) retries at {retry_at.isoformat(timespec='seconds')}: {error}")
    return lines


@click.command("check")
@click.option("--repair", "do_repair", is_flag=True,
              help="Redo what can be redone: write a missing .hl7 again, prepare again, rewrite a reason file.")
def check_command(do_repair: bool) -> None:
    """List every study whose expected files or rows are missing (exit status 1 if any).

    By state: the original (archive or batch file), preparation's files, the image, the
    report rows, a draft's outbound .hl7 file, a quarantined study's reason file. Also lists
    failed studies with their reasons and studies waiting to retry.
    """
    if do_repair:  # preparing again reads the files
        require_readers()
    from worker.context import PipelineContext
    from worker.dispatch import InProcessDispatcher
    from worker.repair import find_missing, repair

    settings = Settings()
    require_schema(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    try:
        missing = find_missing(ctx)
        for item in missing:
            click.echo(item.describe())
        if do_repair and missing:
            for line in repair(ctx, missing, actor=_operator()):
                click.echo(line)
            if isinstance(ctx.dispatcher, InProcessDispatcher):
                ctx.dispatcher.run_until_idle(ctx)
            missing = find_missing(ctx)
            click.echo(f"after repair: {len(missing)} missing")
        else:
            click.echo(f"{len(missing)} missing" + (" (`ecg-worklist check --repair` redoes what it can)"
                                                     if missing else ""))
        for line in _waiting_summary(ctx):
            click.echo(line)
    finally:
        ctx.close()
    if missing:
        raise SystemExit(1)


@click.command("requeue")
@click.option("--state", "states", multiple=True, type=click.Choice(REQUEUE_STATES),
              help="Every study in this state (repeatable).")
@click.option("--study", "study_ids", multiple=True, type=int, help="This study (repeatable).")
@click.option("--reason", default=None, help="Why (kept in the audit row).")
@needs_readers()
def requeue_command(states: tuple[str, ...], study_ids: tuple[int, ...], reason: str | None) -> None:
    """Send studies back to the stage that can finish them, audited with who and why.

    failed: to the first stage whose result is missing; quarantined: prepared again (after
    the file or the reader was fixed); a waiting study: sent now, without waiting for its
    retry time. A study a running worker holds is left alone.
    """
    from worker.context import PipelineContext
    from worker.dispatch import InProcessDispatcher
    from worker.repair import requeue

    if not states and not study_ids:
        raise click.UsageError("say which studies: --state STATE or --study ID")
    settings = Settings()
    require_schema(settings.effective_database_url)
    ctx = PipelineContext.create(settings)
    try:
        result = requeue(ctx, study_ids=study_ids, states=states, actor=_operator(), reason=reason)
        click.echo(result.describe())
        if isinstance(ctx.dispatcher, InProcessDispatcher):
            ctx.dispatcher.run_until_idle(ctx)
    finally:
        ctx.close()


commands: list[click.Command] = [check_command, requeue_command]
