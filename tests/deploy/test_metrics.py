"""The Prometheus exporter on real Postgres and Redis: what /metrics says after real pipeline work."""

from __future__ import annotations

import datetime as dt
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from reports import store
from reports.db import OutboxItem
from reports.delivery_view import GAVE_UP
from reports.metrics import study_counts_by_state
from tests.worker.conftest import copy_sample
from worker.batch import run_batch, run_in_process
from worker.context import PipelineContext
from worker.metrics import WorklistExporter
from worker.settings import Settings

pytestmark = pytest.mark.services


def _samples(value: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a /metrics page."""
    found = {}
    for family in text_string_to_metric_families(value):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.fixture
def pipeline(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[tuple[PipelineContext, str]]:
    store.upgrade(postgres_url)
    # The stages run in this process (no broker for the pipeline); the exporter reads the
    # Redis test database separately, where the test puts messages of its own.
    settings = Settings(data_dir=tmp_path / "var", inbox_dirs=[tmp_path / "inbox"], database_url=postgres_url,
                        redis_url=None, interpret_batch_size=4,
                        hl7_destinations=[{"name": "his", "host": "127.0.0.1", "port": 9}, {"name": "lab"}])
    ctx = PipelineContext.create(settings)
    yield ctx, redis_url
    ctx.close()


def test_metrics_endpoint_reports_queues_states_latencies_and_delivery_alerts(
        pipeline: tuple[PipelineContext, str], tmp_path: Path) -> None:
    import redis

    ctx, redis_url = pipeline
    client = redis.Redis.from_url(redis_url)
    exporter = WorklistExporter(ctx.engine, client, destinations=["his", "lab"], min_interval_seconds=0)
    exporter.refresh()  # the audit tail starts at the trail's current end

    # Real work: three ECGs through every stage, in this process, on Postgres.
    batch = tmp_path / "batch"
    for kind in ("dicom", "wfdb", "pdf"):
        copy_sample(kind, batch / kind)
    run_batch(ctx, batch, progress=False)
    run_in_process(ctx, progress=False)

    # Delivery: one message given up on (the retry ceiling), one retrying, the rest queued.
    with ctx.session() as session:
        rows = session.execute(sa.select(OutboxItem.id).where(OutboxItem.destination == "his")
                               .order_by(OutboxItem.id)).scalars().all()
        assert len(rows) == 3
        store.record_delivery(session, rows[0], actor="deliver", error=f"{GAVE_UP}20 attempts: refused")
        store.record_delivery(session, rows[1], actor="deliver", error="connection refused",
                              retry_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))

    # Messages waiting in Redis: three in `prepare` (one on a priority list), one taken, unacked.
    client.rpush("prepare", "m1", "m2")
    client.rpush("prepare\x06\x163", "m3")
    client.rpush("report", "m4")
    client.hset("unacked", "tag-1", "m5")

    from prometheus_client import start_http_server

    server, thread = start_http_server(0, addr="127.0.0.1", registry=exporter.registry)
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30).read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=10)
        exporter.redis.close()
    metrics = _samples(page)

    def value(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted(labels.items())))]

    assert value("ecgwl_exporter_up", source="postgres") == 1
    assert value("ecgwl_exporter_up", source="redis") == 1
    assert value("ecgwl_queue_messages", queue="prepare") == 3
    assert value("ecgwl_queue_messages", queue="report") == 1
    assert value("ecgwl_queue_messages", queue="interpret") == 0
    assert value("ecgwl_queue_unacked_messages") == 1
    assert value("ecgwl_studies", state="awaiting_signoff") == 3
    assert value("ecgwl_studies", state="queued_prepare") == 0
    # Counted once before the work, then kept current from the audit events: still exact.
    with ctx.session() as session:
        exact = study_counts_by_state(session)
    assert {state: value("ecgwl_studies", state=state) for state in exact} == exact

    assert value("ecgwl_delivery_backlog_messages", destination="his", reason="held_for_person") == 1
    assert value("ecgwl_delivery_backlog_messages", destination="his", reason="retrying") == 1
    assert value("ecgwl_delivery_backlog_messages", destination="his", reason="queued") == 1
    assert value("ecgwl_delivery_backlog_messages", destination="lab", reason="queued") == 3
    assert value("ecgwl_delivery_alerts", destination="his", why="gave_up") == 1
    assert value("ecgwl_delivery_alerts", destination="his", why="refused") == 0
    assert value("ecgwl_delivery_oldest_undelivered_seconds", destination="his") >= 0
    assert value("ecgwl_delivery_state_changes_total", destination="his", to_state="error") == 1
    assert value("ecgwl_delivery_state_changes_total", destination="his", to_state="pending") == 1

    # The audit tail saw every transition of the three studies since the exporter started.
    assert value("ecgwl_audit_events_total", action="study.registered") == 3
    assert value("ecgwl_study_transitions_total", from_state="queued_prepare", to_state="prepared") == 3
    assert value("ecgwl_study_transitions_total", from_state="interpreted", to_state="awaiting_signoff") == 3
    assert value("ecgwl_study_state_seconds_count", state="queued_prepare", next_state="prepared") == 3
    assert value("ecgwl_study_state_seconds_sum", state="queued_prepare", next_state="prepared") > 0
    assert value("ecgwl_study_state_seconds_bucket", state="queued_prepare", next_state="prepared", le="+Inf") == 3
    assert value("ecgwl_study_to_draft_seconds_count") == 3
    # The draft cannot come sooner than its preparation: the histogram sums agree with that.
    assert value("ecgwl_study_to_draft_seconds_sum") >= value(
        "ecgwl_study_state_seconds_sum", state="queued_prepare", next_state="prepared")


def test_a_restarted_exporter_times_the_states_entered_before_it_started(
        pipeline: tuple[PipelineContext, str], tmp_path: Path) -> None:
    """The tail looks up when a study entered its state when that happened before it started."""
    ctx, _ = pipeline
    batch = tmp_path / "batch"
    copy_sample("dicom", batch)
    run_batch(ctx, batch, progress=False)  # registered and queued for preparation, not yet prepared

    exporter = WorklistExporter(ctx.engine, None, destinations=["his"], min_interval_seconds=0)
    exporter.refresh()
    run_in_process(ctx, progress=False)
    exporter.refresh()
    spans = exporter.totals.state_seconds
    assert spans[("queued_prepare", "prepared")].counts[-1] == 1  # timed from the enqueue before the start
    assert exporter.totals.to_draft.counts[-1] == 1
    exporter.close()


def test_a_source_that_is_down_is_reported_not_fatal(pipeline: tuple[PipelineContext, str]) -> None:
    import redis

    ctx, _ = pipeline
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    exporter = WorklistExporter(ctx.engine, unreachable, destinations=["his"], min_interval_seconds=0)
    from prometheus_client import generate_latest

    metrics = _samples(generate_latest(exporter.registry).decode())
    assert metrics[("ecgwl_exporter_up", (("source", "redis"),))] == 0
    assert metrics[("ecgwl_exporter_up", (("source", "postgres"),))] == 1
    assert not any(name == "ecgwl_queue_messages" for name, _ in metrics)
    assert metrics[("ecgwl_studies", (("state", "received"),))] == 0


def test_one_reading_serves_every_scrape_within_the_interval(pipeline: tuple[PipelineContext, str]) -> None:
    ctx, _ = pipeline
    exporter = WorklistExporter(ctx.engine, None, destinations=["his"], min_interval_seconds=3600)
    first = exporter.refresh()
    assert exporter.refresh() is first
    assert exporter.refresh(force=True) is not first


def test_counts_by_state_kept_from_the_audit_events_match_an_exact_recount(
        pipeline: tuple[PipelineContext, str], tmp_path: Path) -> None:
    """The counts the tail keeps between recounts equal a recount, whenever the recount happens."""
    ctx, _ = pipeline
    kept = WorklistExporter(ctx.engine, None, destinations=["his"], min_interval_seconds=0, recount_seconds=3600)
    recounting = WorklistExporter(ctx.engine, None, destinations=["his"], min_interval_seconds=0, recount_seconds=0)
    batch = tmp_path / "batch"
    copy_sample("wfdb", batch / "first")
    run_batch(ctx, batch, progress=False)  # one study queued for preparation, before either exporter counts
    kept.refresh()
    copy_sample("dicom", batch / "second")
    run_batch(ctx, batch, progress=False)
    run_in_process(ctx, progress=False)
    copy_sample("pdf", batch / "third")
    run_batch(ctx, batch, progress=False)  # one more, registered and queued, not prepared
    with ctx.session() as session:
        exact = study_counts_by_state(session)
    assert exact["awaiting_signoff"] == 2 and exact["queued_prepare"] == 1
    assert kept.refresh().studies == exact
    assert kept.studies_as_of > 0
    assert recounting.refresh().studies == exact
