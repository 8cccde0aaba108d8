"""Shared test fixtures: the real PostgreSQL and Redis servers, and sample ECG files.

Tests that need a service talk to the real server. When it cannot be reached, the test
is skipped on a developer's machine but FAILS under CI=true: CI must never go green
because a service was missing.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _record_every_message() -> None:
    """Wrap the ORU builder before any test module imports it (tests/hl7_every_message.py)."""
    import reports.hl7_oru
    from tests.hl7_every_message import recording

    if not hasattr(reports.hl7_oru.build_oru, "__wrapped__"):
        reports.hl7_oru.build_oru = recording(reports.hl7_oru.build_oru)


_record_every_message()


@pytest.fixture(scope="session", autouse=True)
def every_message_checked() -> Iterator[None]:
    """At the end: every ORU^R01 built in this run, by python-hl7 and hl7apy strict, F/C without machine content."""
    yield
    from tests.hl7_every_message import MESSAGES, summary

    statuses, problems = summary()
    print(f"\nHL7: {len(MESSAGES)} ORU^R01 built in this run checked by python-hl7 and hl7apy strict "
          f"({dict(sorted(statuses.items()))}); {len(problems)} problems")
    assert not problems, "\n".join(problems[:20])
POSTGRES_ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("ECGWL_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture(autouse=True, scope="session")
def _private_state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that sets no ECGWL_DATA_DIR gets the default data folder under XDG_STATE_HOME:
    point that at this run's temporary folder, never at the user's own ~/.local/state."""
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if saved is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = saved


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally, fail under CI, when a service the test needs is not there."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: services are required, see scripts/test.sh)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import sqlalchemy as sa

    name = f"ecgwl_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database number of its own for one test, flushed before and after.

    Databases 1-15 are shared by every test run on the machine (several checkouts may run
    their suites at once), so a test claims one with SET NX on a key in database 0 and
    releases it afterwards; the claim expires by itself if the run is killed.
    """
    require_service("Redis", "127.0.0.1", 6379)
    import time

    import redis

    registry = redis.Redis.from_url(f"{REDIS_TEST_URL}/0")
    token = uuid.uuid4().hex
    db = None
    deadline = time.monotonic() + 120
    while db is None:
        for candidate in [1 + (uuid.uuid4().int + i) % 15 for i in range(15)]:
            if registry.set(f"ecgwl-test-db-claim:{candidate}", token, nx=True, ex=1800):
                db = candidate
                break
        else:
            if time.monotonic() > deadline:
                pytest.fail("no free Redis test database (1-15) for two minutes")
            time.sleep(0.5)
    url = f"{REDIS_TEST_URL}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if registry.get(f"ecgwl-test-db-claim:{db}") == token.encode():
            registry.delete(f"ecgwl-test-db-claim:{db}")
        registry.close()


@pytest.fixture(scope="session")
def mortara_dicom_path() -> Path:
    """The real Mortara ELI 250 12-lead ECG that ships with pydicom (1000 Hz, 10 s)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("waveform_ecg.dcm"))
