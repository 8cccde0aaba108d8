"""The audit trail: append-only in the database, hash-chained, verifiable, fork-free under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.orm import Session

from reports import audit, store
from reports.audit import GENESIS_HASH, verify_chain
from reports.db import AuditEvent
from worker.cli import main as cli


def _append(engine: sa.Engine, count: int, actor: str = "test") -> None:
    for n in range(count):
        with store.session_scope(engine) as session:
            audit.append(session, actor=actor, action="test.event", entity_type="study", entity_id=n,
                         details={"n": n, "note": "ünïcode & json"})


def _verify(engine: sa.Engine) -> audit.VerifyResult:
    with store.session_scope(engine) as session:
        return verify_chain(session)


def _at_once(threads: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run `work(n)` for n in range(threads), each in a thread, released together; the errors they raised."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            start.wait()
            work(worker)
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


def _as_superuser_without_triggers(engine: sa.Engine, *statements: str) -> None:
    """What an attacker with superuser rights (or a restored dump) can do: bypass the triggers."""
    with engine.begin() as connection:
        connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            connection.execute(sa.text(statement))


def test_chain_links_each_event_to_the_previous(engine: sa.Engine) -> None:
    _append(engine, 3)
    with store.session_scope(engine) as session:
        events = session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
        assert [e.id for e in events] == [1, 2, 3]
        assert events[0].prev_hash == GENESIS_HASH
        assert events[1].prev_hash == events[0].row_hash and events[2].prev_hash == events[1].row_hash
        assert events[0].details == {"n": 0, "note": "ünïcode & json"}
    result = _verify(engine)
    assert result.ok and result.events_checked == 3 and result.last_id == 3


def test_appends_around_savepoints_keep_the_chain(engine: sa.Engine) -> None:
    """One transaction: an event, a savepoint whose events are rolled back, one whose events are
    kept, then more events. The head the transaction remembers must follow the database."""
    _append(engine, 1)
    with store.session_scope(engine) as session:
        audit.append(session, actor="t", action="before", entity_type="study", entity_id=1)
        with pytest.raises(RuntimeError), session.begin_nested():
            audit.append(session, actor="t", action="rolled.back", entity_type="study", entity_id=1)
            raise RuntimeError("the savepoint's work is undone")
        audit.append(session, actor="t", action="after.rollback", entity_type="study", entity_id=1)
        with session.begin_nested():
            audit.append(session, actor="t", action="in.savepoint", entity_type="study", entity_id=1)
        audit.append(session, actor="t", action="after.release", entity_type="study", entity_id=1)
    with store.session_scope(engine) as session:
        actions = session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions == ["test.event", "before", "after.rollback", "in.savepoint", "after.release"]
    result = _verify(engine)
    assert result.ok and result.events_checked == 5


def test_details_must_be_plain_json(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session, pytest.raises(ValueError, match="plain JSON"):
        audit.append(session, actor="t", action="a", entity_type="study", entity_id=1, details={"x": object()})


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET actor = 'mallory' WHERE id = 1",
    "DELETE FROM audit_events WHERE id = 1",
])
def test_database_refuses_update_and_delete(engine: sa.Engine, statement: str) -> None:
    _append(engine, 1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(sa.text(statement))
    assert _verify(engine).ok


def test_postgres_refuses_truncate(pg_engine: sa.Engine) -> None:
    _append(pg_engine, 1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), pg_engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE audit_events"))


def test_verify_names_a_row_changed_behind_the_triggers_back(pg_engine: sa.Engine) -> None:
    _append(pg_engine, 5)
    _as_superuser_without_triggers(
        pg_engine, """UPDATE audit_events SET details = '{"n": 99}' WHERE id = 3""")
    result = _verify(pg_engine)
    assert not result.ok
    assert result.broken_id == 3
    assert "content hash mismatch" in result.reason
    assert result.events_checked == 2


def test_verify_names_the_next_row_when_a_change_is_rehashed(pg_engine: sa.Engine) -> None:
    """A forger who also recomputes the changed row's hash still breaks the next link."""
    _append(pg_engine, 4)
    with store.session_scope(pg_engine) as session:
        row = session.get(AuditEvent, 2)
        forged_hash = audit.compute_hash(id=row.id, at=row.at, actor="mallory", action=row.action,
                                         entity_type=row.entity_type, entity_id=row.entity_id,
                                         details=row.details, prev_hash=row.prev_hash)
    _as_superuser_without_triggers(
        pg_engine, f"UPDATE audit_events SET actor = 'mallory', row_hash = '{forged_hash}' WHERE id = 2")
    result = _verify(pg_engine)
    assert not result.ok and result.broken_id == 3 and "broken link" in result.reason


def test_verify_finds_removed_rows_in_the_middle_and_at_the_end(pg_engine: sa.Engine) -> None:
    _append(pg_engine, 5)
    _as_superuser_without_triggers(pg_engine, "DELETE FROM audit_events WHERE id = 5")
    tail = _verify(pg_engine)
    assert not tail.ok and tail.broken_id is None and "head names event 5" in tail.reason
    _as_superuser_without_triggers(pg_engine, "DELETE FROM audit_events WHERE id = 2")
    middle = _verify(pg_engine)
    assert not middle.ok and middle.broken_id == 3 and "id gap" in middle.reason


def test_concurrent_appends_keep_one_unbroken_chain(engine: sa.Engine) -> None:
    """Postgres serialises on the audit_head row lock, SQLite on BEGIN IMMEDIATE's write lock."""
    pg_engine = engine
    threads, per_thread = 8, 10
    assert _at_once(threads, lambda worker: _append(pg_engine, per_thread, actor=f"worker-{worker}")) == []
    result = _verify(pg_engine)
    assert result.ok, result.describe()
    assert result.events_checked == threads * per_thread
    with pg_engine.connect() as connection:
        actors = connection.execute(sa.text("SELECT count(DISTINCT actor) FROM audit_events")).scalar_one()
    assert actors == threads


def test_audit_verify_command_exit_status(pg_url: str, pg_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECGWL_DATABASE_URL", pg_url)
    _append(pg_engine, 3)
    runner = CliRunner()
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0 and "intact: 3 events" in intact.output
    _as_superuser_without_triggers(pg_engine, "UPDATE audit_events SET action = 'x' WHERE id = 2")
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1 and "BROKEN at event 2" in broken.output


# ---------------------------------------------------------------- appends written together (audit.batched)


def _statements_into_audit_events(engine: sa.Engine) -> tuple[list[str], object]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if "insert into audit_events" in " ".join(statement.lower().split()):
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    return seen, record


def test_a_batched_block_writes_its_events_in_one_statement_with_the_same_chain(engine: sa.Engine) -> None:
    """The events of a block are hashed as single appends would hash them and written together at its end."""
    _append(engine, 2)
    seen, record = _statements_into_audit_events(engine)
    try:
        with store.session_scope(engine) as session:
            with audit.batched(session):
                appended = [audit.append(session, actor="t", action="in.block", entity_type="study", entity_id=n,
                                         details={"n": n, "note": "ünïcode & json"}) for n in range(5)]
                assert seen == []  # nothing written yet
            assert len(seen) == 1  # one INSERT for the five (an executemany on SQLite)
            after = audit.append(session, actor="t", action="after.block", entity_type="study", entity_id=9)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert [event.id for event in appended] == [3, 4, 5, 6, 7] and after.id == 8
    assert after.prev_hash == appended[-1].row_hash
    with store.session_scope(engine) as session:
        rows = session.execute(sa.select(AuditEvent).where(AuditEvent.id >= 3).order_by(AuditEvent.id)).scalars().all()
        assert [(row.id, row.row_hash, row.details) for row in rows[:5]] == [
            (event.id, event.row_hash, event.details) for event in appended]
    result = _verify(engine)
    assert result.ok and result.events_checked == 8, result.describe()


def test_a_block_that_raises_still_writes_the_events_of_its_changes(engine: sa.Engine) -> None:
    """Single appends would be in the transaction when the caller goes on after the error: so are a block's."""
    with store.session_scope(engine) as session:
        with pytest.raises(LookupError), audit.batched(session):
            audit.append(session, actor="t", action="made.change", entity_type="study", entity_id=1)
            raise LookupError("the next study was not found")
        audit.append(session, actor="t", action="went.on", entity_type="study", entity_id=2)
    with store.session_scope(engine) as session:
        actions = session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions == ["made.change", "went.on"]
    assert _verify(engine).ok


def test_a_commit_inside_a_block_writes_what_waits_first(engine: sa.Engine) -> None:
    with Session(bind=engine) as session:
        with audit.batched(session):
            audit.append(session, actor="t", action="one", entity_type="study", entity_id=1)
            session.commit()
            audit.append(session, actor="t", action="two", entity_type="study", entity_id=2)
        session.commit()
    with store.session_scope(engine) as session:
        actions = session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars().all()
    assert actions == ["one", "two"]
    assert _verify(engine).ok


def test_a_savepoint_ending_inside_a_block_with_events_waiting_is_refused(engine: sa.Engine) -> None:
    """Whether a rolled-back savepoint's events stand cannot be told at the block's end: none is written,
    and the transaction does not commit a chain that forks."""
    _append(engine, 1)
    with pytest.raises(RuntimeError, match="savepoint ended inside the block"), \
            store.session_scope(engine) as session, audit.batched(session):
        audit.append(session, actor="t", action="before.savepoint", entity_type="study", entity_id=1)
        with pytest.raises(ValueError), session.begin_nested():
            audit.append(session, actor="t", action="rolled.back", entity_type="study", entity_id=1)
            raise ValueError("undo the savepoint")
    result = _verify(engine)
    assert result.ok and result.events_checked == 1
    # A savepoint inside a block before any event waits is harmless.
    with store.session_scope(engine) as session, audit.batched(session):
        with session.begin_nested():
            pass
        audit.append(session, actor="t", action="after.savepoint", entity_type="study", entity_id=1)
    result = _verify(engine)
    assert result.ok and result.events_checked == 2


def test_concurrent_batched_blocks_keep_one_unbroken_chain(engine: sa.Engine) -> None:
    threads, blocks, per_block = 6, 4, 5

    def work(worker: int) -> None:
        for block in range(blocks):
            with store.session_scope(engine) as session, audit.batched(session):
                for n in range(per_block):
                    audit.append(session, actor=f"worker-{worker}", action="test.batched", entity_type="study",
                                 entity_id=block * per_block + n)

    assert _at_once(threads, work) == []
    result = _verify(engine)
    assert result.ok, result.describe()
    assert result.events_checked == threads * blocks * per_block
