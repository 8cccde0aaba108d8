"""Alembic is the only way the schema is made: it goes up, down and up again, and matches the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from reports import store
from reports.db import Base

TABLES = {"studies", "reports", "outbox", "audit_events", "audit_head", "users", "web_sessions", "study_counts",
          "study_counts_by_day"}
HEAD = "0007_lz4_large_columns"


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _schema_differences(url: str) -> list:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _query(url: str, sql: str) -> list[sa.Row]:
    """The rows of one query, on a connection of its own."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def _pg_guard_objects(url: str) -> tuple[int, int]:
    triggers = _query(url, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal"
                      )[0][0] if "audit_events" in _tables(url) else 0
    functions = _query(url, "SELECT count(*) FROM pg_proc WHERE proname = 'audit_events_refuse_change'")[0][0]
    return triggers, functions


def test_postgres_upgrade_downgrade_upgrade(postgres_url: str) -> None:
    store.upgrade(postgres_url)
    assert _tables(postgres_url) == TABLES
    assert store.current_revision(postgres_url) == HEAD
    assert _pg_guard_objects(postgres_url) == (2, 1)

    store.downgrade(postgres_url, "base")
    assert _tables(postgres_url) == set()
    assert store.current_revision(postgres_url) is None
    assert _pg_guard_objects(postgres_url) == (0, 0)

    store.upgrade(postgres_url)
    assert _tables(postgres_url) == TABLES
    assert _pg_guard_objects(postgres_url) == (2, 1)


def test_postgres_schema_matches_the_models(pg_url: str) -> None:
    assert _schema_differences(pg_url) == []


def test_sqlite_upgrade_downgrade_and_models_match(sqlite_url: str) -> None:
    assert _tables(sqlite_url) == TABLES
    assert _schema_differences(sqlite_url) == []
    store.downgrade(sqlite_url, "base")
    assert _tables(sqlite_url) == set()
    store.upgrade(sqlite_url)
    assert store.current_revision(sqlite_url) == HEAD


def test_the_migration_seeds_an_empty_audit_head(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id, last_id, last_hash FROM audit_head")).all()
    finally:
        engine.dispose()
    assert rows == [(1, 0, "0" * 64)]


def test_db_commands_make_and_drop_the_embedded_sqlite_schema(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from worker.cli import main as cli

    monkeypatch.delenv("ECGWL_DATABASE_URL", raising=False)
    monkeypatch.setenv("ECGWL_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    up = runner.invoke(cli, ["db", "upgrade"])
    assert up.exit_code == 0 and HEAD in up.output
    url = f"sqlite:///{(tmp_path / 'var' / 'ecg-worklist.sqlite3').resolve()}"
    assert _tables(url) == TABLES
    assert runner.invoke(cli, ["db", "current"]).output.strip() == HEAD
    refused = runner.invoke(cli, ["db", "downgrade", "base"], input="n\n")
    assert refused.exit_code != 0 and _tables(url) == TABLES
    down = runner.invoke(cli, ["db", "downgrade", "base", "--yes"])
    assert down.exit_code == 0 and _tables(url) == set()


def test_review_accounts_migration_goes_down_to_the_initial_schema(postgres_url: str) -> None:
    store.upgrade(postgres_url)
    store.downgrade(postgres_url, "0001_initial")
    assert _tables(postgres_url) == TABLES - {"users", "web_sessions", "study_counts", "study_counts_by_day"}
    engine = sa.create_engine(postgres_url)
    try:
        indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("studies")}
    finally:
        engine.dispose()
    assert "ix_studies_queue" not in indexes and "ix_studies_state_changed" in indexes
    store.upgrade(postgres_url)
    assert store.current_revision(postgres_url) == HEAD


def _column_compression(url: str) -> dict[str, str]:
    """{table.column: the compression its new values get} for the large columns ("" = the server's default)."""
    rows = _query(url, "SELECT c.relname, a.attname, a.attcompression FROM pg_attribute a JOIN pg_class c "
                       "ON c.oid = a.attrelid WHERE (c.relname, a.attname) IN (('studies', 'features'), "
                       "('studies', 'interpretation'), ('reports', 'hl7_message'), ('outbox', 'payload'))")
    return {f"{table}.{column}": {"l": "lz4", "p": "pglz"}.get(code, "") for table, column, code in rows}


def test_the_large_columns_are_compressed_with_lz4_and_back_with_pglz(postgres_url: str) -> None:
    """0007: the features, interpretations, HL7 messages and payloads are written lz4-compressed (this
    machine's Postgres has lz4), a value written is stored so, and the downgrade goes back to pglz."""
    columns = {"studies.features", "studies.interpretation", "reports.hl7_message", "outbox.payload"}
    store.upgrade(postgres_url, "0006_study_leases")
    assert _column_compression(postgres_url) == dict.fromkeys(columns, "")
    store.upgrade(postgres_url)
    assert _column_compression(postgres_url) == dict.fromkeys(columns, "lz4")

    engine = store.make_engine(postgres_url)
    try:
        with engine.begin() as connection:
            features = {"leads": {f"lead {n}": list(range(n, n + 400)) for n in range(12)}}  # ~30 kB of JSON
            connection.execute(sa.text("INSERT INTO studies (sha256, source_path, source_format, state, created_at, "
                                       "state_changed_at, features) VALUES (:sha, 'x.dcm', 'dicom', 'queued_prepare', "
                                       "now(), now(), CAST(:features AS json))"),
                               {"sha": "a" * 64, "features": store.json_text(features)})
            method = connection.execute(sa.text("SELECT pg_column_compression(features) FROM studies")).scalar_one()
    finally:
        engine.dispose()
    assert method == "lz4"

    store.downgrade(postgres_url, "0006_study_leases")
    assert _column_compression(postgres_url) == dict.fromkeys(columns, "pglz")
