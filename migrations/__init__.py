"""Alembic migrations: the only way the ecg-worklist schema is made or changed.

Run them with `ecg-worklist db upgrade` (or `reports.store.upgrade(url)`); the plain
`alembic -c migrations/alembic.ini` works too. Each revision in `versions/` must keep the
models in `reports.db` and the migrated schema identical (tests/reports_db checks it).
"""
