"""What a study's journey costs the database, on Postgres: the statements every study sends from
registration to its published draft, held to a budget so the per-study overhead cannot creep back
(issue 16: 48.3 statements a study here before the audit's one-statement append, the inserts
with ON CONFLICT and the lease's dead-holder look only where a study could not be taken; 33.0 after;
32.3 -> 28.3 when a batch's reports were drafted in one transaction and published in one more;
25.7 when a batch of studies to prepare was saved in one transaction too; 23.7 when the batch
command registered its ECGs a chunk to a transaction; 20.3 when a state change's UPDATE waited for the
transaction's flush, so a batch's go in one statement, and a batch's drafts were read in one SELECT to
publish them; 19.7 when a batch's outbox rows were written before its state changes and a draft's order
numbers went with the report's INSERT; 17.0 when a batch's drafts were inserted in one statement, their
order numbers in one more, and its outbox rows in one; 10.7 when each transaction's audit events
went in one statement). The watcher's own share, registering,
archiving and queueing a scan's arrivals, has a budget of its own (8 statements a study when each
arrival had its own two transactions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.intake.watch import walk_records
from reports import audit, store
from tests.worker.conftest import copy_sample
from worker.context import PipelineContext
from worker.dispatch import Stage
from worker.intake import register_batch_items
from worker.settings import Settings

pytestmark = [pytest.mark.services]

# Statements (cursor executions, BEGIN and COMMIT not counted) a study may cost, on average, in a
# batch of three through the in-process stages; 10.7 when this was last lowered.
STATEMENTS_PER_STUDY = 11
# What the watcher's scan sends a study, on average, for six arrivals (one of them the same content
# as another): 3.5 when it was set (two transactions for the scan, not two for each arrival).
WATCHER_STATEMENTS_PER_STUDY = 4


def test_a_study_journey_stays_within_its_statement_budget(
        tmp_path: Path, postgres_url: str, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url=postgres_url, interpret_batch_size=3)
    store.upgrade(postgres_url)
    archive = tmp_path / "archive"
    for kind in ("dicom", "wfdb", "pdf"):
        copy_sample(kind, archive / kind)
    ctx = PipelineContext.create(settings)
    statements: list[str] = []
    sa.event.listen(ctx.engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: statements.append(" ".join(statement.lower().split())))
    try:
        register_batch_items(ctx, list(walk_records(archive)), origin="test")  # as `ecg-worklist batch` does
        ctx.dispatcher.run_until_idle(ctx)
    finally:
        ctx.close()

    engine = store.make_engine(postgres_url)
    with engine.connect() as connection:
        states = connection.execute(sa.text("SELECT state FROM studies ORDER BY id")).scalars().all()
        events = connection.execute(sa.text("SELECT count(*) FROM audit_events")).scalar_one()
    engine.dispose()
    assert states == ["awaiting_signoff"] * 3
    per_study = len(statements) / 3
    assert per_study <= STATEMENTS_PER_STUDY, f"{per_study:.1f} statements a study"
    # A transaction's audit events are one statement that moves the head with it (`audit.batched`): the
    # 8 events of each study (24) in 5 statements, one for each transaction of the journey that audits
    # (register and queue, prepare, interpret, draft, publish); no separate UPDATE of the head.
    appends = [s for s in statements if s.startswith("with moved_head as (update audit_head")]
    assert events == 24 and len(appends) == 5
    assert not [s for s in statements if "insert into audit_events" in s and s not in appends]
    assert not [s for s in statements if s.startswith("update audit_head")]
    # A batch's state changes reach the database together, when its transaction flushes: one UPDATE
    # statement (executemany) per transaction and set of columns changed, not one per study and state
    # (15 state changes here: 15 statements when each change flushed at once, 7 when this was written).
    assert len([s for s in statements if s.startswith("update studies set state=")]) <= 8
    # The inserts need no savepoint around them (ON CONFLICT decides a race).
    assert not [s for s in statements if s.startswith("savepoint")]
    # A batch's drafts and their outbox rows go in one INSERT each (the batch of three here is one report batch).
    assert len([s for s in statements if s.startswith("insert into reports")]) == 1
    assert len([s for s in statements if s.startswith("insert into outbox")]) == 1


def test_a_scan_registers_and_queues_its_arrivals_in_two_transactions(
        tmp_path: Path, postgres_url: str, make_settings: Callable[..., Settings]) -> None:
    import pydicom

    from ingest.intake.watch import InboxScanner
    from reports.db import Study
    from tests.worker.conftest import SAMPLES
    from worker.watch_loop import scan_once

    settings = make_settings(database_url=postgres_url)
    store.upgrade(postgres_url)
    inbox = settings.inbox_dirs[0]
    inbox.mkdir(parents=True)
    dataset = pydicom.dcmread(SAMPLES / "demo-dicom.dcm")
    for n in range(5):
        dataset.AccessionNumber = f"SCAN-{n}"
        dataset.save_as(inbox / f"v{n}.dcm")
    (inbox / "again.dcm").write_bytes((inbox / "v0.dcm").read_bytes())  # the same content, twice in one scan
    ctx = PipelineContext.create(settings)
    statements: list[str] = []
    commits: list[None] = []
    sa.event.listen(ctx.engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_a: statements.append(statement))
    sa.event.listen(ctx.engine, "commit", lambda _c: commits.append(None))
    try:
        taken = scan_once(ctx, InboxScanner([inbox], stable_seconds=0.0))
        queued = list(ctx.dispatcher.queues[Stage.PREPARE])
    finally:
        ctx.close()

    assert taken == {"new": 5, "duplicate": 1} and not list(inbox.iterdir())
    assert len(commits) == 2  # one transaction registers the scan's arrivals, one queues them
    assert len(statements) / 6 <= WATCHER_STATEMENTS_PER_STUDY, f"{len(statements) / 6:.1f} statements a study"
    engine = store.make_engine(postgres_url)
    with store.session_scope(engine) as session:
        rows = session.execute(sa.select(Study.id, Study.state, Study.archive_path)).all()
        duplicates = session.execute(sa.text(
            "SELECT count(*) FROM audit_events WHERE action = 'study.duplicate'")).scalar_one()
        assert audit.verify_chain(session).ok
    engine.dispose()
    assert len(rows) == 5 and {row.state for row in rows} == {"queued_prepare"}
    assert all(Path(row.archive_path).is_file() for row in rows)
    assert sorted(queued) == sorted(row.id for row in rows) and duplicates == 1
