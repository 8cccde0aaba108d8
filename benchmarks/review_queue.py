"""The sign-off queue at 100,000 studies: keyset paging (what the app does) vs OFFSET paging.

A scratch Postgres database (ECGWL_TEST_POSTGRES_URL's server, or the local one) is
migrated to head and filled with `--studies` rows in one INSERT ... SELECT from
generate_series: 5 % critical, awaiting / signed / rejected 70 / 25 / 5 %, three source
formats, received over a year, each with a realistic interpretation JSON (six steps, flags)
so a row is as wide as the pipeline's. Then, median of `--repeat` runs each:

    page 1      `queue_page` (keyset)          vs  ORDER BY ... OFFSET 0 LIMIT 50
    deep page   `queue_page(after=cursor)`     vs  ORDER BY ... OFFSET n LIMIT 50, where n is
                at 90 % of the awaiting queue (the cursor is the key of row n, found beforehand)
    counts      `queue_counts` (per status, critical), the header of every queue page

and the OFFSET/keyset ratio. OFFSET gets its best case: an extra index in exactly its mixed
order (critical DESC, created_at, id), made only in the scratch database, so it walks the
index instead of sorting. The database is dropped at the end.

Run: .venv/bin/python benchmarks/review_queue.py [--studies 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from reports import store
from reports.db import Study
from reports.review import queue
from reports.review.queue import Cursor, QueueFilters

ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PAGE = 50

FILL = """
INSERT INTO studies (sha256, source_format, source_path, origin, state, state_changed_at, attempts, created_at,
                     demographics, acquired_at, measurements, interpretation, critical, labels)
SELECT md5(g::text) || md5((g * 7)::text),
       (ARRAY['dicom', 'wfdb', 'pdf'])[1 + g % 3],
       '/inbox/ecg-' || g,
       (ARRAY['cardiology', 'emergency'])[1 + g % 2],
       CASE WHEN g % 20 < 14 THEN 'awaiting_signoff' WHEN g % 20 < 19 THEN 'signed' ELSE 'rejected' END,
       now(), 0,
       timestamptz '2025-11-01' + (g * 313 % :n) * interval '5 minutes',
       json_build_object('patient_id', 'MRN-' || g, 'patient_name', 'PATIENT^NUMBER' || g, 'sex', 'F',
                         'acquired_at', '2025-11-01T08:00:00'),
       timestamptz '2025-11-01' + (g * 313 % :n) * interval '5 minutes' - interval '10 minutes',
       '{"hr_bpm": 72, "pr_ms": 160, "qrs_ms": 92, "qt_ms": 380, "qtc_ms": 415}'::json,
       json_build_object('interpreter', 'protocol-reader', 'interpreter_version', '1.0',
                         'is_demonstration', false, 'modalities', json_build_array('ecg'),
                         'raw_text', repeat('reasoning text ', 120),
                         'parsed', json_build_object('narrative', 'Sinus rhythm at 72 bpm.',
                                                     'labels', json_build_array('sinus rhythm')),
                         'flags', CASE WHEN g % 9 = 0 THEN json_build_array('QTc claimed 415 ms, measured 470 ms')
                                       ELSE json_build_array() END),
       g % 20 = 3,
       CASE WHEN g % 20 = 3 THEN '["st elevation (inferior)"]'::json ELSE '["sinus rhythm", "normal ecg"]'::json END
FROM generate_series(1, :n) AS g
"""


def _median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm the cache and the plan
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _offset_page(session: sa.orm.Session, offset: int) -> list[int]:
    """The same columns and order with OFFSET: the approach keyset paging replaces."""
    columns = queue._COLUMNS + (Study.interpretation,)
    query = (sa.select(*columns).where(Study.state == "awaiting_signoff")
             .order_by(Study.critical.desc(), Study.created_at, Study.id).offset(offset).limit(PAGE))
    return [row.id for row in session.execute(query)]


def _cursor_at(session: sa.orm.Session, offset: int) -> Cursor:
    row = session.execute(
        sa.select(Study.critical, Study.created_at, Study.id).where(Study.state == "awaiting_signoff")
        .order_by(Study.critical.desc(), Study.created_at, Study.id).offset(offset - 1).limit(1)
    ).one()
    return Cursor(critical=row.critical, created_at=row.created_at, id=row.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    name = f"ecgwl_bench_queue_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = None
    try:
        store.upgrade(url)
        engine = store.make_engine(url)
        start = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(sa.text(FILL), {"n": args.studies})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # OFFSET's best case: an index in exactly its mixed order, so it walks instead of sorting
            # (made only here; the app's keyset segments need no DESC index).
            connection.execute(sa.text("CREATE INDEX ix_bench_offset ON studies (state, critical DESC, created_at, id)"))
            connection.execute(sa.text("VACUUM ANALYZE studies"))
        print(f"filled {args.studies:,} studies in {time.perf_counter() - start:.1f} s")

        filters = QueueFilters()
        with store.session_scope(engine) as session:
            awaiting = queue.queue_counts(session, filters).awaiting
            deep = int(awaiting * 0.9)
            cursor = _cursor_at(session, deep)
            # Both ways must show the same rows, or the comparison is meaningless.
            keyset_deep = [r.study_id for r in queue.queue_page(session, filters, after=cursor, limit=PAGE).rows]
            assert keyset_deep == _offset_page(session, deep), "keyset and OFFSET disagree"
            assert [r.study_id for r in queue.queue_page(session, filters, limit=PAGE).rows] == _offset_page(session, 0)

            results = {
                "page 1 keyset": _median_ms(lambda: queue.queue_page(session, filters, limit=PAGE), args.repeat),
                "page 1 OFFSET": _median_ms(lambda: _offset_page(session, 0), args.repeat),
                f"deep (row {deep:,}) keyset": _median_ms(
                    lambda: queue.queue_page(session, filters, after=cursor, limit=PAGE), args.repeat),
                f"deep (row {deep:,}) OFFSET": _median_ms(lambda: _offset_page(session, deep), args.repeat),
                "counts": _median_ms(lambda: queue.queue_counts(session, filters), args.repeat),
            }
        print(f"{awaiting:,} awaiting sign-off of {args.studies:,}; {PAGE} rows a page; median of {args.repeat}")
        for label, ms in results.items():
            print(f"  {label:<28} {ms:8.2f} ms")
        keys = list(results)
        print(f"  OFFSET / keyset, page 1:    {results[keys[1]] / results[keys[0]]:6.2f}x")
        print(f"  OFFSET / keyset, deep page: {results[keys[3]] / results[keys[2]]:6.2f}x")
        print(f"  keyset deep / keyset page 1: {results[keys[2]] / results[keys[0]]:5.2f}x (flat = paging cost "
              "does not grow)")
    finally:
        if engine is not None:
            engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
