"""The Prometheus exporter: `ecg-worklist metrics serve` publishes what Postgres and Redis say.

    exporter = WorklistExporter.create(settings)     # one per process
    exporter.registry                                # what /metrics serves (prometheus_client)

One small process for the whole installation, not an endpoint in every worker: the queue
depths live in Redis and the states in Postgres, so one reader sees them all, and the
Celery prefork children need no shared-memory metrics. Each scrape reads (at most once per
`metrics_min_interval_seconds`, however many Prometheus servers ask) the Redis list lengths,
the undelivered outbox rows and the audit events since the last scrape; the studies by state
are read from the counters the database keeps (every scrape by default; with
`metrics_recount_seconds` > 0 that often, kept current in between from those audit events:
reports/metrics.py says why that is exact). It publishes:

    ecgwl_queue_messages{queue}                  Celery messages waiting in each Redis queue
    ecgwl_queue_unacked_messages                 messages a worker took and has not finished
    ecgwl_studies{state}                         studies by state (reports.metrics.study_counts_by_state)
    ecgwl_delivery_backlog_messages{destination,reason}
                                                 undelivered HL7: queued, retrying, held_for_person, sent_unacked
    ecgwl_delivery_alerts{destination,why}       held for a person: gave_up (retry ceiling), unencodable, refused
    ecgwl_delivery_oldest_undelivered_seconds{destination}
    ecgwl_audit_events_total{action}             every audited change since the exporter started:
                                                 study.holder_lost / study.requeued are the recoveries
    ecgwl_study_transitions_total{from_state,to_state}
    ecgwl_delivery_state_changes_total{destination,to_state}
                                                 pending = a delivery started failing, error = held
                                                 for a person, acked = delivered
    ecgwl_study_state_seconds{state,next_state}  histogram: how long studies stayed in a state
    ecgwl_study_to_draft_seconds                 histogram: registration -> draft awaiting sign-off
    ecgwl_exporter_up{source}, ecgwl_exporter_query_seconds{source}
                                                 whether Postgres / Redis answered, and how fast

A source that is down does not break the scrape: its `ecgwl_exporter_up` is 0 and its
metrics are left out (Prometheus then alerts on `up` / absent series). No patient data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from reports.metrics import AuditTail, DestinationBacklog, TailBatch, counts_with_head, delivery_backlog
from worker.dispatch import Stage
from worker.settings import Settings

if TYPE_CHECKING:
    import redis
    import sqlalchemy as sa

log = logging.getLogger(__name__)

# Seconds: a report takes well under a second; a queue wait or a GPU batch minutes; a draft
# waits hours to days for a signature. The buckets cover all of it.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                   3600.0, 3 * 3600.0, 8 * 3600.0, 24 * 3600.0, 72 * 3600.0, float("inf"))

# kombu's Redis transport keeps a queue as one list per priority step: the queue's own name,
# and name + "\x06\x16" + step for the other steps (kombu.transport.redis, PRIORITY_STEPS).
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)
_UNACKED_KEY = "unacked"  # kombu's hash of messages delivered to a worker and not yet acknowledged


def queue_depths(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting in each Celery queue on Redis (LLEN of its lists: O(1) each)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
        for step in _PRIORITY_STEPS:
            pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}")
    lengths = pipe.execute()
    per_queue = 1 + len(_PRIORITY_STEPS)
    return {queue: sum(lengths[n * per_queue:(n + 1) * per_queue]) for n, queue in enumerate(queues)}


@dataclass
class Histogram:
    """Cumulative bucket counts and a sum, as Prometheus wants them (one label set)."""

    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for n, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[n] += 1
        self.total += value

    def as_buckets(self) -> list[tuple[str, int]]:
        counts = self.counts or [0] * len(self.buckets)
        return [("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in zip(self.buckets, counts)]


@dataclass
class Snapshot:
    """One reading of Postgres and Redis (kept for `metrics_min_interval_seconds`)."""

    taken_at: float
    postgres_up: bool = False
    redis_up: bool = False
    postgres_seconds: float = 0.0
    redis_seconds: float = 0.0
    studies: dict[str, int] = field(default_factory=dict)
    backlog: list[DestinationBacklog] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)
    unacked: int = 0


@dataclass
class Totals:
    """The counters and histograms fed by the audit tail, since this exporter started."""

    actions: dict[str, int] = field(default_factory=dict)
    transitions: dict[tuple[str, str], int] = field(default_factory=dict)
    delivery_changes: dict[tuple[str, str], int] = field(default_factory=dict)
    state_seconds: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    to_draft: Histogram = field(default_factory=Histogram)

    def add(self, batch: TailBatch) -> None:
        for source, target in ((batch.actions, self.actions), (batch.transitions, self.transitions),
                               (batch.delivery_changes, self.delivery_changes)):
            for key, count in source.items():
                target[key] = target.get(key, 0) + count
        for span in batch.spans:
            self.state_seconds.setdefault((span.left, span.entered), Histogram()).observe(span.seconds)
        for seconds in batch.to_draft_seconds:
            self.to_draft.observe(seconds)


class WorklistExporter:
    """A prometheus_client collector over Postgres and Redis, with its own registry."""

    def __init__(self, engine: sa.Engine, redis_client: redis.Redis | None, *, destinations: Sequence[str],
                 min_interval_seconds: float = 10.0, recount_seconds: float = 3600.0) -> None:
        self.engine = engine
        self.redis = redis_client
        self.destinations = list(destinations)
        self.min_interval_seconds = min_interval_seconds
        self.recount_seconds = recount_seconds
        self.tail = AuditTail(engine)
        self.totals = Totals()
        self.studies: dict[str, int] | None = None  # by state, exact as of audit event `studies_as_of`
        self.studies_as_of = 0
        self._counted_at = 0.0
        self._snapshot: Snapshot | None = None
        self._lock = threading.RLock()  # the HTTP server answers scrapes on several threads
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    @classmethod
    def create(cls, settings: Settings) -> WorklistExporter:
        from reports import store

        redis_client = None
        if settings.redis_url:
            import redis

            redis_client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        engine = store.make_engine(settings.effective_database_url)
        return cls(engine, redis_client, destinations=settings.hl7_destination_names,
                   min_interval_seconds=settings.metrics_min_interval_seconds,
                   recount_seconds=settings.metrics_recount_seconds)

    def close(self) -> None:
        self.engine.dispose()
        if self.redis is not None:
            self.redis.close()

    # ------------------------------------------------------------ reading

    def refresh(self, *, force: bool = False) -> Snapshot:
        """Read Postgres and Redis now, unless the last reading is recent enough."""
        with self._lock:
            now = time.monotonic()
            if not force and self._snapshot is not None and now - self._snapshot.taken_at < self.min_interval_seconds:
                return self._snapshot
            snapshot = Snapshot(taken_at=now)
            self._read_postgres(snapshot)
            self._read_redis(snapshot)
            self._snapshot = snapshot
            return snapshot

    def _read_postgres(self, snapshot: Snapshot) -> None:
        from sqlalchemy.orm import Session

        started = time.perf_counter()
        try:
            batch = self.tail.advance()
            self.totals.add(batch)
            if self.studies is None or time.monotonic() - self._counted_at >= self.recount_seconds:
                # Exact, from one snapshot that includes every event the tail has read.
                self.studies, self.studies_as_of = counts_with_head(self.engine)
                self._counted_at = time.monotonic()
            else:
                self._apply_moves(batch)
            snapshot.studies = dict(self.studies)
            with Session(self.engine) as session:
                snapshot.backlog = delivery_backlog(session)
            snapshot.postgres_up = True
        except Exception as exc:  # the database is down or restarting: publish that, keep serving
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
        snapshot.postgres_seconds = time.perf_counter() - started

    def _apply_moves(self, batch: TailBatch) -> None:
        """Keep the counts by state current: each audited move after the last exact count."""
        assert self.studies is not None
        for event_id, left, entered in batch.state_moves:
            if event_id <= self.studies_as_of:
                continue  # already in the exact count
            if left is not None:
                self.studies[left] = self.studies.get(left, 0) - 1
            self.studies[entered] = self.studies.get(entered, 0) + 1
        self.studies_as_of = max([self.studies_as_of, *(event_id for event_id, _, _ in batch.state_moves)])

    def _read_redis(self, snapshot: Snapshot) -> None:
        if self.redis is None:
            return
        started = time.perf_counter()
        try:
            snapshot.queues = queue_depths(self.redis, [stage.value for stage in Stage])
            snapshot.unacked = int(self.redis.hlen(_UNACKED_KEY))
            snapshot.redis_up = True
        except Exception as exc:
            log.warning("metrics: Redis did not answer (%s)", type(exc).__name__)
        snapshot.redis_seconds = time.perf_counter() - started

    # ------------------------------------------------------------ publishing (prometheus_client calls this)

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # one scrape at a time: the totals are not changed while they are read
            yield from self._collect()

    def _collect(self) -> Iterator[Metric]:
        snapshot = self.refresh()
        up = GaugeMetricFamily("ecgwl_exporter_up", "Whether the source answered the last reading (1) or not (0)",
                               labels=["source"])
        seconds = GaugeMetricFamily("ecgwl_exporter_query_seconds", "How long the last reading of the source took",
                                    labels=["source"])
        up.add_metric(["postgres"], int(snapshot.postgres_up))
        seconds.add_metric(["postgres"], snapshot.postgres_seconds)
        if self.redis is not None:
            up.add_metric(["redis"], int(snapshot.redis_up))
            seconds.add_metric(["redis"], snapshot.redis_seconds)
        yield up
        yield seconds
        if snapshot.redis_up:
            yield from self._queue_metrics(snapshot)
        if snapshot.postgres_up:
            yield from self._study_metrics(snapshot)
            yield from self._delivery_metrics(snapshot)
        yield from self._tail_metrics()

    @staticmethod
    def _queue_metrics(snapshot: Snapshot) -> Iterator[Metric]:
        queues = GaugeMetricFamily("ecgwl_queue_messages", "Celery messages waiting in each Redis queue",
                                   labels=["queue"])
        for queue, depth in snapshot.queues.items():
            queues.add_metric([queue], depth)
        yield queues
        yield GaugeMetricFamily("ecgwl_queue_unacked_messages",
                                "Messages taken by a worker and not yet acknowledged (all queues)",
                                value=snapshot.unacked)

    @staticmethod
    def _study_metrics(snapshot: Snapshot) -> Iterator[Metric]:
        studies = GaugeMetricFamily("ecgwl_studies", "Studies in each state", labels=["state"])
        for state, count in snapshot.studies.items():
            studies.add_metric([state], count)
        yield studies

    def _delivery_metrics(self, snapshot: Snapshot) -> Iterator[Metric]:
        backlog = GaugeMetricFamily("ecgwl_delivery_backlog_messages",
                                    "HL7 messages not yet delivered, per destination and why",
                                    labels=["destination", "reason"])
        alerts = GaugeMetricFamily("ecgwl_delivery_alerts",
                                   "Messages held for a person (nothing goes until someone retries or withdraws)",
                                   labels=["destination", "why"])
        oldest = GaugeMetricFamily("ecgwl_delivery_oldest_undelivered_seconds",
                                   "Age of the oldest undelivered message", labels=["destination"])
        by_name = {b.destination: b for b in snapshot.backlog}
        for name in sorted(set(self.destinations) | set(by_name)):
            b = by_name.get(name, DestinationBacklog(destination=name))
            for reason, count in (("queued", b.queued), ("retrying", b.retrying),
                                  ("held_for_person", b.needs_a_person), ("sent_unacked", b.sent_unacked)):
                backlog.add_metric([name, reason], count)
            refused = b.needs_a_person - b.gave_up - b.unencodable
            for why, count in (("gave_up", b.gave_up), ("unencodable", b.unencodable), ("refused", refused)):
                alerts.add_metric([name, why], count)
            oldest.add_metric([name], b.oldest_seconds)
        yield backlog
        yield alerts
        yield oldest

    def _tail_metrics(self) -> Iterator[Metric]:
        totals = self.totals
        actions = CounterMetricFamily("ecgwl_audit_events", "Audited changes since the exporter started, by action",
                                      labels=["action"])
        for action, count in sorted(totals.actions.items()):
            actions.add_metric([action], count)
        transitions = CounterMetricFamily("ecgwl_study_transitions", "Study state changes since the exporter started",
                                          labels=["from_state", "to_state"])
        for (left, entered), count in sorted(totals.transitions.items()):
            transitions.add_metric([left, entered], count)
        deliveries = CounterMetricFamily("ecgwl_delivery_state_changes",
                                         "Changes of a delivery's state (pending after a failure, error = held "
                                         "for a person, acked = delivered)", labels=["destination", "to_state"])
        for (destination, entered), count in sorted(totals.delivery_changes.items()):
            deliveries.add_metric([destination, entered], count)
        spans = HistogramMetricFamily("ecgwl_study_state_seconds", "How long studies stayed in a state before the next",
                                      labels=["state", "next_state"])
        for (left, entered), histogram in sorted(totals.state_seconds.items()):
            spans.add_metric([left, entered], histogram.as_buckets(), histogram.total)
        to_draft = HistogramMetricFamily("ecgwl_study_to_draft_seconds",
                                         "From registration to the draft awaiting sign-off")
        to_draft.add_metric([], totals.to_draft.as_buckets(), totals.to_draft.total)
        yield from (actions, transitions, deliveries, spans, to_draft)


def serve(exporter: WorklistExporter, host: str, port: int, stop: threading.Event) -> None:
    """Serve /metrics on host:port until `stop` is set."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=exporter.registry)
    log.info("metrics on http://%s:%d/metrics", host, port)
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(timeout=10)
