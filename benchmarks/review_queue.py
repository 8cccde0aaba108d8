"""The sign-off queue page at a million studies: the whole page, counts included, and its parts.

A scratch Postgres database (ECGWL_TEST_POSTGRES_URL's server, or the local one) is
migrated to head and filled with `--studies` rows in one INSERT ... SELECT from
generate_series: 5 % critical, awaiting / signed / rejected 70 / 25 / 5 %, three source
formats, two inboxes, received over a year, each with a realistic interpretation JSON (six
steps, flags) so a row is as wide as the pipeline's; then VACUUM ANALYZE, as autovacuum
would leave it. Then, median (and min/max) of `--repeat` runs each, in the same run:

    GET /queue           the page a reviewer opens, through the app (FastAPI, a logged-in
                         session, the template): rows, counts, delivery problems
    GET /queue, a month  the same with a date filter (counts summed over the days asked for)
    page 1, deep page    `queue_page` keyset paging, vs ORDER BY ... OFFSET n LIMIT 50 with n
                         at 90 % of the awaiting queue (OFFSET gets its best case: an extra
                         index in exactly its mixed order, made only here)
    counts               `queue_counts`: the counters the database keeps (reports/counts.py),
                         vs the GROUP BY over the studies they replace

The database is dropped at the end, unless `--keep NAME` names it: then it is kept, and a
later run with the same NAME and `--studies` reuses it instead of filling it again (filling a
million rows costs minutes of CPU; a database of another size is dropped and filled anew).

Run: .venv/bin/python benchmarks/review_queue.py [--studies 1000000] [--repeat 15] [--keep NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cpu import database_backends, load_average, process_cpu  # noqa: E402
from reports import store  # noqa: E402
from reports.db import Study  # noqa: E402
from reports.review import queue  # noqa: E402
from reports.review.queue import Cursor, QueueFilters  # noqa: E402

ADMIN_URL = os.environ.get("ECGWL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PAGE = 50
PASSWORD = "a benchmark's password"
GOAL_MS = 20.0

FILL = """
INSERT INTO studies (sha256, source_format, source_path, origin, state, state_changed_at, attempts, created_at,
                     demographics, acquired_at, measurements, interpretation, critical, labels)
SELECT md5(g::text) || md5((g * 7)::text),
       (ARRAY['dicom', 'wfdb', 'pdf'])[1 + g % 3],
       '/inbox/ecg-' || g,
       (ARRAY['cardiology', 'emergency'])[1 + g % 2],
       CASE WHEN g % 20 < 14 THEN 'awaiting_signoff' WHEN g % 20 < 19 THEN 'signed' ELSE 'rejected' END,
       now(), 0,
       timestamptz '2025-11-01' + (g * 313 % :n) * (interval '365 days' / :n),
       json_build_object('patient_id', 'MRN-' || g, 'patient_name', 'PATIENT^NUMBER' || g, 'sex', 'F',
                         'acquired_at', '2025-11-01T08:00:00'),
       timestamptz '2025-11-01' + (g * 313 % :n) * (interval '365 days' / :n) - interval '10 minutes',
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


@dataclass
class Timing:
    wall_ms: list[float]  # each run
    app_cpu_ms: float  # mean per run: this process (the app runs in it, under TestClient)
    db_cpu_ms: float | None  # mean per run: the Postgres backends of the scratch database (None: not readable)


def _timed(action: Callable[[], object], repeat: int, backends: list[int]) -> Timing:
    action()  # warm the cache and the plan
    times = []
    cpu_before, db_before = time.process_time(), sum(process_cpu(pid) for pid in backends)
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    app = (time.process_time() - cpu_before) * 1000 / repeat
    db = (sum(process_cpu(pid) for pid in backends) - db_before) * 1000 / repeat if backends else None
    return Timing(times, app, db)


def _group_by_counts(session: sa.orm.Session) -> list[tuple]:
    """What `queue_counts` did before the counters: a GROUP BY over the reviewable studies."""
    query = (sa.select(Study.state, Study.critical, sa.func.count())
             .where(Study.state.in_(queue.STATES[queue.QueueStatus.ALL])).group_by(Study.state, Study.critical))
    return list(session.execute(query))


def _logged_in_client(engine: sa.Engine, url: str) -> Any:
    """A TestClient of the review app with a reviewer logged in through the real form."""
    import re

    from fastapi.testclient import TestClient

    from reports.review import accounts
    from reports.review.app import create_app
    from reports.review.config import ReviewConfig

    with store.session_scope(engine) as session:
        if accounts.get_user(session, "bench") is None:  # a kept database has it from an earlier run
            accounts.add_user(session, "bench", "cardiologist", PASSWORD, actor="bench", display_name="Bench^Mark")
    config = ReviewConfig(database_url=url, destinations=["his"], secure_cookies=False)
    client = TestClient(create_app(config, engine=engine), follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    response = client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 303, response.text
    return client


def _offset_page(session: sa.orm.Session, offset: int) -> list[int]:
    """The same columns and order with OFFSET: the approach keyset paging replaces."""
    # The plain columns and the interpretation, as an OFFSET-paged app would read them (the
    # keyset query's JSON paths would be computed for every row OFFSET skips).
    columns = (*(c for c in queue._COLUMNS if c.name not in ("flags", "is_demonstration")), Study.interpretation)
    query = (sa.select(*columns).where(Study.state == "awaiting_signoff")
             .order_by(Study.critical.desc(), Study.created_at, Study.id).offset(offset).limit(PAGE))
    return [row.id for row in session.execute(query)]


def _cursor_at(session: sa.orm.Session, offset: int) -> Cursor:
    row = session.execute(
        sa.select(Study.critical, Study.created_at, Study.id).where(Study.state == "awaiting_signoff")
        .order_by(Study.critical.desc(), Study.created_at, Study.id).offset(offset - 1).limit(1)
    ).one()
    return Cursor(critical=row.critical, created_at=row.created_at, id=row.id)


def _filled(url: str, studies: int) -> bool:
    """Whether the kept database at `url` is this benchmark's, filled with `studies` studies."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            found = connection.execute(sa.text(
                "SELECT count(*) FROM studies WHERE source_path LIKE '/inbox/ecg-%'")).scalar_one()
            indexed = connection.execute(sa.text("SELECT to_regclass('ix_bench_offset') IS NOT NULL")).scalar_one()
        return found == studies and bool(indexed)
    except sa.exc.DBAPIError:  # no such database, or not migrated
        return False
    finally:
        engine.dispose()


def _fill(url: str, studies: int) -> None:
    store.upgrade(url)
    engine = store.make_engine(url)
    try:
        start = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(sa.text(FILL), {"n": studies})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # OFFSET's best case: an index in exactly its mixed order, so it walks instead of sorting
            # (made only here; the app's keyset segments need no DESC index).
            connection.execute(sa.text("CREATE INDEX ix_bench_offset ON studies (state, critical DESC, created_at, id)"))
            connection.execute(sa.text("VACUUM ANALYZE studies"))
        print(f"filled {studies:,} studies in {time.perf_counter() - start:.1f} s")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--keep", metavar="NAME", default=None,
                        help="keep the scratch database under this name, and reuse it when it holds --studies studies")
    args = parser.parse_args()
    if args.keep is not None and not args.keep.replace("_", "").isalnum():
        parser.error(f"--keep {args.keep!r}: a database name of letters, digits and '_' only")

    name = args.keep or f"ecgwl_bench_queue_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    reuse = args.keep is not None and _filled(url, args.studies)
    if not reuse:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = None
    try:
        if reuse:
            print(f"reusing database {name} ({args.studies:,} studies)")
        else:
            _fill(url, args.studies)
        engine = store.make_engine(url)

        filters = QueueFilters()
        client = _logged_in_client(engine, url)
        with store.session_scope(engine) as session:
            awaiting = queue.queue_counts(session, filters).awaiting
            assert awaiting == sum(n for state, _, n in _group_by_counts(session) if state == "awaiting_signoff")
            deep = int(awaiting * 0.9)
            cursor = _cursor_at(session, deep)
            # Both ways must show the same rows, or the comparison is meaningless.
            keyset_deep = [r.study_id for r in queue.queue_page(session, filters, after=cursor, limit=PAGE).rows]
            assert keyset_deep == _offset_page(session, deep), "keyset and OFFSET disagree"
            assert [r.study_id for r in queue.queue_page(session, filters, limit=PAGE).rows] == _offset_page(session, 0)
            page = client.get("/queue")
            assert page.status_code == 200 and (f"{awaiting:,}" in page.text or f">{awaiting}<" in page.text)

            backends = database_backends(engine, name)
            runs = max(args.repeat, 30)  # CPU is read in clock ticks (10 ms): sum enough runs

            def timed(action: Callable[[], object]) -> Timing:
                return _timed(action, runs, backends)

            results = {
                "GET /queue (the whole page)": timed(lambda: client.get("/queue")),
                "GET /queue, one month": timed(lambda: client.get("/queue?date_from=2026-02-01&date_to=2026-02-28")),
                "  baseline: GET a static file": timed(lambda: client.get("/static/review.css")),
                "page 1 keyset": timed(lambda: queue.queue_page(session, filters, limit=PAGE)),
                "page 1 OFFSET": timed(lambda: _offset_page(session, 0)),
                f"deep (row {deep:,}) keyset": timed(lambda: queue.queue_page(session, filters, after=cursor, limit=PAGE)),
                f"deep (row {deep:,}) OFFSET": timed(lambda: _offset_page(session, deep)),
                "counts (counters)": timed(lambda: queue.queue_counts(session, filters)),
                "counts, one month (counters)": timed(lambda: queue.queue_counts(
                    session, QueueFilters(date_from="2026-02-01", date_to="2026-02-28"))),
                "  baseline: counts by GROUP BY": timed(lambda: _group_by_counts(session)),
            }
        print(f"{awaiting:,} awaiting sign-off of {args.studies:,}; {PAGE} rows a page; {runs} runs each; "
              f"{load_average()}")
        db_note = "" if backends else " (the database's CPU could not be read: not on this machine)"
        print(f"  {'':<34} {'wall min':>9} {'median':>8} {'max':>8} {'CPU app':>8} {'CPU db':>7}  ms{db_note}")
        for label, timing in results.items():
            wall = timing.wall_ms
            db = f"{timing.db_cpu_ms:7.2f}" if timing.db_cpu_ms is not None else f"{'-':>7}"
            print(f"  {label:<34} {min(wall):9.2f} {statistics.median(wall):8.2f} {max(wall):8.2f} "
                  f"{timing.app_cpu_ms:8.2f} {db}")
        med = {label: statistics.median(timing.wall_ms) for label, timing in results.items()}
        print(f"  OFFSET / keyset, deep page:      {med[f'deep (row {deep:,}) OFFSET'] / med[f'deep (row {deep:,}) keyset']:7.1f}x")
        print(f"  GROUP BY / counters:             {med['  baseline: counts by GROUP BY'] / med['counts (counters)']:7.1f}x")
        page = results["GET /queue (the whole page)"]
        cpu = page.app_cpu_ms + (page.db_cpu_ms or 0.0)
        whole = statistics.median(page.wall_ms)
        print(f"goal: the queue page (counts included) under {GOAL_MS:g} ms at {args.studies:,} studies: "
              f"{whole:.1f} ms wall (median, on this machine's load), {cpu:.1f} ms CPU (app + database): "
              f"{'met' if min(whole, cpu) < GOAL_MS else 'NOT met'}{' on CPU, not on wall' if cpu < GOAL_MS <= whole else ''}")
    finally:
        if engine is not None:
            engine.dispose()
        if args.keep is None:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
