"""The queue: critical first then oldest, counts, filters, keyset paging both ways, the study page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient

from reports import store
from reports.db import AuditEvent, Study
from reports.review import queue
from reports.review.queue import Cursor, QueueFilters, QueueStatus

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def _all_pages(engine: sa.Engine, filters: QueueFilters, limit: int) -> list[list[int]]:
    pages, cursor = [], None
    with store.session_scope(engine) as session:
        while True:
            page = queue.queue_page(session, filters, after=cursor, limit=limit)
            pages.append([row.study_id for row in page.rows])
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor


def test_critical_first_then_oldest_and_keyset_pages_cover_everything_once(
    make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    # Received out of order on purpose: ids do not follow the queue order.
    plan = [(5, False), (1, True), (3, False), (0, False), (4, True), (2, False), (6, True)]
    ids = {hours: make_study(["st elevation (anterior)"] if critical else None, critical=critical,
                             received=T0 + dt.timedelta(hours=hours)) for hours, critical in plan}
    expected = [ids[h] for h in (1, 4, 6)] + [ids[h] for h in (0, 2, 3, 5)]
    pages = _all_pages(review_engine, QueueFilters(), limit=2)
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [i for page in pages for i in page] == expected  # the page boundary crosses the segments
    # Going back from the last page retraces the same pages.
    with store.session_scope(review_engine) as session:
        last = queue.queue_page(session, QueueFilters(), after=Cursor(critical=False, created_at=T0 + dt.timedelta(
            hours=3), id=ids[3]), limit=2)
        assert [r.study_id for r in last.rows] == [ids[5]] and last.next_cursor is None
        back = queue.queue_page(session, QueueFilters(), before=last.prev_cursor, limit=2)
        assert [r.study_id for r in back.rows] == [ids[2], ids[3]]
        back = queue.queue_page(session, QueueFilters(), before=back.prev_cursor, limit=2)
        assert [r.study_id for r in back.rows] == [ids[6], ids[0]]
        first = queue.queue_page(session, QueueFilters(), limit=2)
        assert first.prev_cursor is None and first.next_cursor is not None


def test_counts_and_filters(make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    dicom = make_study(received=T0)
    pdf = make_study(source_format="pdf", received=T0 + dt.timedelta(days=2))
    critical = make_study(["ventricular tachycardia"], critical=True, received=T0 + dt.timedelta(days=1))
    from reports.review import signoff
    from tests.review.test_signoff import POLICY, _user

    with store.session_scope(review_engine) as session:
        signoff.sign(session, dicom, _user(review_engine, "cardio1"), 1, "ok", [], policy=POLICY)
    with store.session_scope(review_engine) as session:
        counts = queue.queue_counts(session, QueueFilters())
        assert (counts.awaiting, counts.awaiting_critical, counts.signed, counts.rejected) == (2, 1, 1, 0)
        assert counts.in_view(QueueStatus.ALL) == 3

        def ids(**filters: object) -> list[int]:
            return [r.study_id for r in queue.queue_page(session, QueueFilters(**filters)).rows]

        assert ids() == [critical, pdf]
        assert ids(status="signed") == [dicom]
        assert ids(status="all") == [critical, dicom, pdf]
        assert ids(status="rejected") == []
        assert ids(source="pdf") == [pdf]
        assert ids(status="all", date_from=(T0 + dt.timedelta(days=1)).date()) == [critical, pdf]
        assert ids(status="all", date_to=(T0 + dt.timedelta(days=1)).date()) == [critical, dicom]
        # Acquisition dates: every test study was acquired on 2026-11-20.
        assert ids(status="all", date_on="acquired", date_from=dt.date(2026, 11, 21)) == []
        assert len(ids(status="all", date_on="acquired", date_from=dt.date(2026, 11, 20),
                       date_to=dt.date(2026, 11, 20))) == 3
        assert queue.queue_counts(session, QueueFilters(source="pdf")).awaiting == 1


def test_queue_page_shows_counts_marks_and_working_paging_links(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], config, app_factory,
) -> None:
    for hours in range(3):
        make_study(received=T0 + dt.timedelta(hours=hours))
    critical = make_study(["st elevation (inferior)", "sinus rhythm"], critical=True, qtc_ms=520,
                          demonstration=True)
    from tests.review.conftest import login

    client = login(app_factory(config.model_copy(update={"page_size": 2})), "viewer1")
    page = client.get("/queue").text
    assert "<b>4</b>awaiting sign-off" in page
    assert "<b>1</b>critical awaiting" in page
    assert page.index("CRITICAL") < page.index("routine")
    assert "1 flag" in page and "demo model" in page
    assert 'rel="next"' in page and 'rel="prev"' not in page
    next_url = page.split('" rel="next"')[0].rsplit('href="', 1)[1].replace("&amp;", "&")
    second = client.get(next_url).text
    assert 'rel="prev"' in second and 'rel="next"' not in second and f"#{critical}<" not in second
    assert client.get("/queue?after=garbage").status_code == 200  # a bad cursor is the first page
    assert client.get("/queue?date_from=not-a-date").status_code == 200


def test_study_page_shows_draft_first_measurements_flags_and_history(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int],
) -> None:
    study_id = make_study(["marked qt prolongation", "sinus rhythm"], critical=True, qtc_ms=520,
                          narrative="Sinus rhythm at 72 bpm with a QTc of 415 ms.", demonstration=True)
    page = logged_in("cardio1").get(f"/studies/{study_id}").text
    assert "Verdi, Giuseppe" in page and "MRN-" in page and "ACC-" in page
    assert "DEMONSTRATION MODEL - NOT FOR CLINICAL USE" in page and "CRITICAL" in page
    # Impression and labels come before the folded reasoning; six steps inside <details>.
    assert page.index("Impression:") < page.index("<details>") < page.index("Step 6: Final Medical Reasoning")
    assert "Reasoning (6 steps)" in page
    assert f'src="/studies/{study_id}/image.png"' in page
    # The QTc the draft states (415) beside the measured 520, marked; the heart rate agrees.
    rows = page.split('<table class="measurements">')[1].split("</table>")[0]
    qtc_row = [r for r in rows.split("<tr") if ">QTc<" in r][0]
    hr_row = [r for r in rows.split("<tr") if ">heart rate<" in r][0]
    assert "520 ms" in qtc_row and "415 ms" in qtc_row and 'class="mismatch"' in qtc_row
    assert "72 bpm" in hr_row and "mismatch" not in hr_row
    assert "QTc claimed 415 ms, measured 520 ms" in page  # the stored claim flag
    assert "Delivery" in page and "queued" in page  # the draft's outbox row for "his"
    assert "History" in page and "v1" in page


def test_site_critical_list_re_sorts_the_queue(make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    af = make_study(["atrial fibrillation"], received=T0)
    stemi = make_study(["st elevation (inferior)"], critical=True, received=T0 + dt.timedelta(hours=1))
    with store.session_scope(review_engine) as session:
        assert queue.sync_critical(session, None, actor="test") == 0  # the default list agrees with the pipeline
        changed = queue.sync_critical(session, ["atrial fibrillation"], actor="test")
    assert changed == 2
    with store.session_scope(review_engine) as session:
        assert [r.study_id for r in queue.queue_page(session, QueueFilters()).rows] == [af, stemi]
        assert session.get(Study, af).critical and not session.get(Study, stemi).critical
        assert session.execute(sa.select(AuditEvent.details).where(
            AuditEvent.action == "review.critical_resorted")).scalar_one() == {"changed": 2, "site_list": True}


def test_next_awaiting_follows_the_queue_and_wraps(make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    a, b, c = (make_study(received=T0 + dt.timedelta(hours=h)) for h in range(3))
    with store.session_scope(review_engine) as session:
        assert queue.next_awaiting(session, a) == b
        assert queue.next_awaiting(session, c) == a  # from the end back to the top
        assert queue.next_awaiting(session, None) == a


def test_cursor_round_trip_and_garbage() -> None:
    cursor = Cursor(critical=True, created_at=T0, id=42)
    assert Cursor.decode(cursor.encode()) == cursor
    for junk in ("", "!!!", "MXx4", "bm90fGF8Yg"):
        assert Cursor.decode(junk) is None
