"""What one Prometheus scrape costs the database at a million studies.

A scratch Postgres database gets N studies (default 1,000,000: 90 % signed, 5 % awaiting
sign-off, the rest rejected, quarantined, failed or in the pipeline), a delivered outbox row
for each signed study plus a backlog (pending, retrying, held for a person), and, after the
exporter's audit tail has started, 10,000 new state-change events. Rows are made in SQL
(generate_series), then VACUUM ANALYZE, as autovacuum would leave a settled table.

Timed (best of --repeat), against baselines measured in the same run on the same data:

    study_counts_by_state     the counters the database keeps (reports/counts.py: a few rows)
      baseline                the GROUP BY over every study they replace (index-only scan of
                              ix_studies_state_changed, its best case)
    delivery_backlog          undelivered rows only (the state index)
      baseline                reports.delivery_view.delivery_metrics: every outbox row, delivered included
    audit tail, 10k events    AuditTail.advance(): only the events since the last scrape
    first scrape              WorklistExporter: the count by state + backlog + tail + the text page
    every later scrape        the same (ECGWL_METRICS_RECOUNT_SECONDS=0: the counters are read
                              every scrape)

Run: .venv/bin/python benchmarks/metrics.py [--studies 1000000] [--repeat 5]
Needs PostgreSQL (ECGWL_TEST_POSTGRES_URL, or the local server); about 2 minutes at 1M.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reports import store  # noqa: E402
from reports.delivery_view import delivery_metrics  # noqa: E402
from reports.metrics import AuditTail, delivery_backlog, study_counts_by_state  # noqa: E402
from worker.metrics import WorklistExporter  # noqa: E402

ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

# state, share of the studies (the rest of 1.0 is signed)
STATES = [("awaiting_signoff", 0.05), ("rejected", 0.01), ("quarantined", 0.01), ("failed", 0.001),
          ("queued_prepare", 0.002), ("queued_interpret", 0.002), ("interpreted", 0.0005), ("received", 0.0005)]


def fill(engine: sa.Engine, count: int) -> None:
    """N studies in the states above; an acked outbox row per signed study; a small backlog."""
    cases = []
    start = 0.0
    for state, share in STATES:
        cases.append(f"WHEN r < {start + share} THEN '{state}'")
        start += share
    state_sql = f"CASE {' '.join(cases)} ELSE 'signed' END"
    with engine.begin() as conn:
        conn.execute(sa.text(f"""
            INSERT INTO studies (sha256, source_format, source_path, state, state_changed_at, attempts,
                                 created_at, critical)
            SELECT md5(i::text) || md5((i + 1)::text), 'dicom', 'bench/' || i, {state_sql},
                   now() - (i || ' seconds')::interval, 0, now() - (i || ' seconds')::interval, false
            FROM (SELECT i, ((i * 2654435761) % 1000000) / 1000000.0 AS r
                  FROM generate_series(1, :n) AS i) AS g"""), {"n": count})
        conn.execute(sa.text("""
            INSERT INTO reports (study_id, version, status, result_status, hl7_message, message_control_id,
                                 created_by, created_at)
            SELECT id, 1, 'signed', 'F', 'MSH|^~\\&|', 'B' || id, 'bench', now() FROM studies
            WHERE state = 'signed'"""))
        conn.execute(sa.text("""
            INSERT INTO outbox (report_id, destination, message_control_id, payload, state, attempts,
                                next_attempt_at, created_at, delivered_at, ack_code, last_error)
            SELECT id, 'his', message_control_id, 'MSH|^~\\&|',
                   CASE WHEN id % 1000 = 0 THEN 'pending' WHEN id % 5000 = 1 THEN 'error' ELSE 'acked' END,
                   CASE WHEN id % 1000 = 0 AND id % 2000 = 0 THEN 3 ELSE 1 END,
                   CASE WHEN id % 1000 = 0 THEN now() ELSE NULL END, now() - interval '1 day',
                   CASE WHEN id % 1000 = 0 OR id % 5000 = 1 THEN NULL ELSE now() END,
                   CASE WHEN id % 1000 = 0 OR id % 5000 = 1 THEN NULL ELSE 'AA' END,
                   CASE WHEN id % 5000 = 1 THEN 'gave up after 20 attempts: refused' ELSE NULL END
            FROM reports"""))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE studies"))
        conn.execute(sa.text("VACUUM ANALYZE reports"))
        conn.execute(sa.text("VACUUM ANALYZE outbox"))


def add_audit_events(engine: sa.Engine, count: int) -> None:
    """`count` study.state events (queued_prepare -> prepared) after the current end of the trail."""
    with engine.begin() as conn:
        first = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM audit_events")).scalar_one()
        conn.execute(sa.text("""
            INSERT INTO audit_events (id, at, actor, action, entity_type, entity_id, details, prev_hash, row_hash)
            SELECT :first + i, now(), 'bench', 'study.state', 'study', (i % 5000 + 1)::text,
                   '{"from": "queued_prepare", "to": "prepared"}'::json, md5(i::text) || md5(i::text),
                   md5((:first + i)::text || 'x') || md5((:first + i)::text || 'y')
            FROM generate_series(1, :n) AS i"""), {"first": first, "n": count})


def best(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    name = f"ecgwl_bench_metrics_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = store.make_engine(url)
    try:
        store.upgrade(url)
        started = time.perf_counter()
        fill(engine, args.studies)
        print(f"made {args.studies:,} studies in {time.perf_counter() - started:.0f} s")

        def counts() -> dict[str, int]:
            with sa.orm.Session(engine) as session:
                return study_counts_by_state(session)

        def counts_grouped() -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT state, count(*) FROM studies GROUP BY state")).all()

        def backlog() -> None:
            with sa.orm.Session(engine) as session:
                delivery_backlog(session)

        def all_rows() -> None:
            with sa.orm.Session(engine) as session:
                delivery_metrics(session)

        assert sum(counts().values()) == args.studies
        rows = {"study_counts_by_state": best(counts, args.repeat),
                "  baseline: GROUP BY over every study": best(counts_grouped, args.repeat),
                "delivery_backlog (undelivered rows)": best(backlog, args.repeat),
                "  baseline: delivery_metrics (every outbox row)": best(all_rows, args.repeat)}
        tail = AuditTail(engine)
        tail.advance()  # starts at the end of the trail
        add_audit_events(engine, 10_000)
        started = time.perf_counter()
        batch = tail.advance()
        rows["audit tail: 10,000 new events"] = time.perf_counter() - started
        assert batch.events == 10_000

        exporter = WorklistExporter(engine, None, destinations=["his"], min_interval_seconds=0)

        def scrape() -> None:
            from prometheus_client import generate_latest

            generate_latest(exporter.registry)

        started = time.perf_counter()
        scrape()
        rows["first scrape"] = time.perf_counter() - started
        rows["every later scrape"] = best(scrape, args.repeat)
        print(f"{args.studies:,} studies, {os.cpu_count()} cores, best of {args.repeat}")
        print(f"{'query':50s} {'ms':>9s}")
        for label, seconds in rows.items():
            print(f"{label:50s} {seconds * 1000:9.1f}")
        print(f"counts by state: {rows['  baseline: GROUP BY over every study'] / rows['study_counts_by_state']:.0f}x "
              f"faster than a GROUP BY over every study; delivery backlog: "
              f"{rows['  baseline: delivery_metrics (every outbox row)'] / rows['delivery_backlog (undelivered rows)']:.0f}x "
              "faster than counting every outbox row")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
