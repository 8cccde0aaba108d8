"""The study counters the database keeps agree with the studies after every kind of change,
on Postgres and SQLite, in bulk and concurrently, and the queue and metrics read them."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from ingest.ecg import Demographics
from reports import store
from reports.counts import count_studies, counted_differences, counts_by_state
from reports.db import Study, UtcDateTime
from reports.hl7_oru import HL7Endpoints
from tests.reports_db.helpers import PATIENT, interpretation, interpreted_study, new_sha


def _agree(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        assert counted_differences(session) == []


def _exact(engine: sa.Engine, states: list[str], **where: object) -> dict[tuple[str, bool], int]:
    """The GROUP BY the counters replace, under the same filters."""
    with store.session_scope(engine) as session:
        query = sa.select(Study.state, Study.critical, sa.func.count()).where(Study.state.in_(states))
        for column, value in where.items():
            query = query.where(getattr(Study, column) == value)
        return {(s, bool(c)): n for s, c, n in session.execute(query.group_by(Study.state, Study.critical))}


def test_counters_follow_every_change_of_a_study(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        for n, (source, origin) in enumerate([("dicom", "cardiology"), ("wfdb", None), ("pdf", "emergency"),
                                              ("dicom", "emergency")]):
            study, _ = store.register_study(session, sha256=new_sha(), source_format=source,
                                            source_path=f"/inbox/{n}", origin=origin, actor="test")
    _agree(engine)
    with store.session_scope(engine) as session:
        draft = interpreted_study(session)  # acquired_at set, queued twice, interpreted
        store.draft_report(session, draft.id, endpoints=HL7Endpoints(), actor="test")
        critical = interpreted_study(session, demographics=Demographics(patient_id="P2"))  # no acquired_at
        first = session.execute(sa.select(Study.id).order_by(Study.id)).scalars().first()
        store.set_state(session, first, "queued_prepare", actor="test")
        store.set_state(session, first, "queued_prepare", actor="test")  # a re-enqueue: no move
        store.quarantine(session, first, "unreadable", actor="test")
    _agree(engine)
    with store.session_scope(engine) as session:
        study = session.get(Study, critical.id)
        study.critical = True  # a critical finding: the (state, critical) key moves
        session.flush()
        store.fail(session, critical.id, "the interpreter fell over", actor="test")
        store.set_state(session, critical.id, "queued_interpret", actor="test")
        store.save_interpretation(session, critical.id, interpretation(), actor="test", critical=True)
        study.created_at = dt.datetime(2025, 1, 2, 23, 30, tzinfo=dt.UTC)  # another received day
    _agree(engine)
    with store.session_scope(engine) as session:
        counts = counts_by_state(session)
    assert counts["quarantined"] == 1 and counts["awaiting_signoff"] == 1 and counts["interpreted"] == 1
    assert counts["received"] == 3 and sum(counts.values()) == 6 and set(counts) >= {"signed", "failed"}


def test_counters_follow_bulk_statements(engine: sa.Engine) -> None:
    """A bulk load is one statement: the counters must take it whole (and bulk updates, deletes)."""
    if engine.dialect.name == "postgresql":
        series, sha = "generate_series(1, 300) AS s (g)", "lpad(g::text, 64, '0')"
    else:
        series = "(WITH RECURSIVE s (g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 300) SELECT g FROM s)"
        sha = "printf('%064d', g)"
    fill = sa.text(f"""
        INSERT INTO studies (sha256, source_format, source_path, origin, state, state_changed_at, attempts,
                             created_at, acquired_at, critical)
        SELECT {sha}, 'wfdb', '/x', CASE WHEN g % 3 = 0 THEN NULL ELSE 'batch' END,
               CASE WHEN g % 4 = 0 THEN 'signed' ELSE 'awaiting_signoff' END, :now, 0, :now, :now, g % 5 = 0
        FROM {series}""").bindparams(sa.bindparam("now", type_=UtcDateTime()))
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    with engine.begin() as connection:
        connection.execute(fill, {"now": now})
    _agree(engine)
    with engine.begin() as connection:
        connection.execute(sa.update(Study).where(Study.state == "signed").values(state="rejected"))
        connection.execute(sa.update(Study).values(acquired_at=None).where(Study.critical.is_(True)))
    _agree(engine)
    with engine.begin() as connection:
        connection.execute(sa.delete(Study).where(Study.origin.is_(None)))
    _agree(engine)
    states = ["awaiting_signoff", "signed", "rejected"]
    every, batch, not_critical = (_exact(engine, states), _exact(engine, states, origin="batch"),
                                  _exact(engine, states, critical=False))
    day = now.date()
    with store.session_scope(engine) as session:
        assert count_studies(session, states) == every
        assert count_studies(session, states, origin="batch") == batch
        assert count_studies(session, states, day_from=day, day_to=day) == every
        assert count_studies(session, states, day_kind="acquired", day_from=day) == not_critical
        assert count_studies(session, states, day_from=day + dt.timedelta(days=1)) == {}


def test_heartbeat_like_updates_leave_the_counters_alone(pg_engine: sa.Engine) -> None:
    """An update of columns that are not counted (a lease, the features) fires no counter work."""
    with store.session_scope(pg_engine) as session:
        study = interpreted_study(session)
    with pg_engine.begin() as connection:
        before = connection.execute(sa.text("SELECT xmin::text, n FROM study_counts ORDER BY 1")).all()
        connection.execute(sa.update(Study).where(Study.id == study.id).values(features={"x": 1}, attempts=3))
    with pg_engine.begin() as connection:
        assert connection.execute(sa.text("SELECT xmin::text, n FROM study_counts ORDER BY 1")).all() == before


def test_concurrent_state_changes_neither_deadlock_nor_lose_counts(pg_engine: sa.Engine) -> None:
    """Two writers moving studies through opposite transitions at once: counters lock after the
    audit head, in one order, so neither waits for the other in a cycle."""
    with store.session_scope(pg_engine) as session:
        ids = [store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/x",
                                    actor="test")[0].id for _ in range(40)]
        for study_id in ids:
            store.set_state(session, study_id, "queued_prepare", actor="test")
        for study_id in ids[20:]:
            store.fail(session, study_id, "test", actor="test")
    errors: list[BaseException] = []

    def move(chosen: list[int], target: str) -> None:
        try:
            for study_id in chosen:
                with store.session_scope(pg_engine) as session:
                    store.set_state(session, study_id, target, actor="test")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # queued_prepare -> failed against failed -> queued_prepare: the same two counter rows, opposite orders.
    threads = [threading.Thread(target=move, args=(ids[:20], "failed")),
               threading.Thread(target=move, args=(ids[20:], "queued_prepare"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.session_scope(pg_engine) as session:
        assert counts_by_state(session)["failed"] == 20 and counts_by_state(session)["queued_prepare"] == 20
    _agree(pg_engine)


def test_the_migration_counts_the_studies_already_there(postgres_url: str) -> None:
    store.upgrade(postgres_url, "0004_patient_search")
    engine = store.make_engine(postgres_url)
    try:
        # Rows as the schema at 0004 has them (plain SQL: the models carry columns of later revisions).
        with engine.begin() as conn:
            for i in range(3):
                conn.execute(sa.text(
                    "INSERT INTO studies (sha256, source_format, source_path, state, state_changed_at, attempts, "
                    "created_at, critical) VALUES (:sha, 'dicom', :path, 'interpreted', now(), 0, now(), false)"),
                    {"sha": f"{i:064x}", "path": f"/inbox/{i}.dcm"})
        store.upgrade(postgres_url)
        with store.session_scope(engine) as session:
            assert counts_by_state(session)["interpreted"] == 3
        _agree(engine)
    finally:
        engine.dispose()
