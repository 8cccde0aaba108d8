"""`ecg-worklist health`: what a container HEALTHCHECK or a Kubernetes probe runs, on real services."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from click.testing import CliRunner

from reports import store
from worker.cli import main

pytestmark = pytest.mark.services


def _health(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> tuple[int, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["health", *args])
    return result.exit_code, result.output.strip()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthy_when_the_schema_is_current_and_redis_answers(monkeypatch: pytest.MonkeyPatch, postgres_url: str,
                                                              redis_url: str) -> None:
    store.upgrade(postgres_url)
    code, output = _health(monkeypatch, ECGWL_DATABASE_URL=postgres_url, ECGWL_REDIS_URL=redis_url)
    assert code == 0, output
    assert output == f"healthy: database at {store.current_revision(postgres_url)}, redis answers"


def test_a_database_without_the_schema_names_the_migration(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    code, output = _health(monkeypatch, ECGWL_DATABASE_URL=postgres_url)
    assert code == 1
    assert output.startswith("unhealthy: database: RuntimeError: database schema at nothing, the code needs ")
    assert "run `ecg-worklist db upgrade`" in output
    assert len(output.splitlines()) == 1  # one line, no traceback
    code, output = _health(monkeypatch, "--no-schema", ECGWL_DATABASE_URL=postgres_url)
    assert (code, output) == (0, "healthy: database answers")


def test_redis_or_the_web_server_down_is_unhealthy_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                postgres_url: str) -> None:
    store.upgrade(postgres_url)
    code, output = _health(monkeypatch, ECGWL_DATABASE_URL=postgres_url,
                           ECGWL_REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    assert code == 1 and output.startswith("unhealthy: redis: ConnectionError") and len(output.splitlines()) == 1

    monkeypatch.delenv("ECGWL_REDIS_URL")
    code, output = _health(monkeypatch, "--http", f"http://127.0.0.1:{_closed_port()}/login")
    assert code == 1 and output.startswith("unhealthy: http: URLError")

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/login"
        code, output = _health(monkeypatch, "--http", url)
        assert code == 0 and output.endswith(f"{url} answers 200")
    finally:
        server.shutdown()
