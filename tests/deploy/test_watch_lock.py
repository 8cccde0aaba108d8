"""One watcher per inbox: the lock on real Postgres (advisory locks) and on files (SQLite mode),
and two real `ecg-worklist watch` processes on one inbox, where only one ever scans it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from reports import store
from reports.db import Study
from tests.worker.conftest import copy_sample
from worker.watch_lock import APPLICATION_NAME, InboxLocks, inbox_lock_key

ECG_WORKLIST = Path(sys.executable).parent / "ecg-worklist"


def _locks(engine: sa.Engine, tmp_path: Path, *inboxes: str) -> InboxLocks:
    return InboxLocks.create([tmp_path / name for name in inboxes], engine, tmp_path / "var")


def test_the_key_is_the_inbox_path_and_fits_a_bigint(tmp_path: Path) -> None:
    assert inbox_lock_key(tmp_path / "a") == inbox_lock_key(tmp_path / "x" / ".." / "a")
    assert inbox_lock_key(tmp_path / "a") != inbox_lock_key(tmp_path / "b")
    assert -(2**63) <= inbox_lock_key(tmp_path / "a") < 2**63


@pytest.mark.services
def test_postgres_two_watchers_on_one_inbox_never_both_hold_it(postgres_url: str, tmp_path: Path) -> None:
    first_engine, second_engine = store.make_engine(postgres_url), store.make_engine(postgres_url)
    first = _locks(first_engine, tmp_path, "cardiology", "emergency")
    second = _locks(second_engine, tmp_path, "cardiology", "radiology")
    try:
        assert first.refresh() == [tmp_path / "cardiology", tmp_path / "emergency"]
        # The second has its own inbox, and stands by for the shared one, again and again.
        assert second.refresh() == [tmp_path / "radiology"]
        assert second.refresh() == [tmp_path / "radiology"]
        assert second._holder(tmp_path / "cardiology").startswith(APPLICATION_NAME)
        assert first.refresh() == [tmp_path / "cardiology", tmp_path / "emergency"]

        first.close()  # the first watcher stops: the second takes the shared inbox at once
        assert second.refresh() == [tmp_path / "cardiology", tmp_path / "radiology"]
        assert first.refresh() == [tmp_path / "emergency"]  # back again: the shared one is taken now
    finally:
        first.close()
        second.close()
        first_engine.dispose()
        second_engine.dispose()


@pytest.mark.services
def test_postgres_a_lost_connection_loses_the_lock_and_it_is_taken_again(postgres_url: str, tmp_path: Path) -> None:
    engine, other_engine = store.make_engine(postgres_url), store.make_engine(postgres_url)
    locks = _locks(engine, tmp_path, "cardiology")
    other = _locks(other_engine, tmp_path, "cardiology")
    try:
        assert locks.refresh() == [tmp_path / "cardiology"]
        with other_engine.connect() as conn:  # the database drops the holder's connection (a restart, a kill)
            # Only this test's database: another job's watcher on the same server is none of its business.
            pids = conn.execute(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE :name AND pid <> pg_backend_pid() "
                "AND datname = current_database()"),
                {"name": APPLICATION_NAME + "%"}).scalars().all()
            killed = [conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
                      for pid in pids]
            conn.commit()
            assert killed == [True]
            # pg_terminate_backend only signals the backend; its locks go when it has exited (on a
            # busy machine, some milliseconds later), which is the moment this test is about.
            deadline = time.monotonic() + 10.0
            while conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                               {"pid": pids[0]}).scalar() and time.monotonic() < deadline:
                conn.commit()  # a new snapshot of pg_stat_activity for the next look
                time.sleep(0.05)
        # While it is gone, another watcher may take the inbox; the first then stands by.
        assert other.refresh() == [tmp_path / "cardiology"]
        assert locks.refresh() == []
        other.close()
        assert locks.refresh() == [tmp_path / "cardiology"]
    finally:
        locks.close()
        other.close()
        engine.dispose()
        other_engine.dispose()


def test_sqlite_mode_uses_a_file_lock_per_inbox(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    first = _locks(engine, tmp_path, "cardiology")
    second = _locks(engine, tmp_path, "cardiology", "emergency")
    try:
        assert first.refresh() == [tmp_path / "cardiology"]
        assert second.refresh() == [tmp_path / "emergency"]
        assert second._holder(tmp_path / "cardiology") == f"{APPLICATION_NAME} {os.uname().nodename}:{os.getpid()}"
        first.close()
        assert second.refresh() == [tmp_path / "cardiology", tmp_path / "emergency"]
    finally:
        first.close()
        second.close()
        engine.dispose()


def _start_watch(tmp_path: Path, postgres_url: str, name: str) -> tuple[subprocess.Popen, Path]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ECGWL_")}
    env.update({"ECGWL_DATABASE_URL": postgres_url, "ECGWL_DATA_DIR": str(tmp_path / "var"),
                "ECGWL_INBOX_DIRS": json.dumps([str(tmp_path / "inbox")]), "ECGWL_STABLE_SECONDS": "0.2",
                "ECGWL_POLL_SECONDS": "0.2", "ECGWL_RECONCILE_EVERY_SECONDS": "3600"})
    log = tmp_path / f"{name}.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([str(ECG_WORKLIST), "watch"], env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True, cwd=tmp_path)
    return process, log


def _wait_for(predicate, timeout: float = 90) -> None:  # noqa: ANN001 - a test helper
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def _sources(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [Path(p).name for p in conn.execute(sa.select(Study.source_path).order_by(Study.id)).scalars()]


@pytest.mark.services
@pytest.mark.slow
def test_two_watch_processes_on_one_inbox_one_scans_the_other_takes_over_when_it_dies(
        postgres_url: str, tmp_path: Path) -> None:
    store.upgrade(postgres_url)
    engine = store.make_engine(postgres_url)
    first, first_log = _start_watch(tmp_path, postgres_url, "first")
    second = None
    try:
        _wait_for(lambda: "lock taken" in first_log.read_text())
        second, second_log = _start_watch(tmp_path, postgres_url, "second")
        _wait_for(lambda: "standing by" in second_log.read_text())
        # The standby names the holder: host and process id of the first watcher.
        assert f":{first.pid}" in second_log.read_text()

        copy_sample("dicom", tmp_path / "inbox")
        _wait_for(lambda: _sources(engine) == ["demo-dicom.dcm"])
        _wait_for(lambda: "scan: " in first_log.read_text())  # logged once the scan is over
        assert "scan: " not in second_log.read_text()

        os.killpg(first.pid, signal.SIGKILL)  # no clean exit: Postgres frees the lock with the connection
        first.wait(timeout=30)
        _wait_for(lambda: "lock taken" in second_log.read_text())
        copy_sample("pdf", tmp_path / "inbox")
        _wait_for(lambda: _sources(engine) == ["demo-dicom.dcm", "demo-report.pdf"])
        _wait_for(lambda: "scan: " in second_log.read_text())
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
        engine.dispose()
