"""`ecg-worklist users add/list/disable` and `ecg-worklist review serve` as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from reports import store
from reports.db import AuditEvent, User
from reports.review import security
from worker.cli import main as cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    store.upgrade(postgres_url)
    values = {"ECGWL_DATABASE_URL": postgres_url, "ECGWL_DATA_DIR": str(tmp_path / "var")}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_users_add_list_disable(env: dict[str, str], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    # From the prompt (asked twice, not echoed) ...
    added = runner.invoke(cli, ["users", "add", "DrRossi", "--role", "cardiologist", "--name", "Rossi^Anna"],
                          input="a long enough secret\na long enough secret\n")
    assert added.exit_code == 0, added.output
    assert "a long enough secret" not in added.output
    # ... or from the environment, for provisioning scripts.
    monkeypatch.setenv("ECGWL_NEW_USER_PASSWORD", "another long secret")
    assert runner.invoke(cli, ["users", "add", "viewer1", "--role", "viewer"]).exit_code == 0
    refused = runner.invoke(cli, ["users", "add", "viewer1", "--role", "viewer"])
    assert refused.exit_code != 0 and "exists already" in refused.output
    short = runner.invoke(cli, ["users", "add", "x2", "--role", "viewer"], env={"ECGWL_NEW_USER_PASSWORD": "short"})
    assert short.exit_code != 0 and "10 characters" in short.output
    listed = runner.invoke(cli, ["users", "list"]).output
    assert "drrossi\tcardiologist\tactive" in listed and "viewer1\tviewer\tactive" in listed
    assert runner.invoke(cli, ["users", "disable", "viewer1"]).exit_code == 0
    assert "viewer1\tviewer\tdisabled" in runner.invoke(cli, ["users", "list"]).output
    engine = store.make_engine(postgres_url)
    try:
        with store.session_scope(engine) as session:
            user = session.execute(sa.select(User).where(User.username == "drrossi")).scalar_one()
            assert user.password_hash.startswith("$argon2id$")
            assert security.check_password(user.password_hash, "a long enough secret")
            details = session.execute(sa.select(AuditEvent.action, AuditEvent.details)
                                      .where(AuditEvent.entity_type == "user")).all()
    finally:
        engine.dispose()
    assert [d.action for d in details] == ["user.added", "user.added", "user.disabled"]
    assert not any("secret" in str(d.details) or "argon2" in str(d.details) for d in details)


def test_users_unlock(env: dict[str, str], postgres_url: str) -> None:
    """An account locked by failed logins is unlocked by `users unlock` (audited), not by waiting."""
    import datetime as dt

    runner = CliRunner()
    assert runner.invoke(cli, ["users", "add", "drbianchi", "--role", "cardiologist"],
                         env={"ECGWL_NEW_USER_PASSWORD": "a long enough secret"}).exit_code == 0
    engine = store.make_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.update(User).where(User.username == "drbianchi").values(
                failed_logins=0, locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=15)))
        assert "locked until" in runner.invoke(cli, ["users", "list"]).output
        unlocked = runner.invoke(cli, ["users", "unlock", "DrBianchi"])
        assert unlocked.exit_code == 0 and "unlocked drbianchi" in unlocked.output
        with engine.connect() as connection:
            assert connection.execute(sa.select(User.locked_until).where(User.username == "drbianchi")).scalar_one() \
                is None
            actors = connection.execute(sa.select(AuditEvent.actor).where(AuditEvent.action == "user.unlocked")).all()
        assert [a.actor for a in actors] == ["cli:users"]
        unknown = runner.invoke(cli, ["users", "unlock", "nobody"])
        assert unknown.exit_code == 1 and "no user 'nobody'" in unknown.output
    finally:
        engine.dispose()


def test_review_serve_listens_on_localhost_and_asks_for_a_login(env: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ecg-worklist"), "review", "serve", "--port", str(port)], cwd=REPO,
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/queue", follow_redirects=False, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert response is not None, "review serve did not answer"
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert httpx.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200
        assert "server" not in response.headers  # no version banner
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/" in output
