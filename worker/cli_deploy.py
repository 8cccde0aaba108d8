"""Commands of `ecg-worklist` for running it in containers and clusters (see worker/cli.py).

    ecg-worklist metrics serve [--host H] [--port P]   the Prometheus exporter (worker/metrics.py)
    ecg-worklist health [--http URL] [--no-schema]      exit 0 when this process's dependencies answer:
                                                        what a container HEALTHCHECK or a probe runs

`health` checks what every role needs: the database answers and its schema is at the
newest revision (the migration job ran), Redis answers when one is configured, and, with
`--http`, that the local web server (review, metrics) answers. It prints one line either way.
"""

from __future__ import annotations

import signal
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import click

from worker.settings import Settings


@click.group("metrics")
def metrics() -> None:
    """Prometheus metrics: queue depths, studies by state, stage latencies, delivery backlog."""


@metrics.command("serve")
@click.option("--host", default=None, help="Address to listen on (default ECGWL_METRICS_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default ECGWL_METRICS_PORT, 9464).")
def metrics_serve(host: str | None, port: int | None) -> None:
    """Serve /metrics for Prometheus, read from Postgres and Redis at each scrape."""
    from worker.logs import configure_logging
    from worker.metrics import WorklistExporter, serve

    from worker.cli_errors import require_schema

    settings = Settings()
    configure_logging(settings.log_format)
    # A scrape of a database without its tables would fail at every scrape, far from the cause:
    # say it once, at start, as every other command that reads the tables does.
    require_schema(settings.effective_database_url)
    exporter = WorklistExporter.create(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve(exporter, host or settings.metrics_host, port or settings.metrics_port, stop)
    finally:
        exporter.close()


def _check_database(settings: Settings, schema: bool) -> str:
    import sqlalchemy as sa

    from reports import store

    url = settings.effective_database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        # Connecting would make an empty file: say what is missing instead.
        raise RuntimeError(f"no database at {url.removeprefix('sqlite:///')}: run `ecg-worklist db upgrade`")
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()
    if not schema:
        return "database answers"
    current, newest = store.current_revision(url), _newest_revision(url)
    if current != newest:
        raise RuntimeError(f"database schema at {current or 'nothing'}, the code needs {newest}: "
                           "run `ecg-worklist db upgrade` (the migration job)")
    return f"database at {current}"


def _newest_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    from reports import store

    return ScriptDirectory.from_config(store.alembic_config(url)).get_current_head()


def _check_redis(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    finally:
        client.close()
    return "redis answers"


def _check_http(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the operator's own local URL
        return f"{url} answers {response.status}"


@click.command("health")
@click.option("--http", "http_url", default=None, metavar="URL",
              help="Also require this URL of the local web server to answer (e.g. http://127.0.0.1:8080/login).")
@click.option("--no-schema", is_flag=True, help="Do not require the schema at the newest revision.")
def health(http_url: str | None, no_schema: bool) -> None:
    """Exit 0 if the database (schema at head), Redis and the optional URL answer; else 1, saying which."""
    settings = Settings()
    checks: list[tuple[str, Callable[[], str]]] = [("database", lambda: _check_database(settings, not no_schema))]
    if settings.redis_url:
        checks.append(("redis", lambda: _check_redis(settings.redis_url or "")))
    if http_url:
        checks.append(("http", lambda: _check_http(http_url)))
    done: list[str] = []
    for name, check in checks:
        try:
            done.append(check())
        except Exception as exc:  # noqa: BLE001 - one line for the probe's log, never a traceback
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"unhealthy: {name}: {type(exc).__name__}: {first_line}", err=True)
            raise SystemExit(1) from None
    click.echo("healthy: " + ", ".join(done))


commands: list[click.Command] = [metrics, health]
