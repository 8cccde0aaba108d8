"""Engines on a freshly migrated database: the real Postgres (per test) and a SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from reports import store


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """A fresh Postgres database brought to head by the migrations."""
    store.upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = store.make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'ecg-worklist.sqlite3'}"
    store.upgrade(url)
    return url


@pytest.fixture(params=["postgres", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """The same store tests on both databases the product supports."""
    url = request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")
    engine = store.make_engine(url)
    yield engine
    engine.dispose()
