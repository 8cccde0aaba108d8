"""Search by MRN, name and accession (reports/review/queue.search), its indexes and migration."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient

from reports import store
from reports.db import Study
from reports.patient_keys import search_key
from reports.review.queue import search, search_clause


def test_search_keys_fold_case_accents_and_separators() -> None:
    assert search_key("Müller^Anna") == "muller anna"
    assert search_key("  MÜLLER,  anna ") == "muller anna"
    assert search_key("MRN-0042") == "mrn-0042"
    assert search_key("") is None and search_key(None) is None and search_key(" ^ ") is None


def test_search_by_mrn_name_and_accession(make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    def day(n: int) -> dt.datetime:
        return dt.datetime(2026, 1, n, tzinfo=dt.UTC)

    anna = make_study(patient_id="MRN-0042", patient_name="Müller^Anna", accession="ACC-7", received=day(1))
    anna_later = make_study(patient_id="MRN-0042", patient_name="Müller^Anna", accession="ACC-8", received=day(2))
    luca = make_study(patient_id="MRN-0043", patient_name="Rossi^Luca", accession="ACC-70", received=day(3))
    percent = make_study(patient_id="50%_OFF", patient_name="Odd^Name", accession="X")
    with store.session_scope(review_engine) as session:
        def ids(text: str) -> list[int]:
            return [row.study_id for row in search(session, text).rows]

        assert ids("mrn-0042") == [anna_later, anna]  # newest first, case ignored
        assert ids("MRN-004") == [luca, anna_later, anna]  # a beginning is enough
        assert ids("muller") == [anna_later, anna] and ids("MÜLLER, Anna") == [anna_later, anna]
        assert ids("anna muller") == [anna_later, anna]  # given name first is tried too
        assert ids("rossi l") == [luca]
        assert ids("acc-7") == [luca, anna]  # ACC-7 and ACC-70
        assert ids("%") == [] and ids("50%_") == [percent] and ids("5_%") == []  # wildcards are literal
        assert ids("") == [] and ids("nobody") == []
        result = search(session, "MRN", limit=2)
        assert len(result.rows) == 2 and result.more


def test_search_is_one_index_scan_per_key(make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    make_study(patient_id="MRN-1", patient_name="Rossi^Anna")
    query = sa.select(Study.id).where(search_clause("rossi anna"))
    with review_engine.connect() as connection:
        connection.execute(sa.text("SET enable_seqscan = off"))  # a tiny table: make the planner show its options
        compiled = query.compile(connection)
        plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).scalars())
    for index in ("ix_studies_patient_id_key", "ix_studies_accession_key", "ix_studies_patient_name_key"):
        assert index in plan, plan


def test_the_search_page(make_study: Callable[..., int], logged_in: Callable[[str], TestClient]) -> None:
    study = make_study(["st elevation (inferior)"], critical=True, patient_id="MRN-77", patient_name="Bianchi^Ugo")
    client = logged_in("viewer1")
    page = client.get("/search", params={"q": "bianchi"}).text
    assert f'href="/studies/{study}"' in page and "MRN-77" in page and "CRITICAL" in page
    assert 'value="bianchi"' in page  # what was typed stays in the box
    assert "No study matches" in client.get("/search", params={"q": "<b>zz</b>"}).text
    assert "<b>zz</b>" not in client.get("/search", params={"q": "<b>zz</b>"}).text  # escaped


def test_the_migration_fills_the_keys_of_existing_studies(postgres_url: str) -> None:
    store.upgrade(postgres_url, "0003_triage_signoff")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO studies (sha256, source_format, source_path, state, state_changed_at, created_at, "
                "demographics, critical) VALUES ('a', 'dicom', '/x', 'awaiting_signoff', now(), now(), "
                "CAST(:d AS json), false), ('b', 'pdf', '/y', 'received', now(), now(), NULL, false)"),
                {"d": '{"patient_id": "MRN-5", "patient_name": "Ñandú^José", "accession": null}'})
        store.upgrade(postgres_url)
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT sha256, patient_id_key, patient_name_key, accession_key "
                                              "FROM studies ORDER BY sha256")).all()
    finally:
        engine.dispose()
    assert rows == [("a", "mrn-5", "nandu jose", None), ("b", None, None, None)]
