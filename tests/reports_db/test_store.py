"""The store: idempotent registration and drafts, the state machine, reports, outbox, audit in one transaction."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import sqlalchemy as sa

from reports import store
from reports.audit import verify_chain
from reports.db import AuditEvent, OutboxItem, Report, Study, utcnow
from reports.hl7_oru import HL7Endpoints, build_oru, new_control_id
from tests.reports_db.helpers import PATIENT, interpreted_study, new_sha
from tests.hl7_every_message import deliberately_invalid

ENDPOINTS = HL7Endpoints(sending_facility="HOSP", receiving_facility="HIS")


def _count(engine: sa.Engine, model: type) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def _actions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def _message(session, study: Study, *, result_status: str = "P", **report_fields) -> str:
    oru_study, oru_report, measurements, interpretation = store.oru_inputs(session, study, version=1, **report_fields)
    return build_oru(oru_study, oru_report, measurements, interpretation, result_status=result_status,
                     endpoints=ENDPOINTS, control_id=new_control_id())


# ---------------------------------------------------------------- studies


def test_same_content_twice_is_one_study(engine: sa.Engine) -> None:
    sha = new_sha()
    with store.session_scope(engine) as session:
        first, created_first = store.register_study(session, sha256=sha, source_format="dicom",
                                                    source_path="/inbox/a.dcm", origin="inbox", actor="ingest")
    with store.session_scope(engine) as session:
        again, created_again = store.register_study(session, sha256=sha, source_format="dicom",
                                                    source_path="/inbox/copy-of-a.dcm", actor="ingest")
    assert created_first and not created_again
    assert again.id == first.id and again.source_path == "/inbox/a.dcm"
    assert _count(engine, Study) == 1
    assert _actions(engine) == ["study.registered"]


def test_content_seen_before_is_found_without_reading_its_documents(engine: sa.Engine) -> None:
    # A stopped batch resumed over 100,000 registered files asks "seen before?" of each: the answer
    # must not read every prepared study's JSON (the features alone are tens of kB).
    with store.session_scope(engine) as session:
        first = interpreted_study(session)
        sha, study_id = first.sha256, first.id
    with store.session_scope(engine) as session:
        again, created = store.register_study(session, sha256=sha, source_format="dicom",
                                              source_path="/inbox/again.dcm", actor="ingest")
        assert not created and again.id == study_id and again.state == "interpreted"
        assert set(store.CONTENT_COLUMNS) <= sa.inspect(again).unloaded
        assert again.interpretation is not None  # still there, read on first use in the transaction
        assert store.study_by_sha256(session, sha) is again
        assert again.measurements is not None and again.measurements["hr_bpm"] == 72


def test_register_refuses_a_malformed_hash(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session, pytest.raises(ValueError, match="sha256"):
        store.register_study(session, sha256="ABC", source_format="pdf", source_path="/x.pdf")


def test_concurrent_registration_of_the_same_content_makes_one_study(pg_engine: sa.Engine) -> None:
    sha, threads = new_sha(), 6
    start = threading.Barrier(threads)
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            with store.session_scope(pg_engine) as session:
                study, created = store.register_study(session, sha256=sha, source_format="wfdb",
                                                      source_path="/inbox/r.hea", actor="ingest")
                results.append((study.id, created))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    assert len({study_id for study_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert _count(pg_engine, Study) == 1 and _actions(pg_engine) == ["study.registered"]


def test_state_machine_moves_counts_and_refuses(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/a")
        with pytest.raises(store.InvalidTransition, match="received to signed"):
            store.set_state(session, study.id, "signed", actor="t")
        store.set_state(session, study.id, "queued_prepare", actor="worker")
        assert study.attempts == 1
        store.set_state(session, study.id, "queued_prepare", actor="reconciler")  # re-enqueued
        assert study.attempts == 2
        store.save_prepared(session, study.id, actor="worker")
        assert (study.state, study.attempts) == ("prepared", 0)
        store.set_state(session, study.id, "prepared", actor="worker")  # a redelivered task: no-op
        store.fail(session, study.id, "interpreter crashed twice", actor="worker")
        assert (study.state, study.last_error) == ("failed", "interpreter crashed twice")
    assert _actions(engine) == ["study.registered", "study.state", "study.requeued", "study.state", "study.state"]
    with store.session_scope(engine) as session:
        assert verify_chain(session).ok


def test_claim_study_skips_stale_tasks(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/a")
        store.set_state(session, study.id, "queued_prepare", actor="watch")
        assert store.claim_study(session, study.id, "queued_prepare") is study
        store.quarantine(session, study.id, "no waveform", actor="worker")
        assert store.claim_study(session, study.id, "queued_prepare") is None  # a redelivered task
        with pytest.raises(store.StudyNotFound):
            store.claim_study(session, study.id + 1000, "queued_prepare")


def test_claim_studies_locks_a_batch_in_one_select(pg_engine: sa.Engine) -> None:
    """The interpret batch's claim: those in the state, ascending; others and unknown ids left out;
    every row it read locked until the transaction ends (another transaction cannot take one)."""
    ids = []
    with store.session_scope(pg_engine) as session:
        for _ in range(3):
            study, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/a")
            store.set_state(session, study.id, "queued_prepare", actor="watch")
            ids.append(study.id)
        store.quarantine(session, ids[1], "no waveform", actor="worker")
    statements: list[str] = []

    def record(_connection: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    sa.event.listen(pg_engine, "before_cursor_execute", record)
    try:
        with store.session_scope(pg_engine) as session:
            claimed = store.claim_studies(session, [ids[2], ids[0], ids[1], ids[2] + 1000], "queued_prepare")
            assert claimed == [ids[0], ids[2]]
            assert len(statements) == 1 and "FOR UPDATE" in statements[0]
            with pg_engine.connect() as other, pytest.raises(sa.exc.OperationalError, match="could not obtain lock"):
                other.execute(sa.select(Study.id).where(Study.id == ids[1]).with_for_update(nowait=True))
            # What the claim locked, a state change in the same transaction reads no more.
            before = len(statements)
            store.set_state(session, ids[0], "quarantined", actor="worker", error="x")
            assert not any("SELECT studies" in statement for statement in statements[before:])
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", record)


def test_a_state_change_sees_what_another_transaction_committed(pg_engine: sa.Engine) -> None:
    """A copy loaded before the row lock must not decide the move: the lock re-reads the row."""
    with store.session_scope(pg_engine) as session:
        study, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/a")
        store.set_state(session, study.id, "queued_prepare", actor="watch")
    with store.session_scope(pg_engine) as worker:
        assert store.get_study(worker, study.id).state == "queued_prepare"  # loaded, not locked
        with store.session_scope(pg_engine) as operator:
            store.quarantine(operator, study.id, "unreadable", actor="user:admin")
        with pytest.raises(store.InvalidTransition, match="quarantined to prepared"):
            store.set_state(worker, study.id, "prepared", actor="worker")


def test_a_rolled_back_change_leaves_neither_state_nor_audit(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study, _ = store.register_study(session, sha256=new_sha(), source_format="pdf", source_path="/a.pdf")
    with pytest.raises(RuntimeError), store.session_scope(engine) as session:
        store.set_state(session, study.id, "queued_prepare", actor="worker")
        raise RuntimeError("broker unreachable")
    with store.session_scope(engine) as session:
        assert store.get_study(session, study.id).state == "received"
        assert verify_chain(session).events_checked == 1


def test_quarantine_keeps_the_reason(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study, _ = store.register_study(session, sha256=new_sha(), source_format="wfdb", source_path="/r.hea")
        store.set_state(session, study.id, "queued_prepare", actor="worker")
        store.quarantine(session, study.id, "2 leads at 360 Hz: not a 12-lead ECG", actor="worker")
    with store.session_scope(engine) as session:
        study = store.get_study(session, study.id)
        assert (study.state, study.last_error) == ("quarantined", "2 leads at 360 Hz: not a 12-lead ECG")
        event = session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
        assert event.details["to"] == "quarantined" and "360 Hz" in event.details["error"]


def test_studies_in_state_older_than_finds_the_stuck_ones(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        stuck, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/a")
        fresh, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/b")
        idle, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/c")
        for study in (stuck, fresh):
            store.set_state(session, study.id, "queued_prepare", actor="worker")
    later = utcnow() + dt.timedelta(minutes=10)
    with store.session_scope(engine) as session:
        session.execute(sa.update(Study).where(Study.id == fresh.id).values(state_changed_at=later))
        found = store.studies_in_state_older_than(session, ["queued_prepare", "queued_interpret"],
                                                  dt.timedelta(minutes=5), now=later)
    assert [s.id for s in found] == [stuck.id]


# ---------------------------------------------------------------- reports


def test_draft_report_twice_is_one_report(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        first = store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker", destinations=["his"])
    with store.session_scope(engine) as session:
        again = store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker", destinations=["his"])
        assert store.get_study(session, study.id).state == "awaiting_signoff"
    assert again.id == first.id and again.message_control_id == first.message_control_id
    assert (first.version, first.status, first.result_status) == (1, "draft", "P")
    assert _count(engine, Report) == 1 and _count(engine, OutboxItem) == 1
    assert _actions(engine)[-3:] == ["report.draft", "study.state", "outbox.queued"]


def test_a_batch_of_drafts_is_written_in_one_insert_each_audited(pg_engine: sa.Engine) -> None:
    """`draft_reports`: three studies' drafts in one INSERT (and their order numbers in one UPDATE), one
    audit row each in the order given, the studies left `interpreted`, and no outbox rows yet; a second
    call returns the same drafts and writes nothing."""
    with store.session_scope(pg_engine) as session:
        ids = [interpreted_study(session).id for _ in range(3)]
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.lower().split()))

    sa.event.listen(pg_engine, "before_cursor_execute", seen)
    try:
        with store.session_scope(pg_engine) as session:
            drafts = store.draft_reports(session, ids, endpoints=ENDPOINTS, actor="worker")
        assert len([s for s in statements if s.startswith("insert into reports")]) == 1
        assert len([s for s in statements if s.startswith("update studies set placer_order_number")]) == 1
        statements.clear()
        with store.session_scope(pg_engine) as session:
            again = store.draft_reports(session, ids, endpoints=ENDPOINTS, actor="worker")
        assert not [s for s in statements if s.startswith(("insert", "update", "with"))]
    finally:
        sa.event.remove(pg_engine, "before_cursor_execute", seen)
    assert sorted(drafts) == sorted(ids) and {d: r.id for d, r in again.items()} == {d: r.id for d, r in drafts.items()}
    with store.session_scope(pg_engine) as session:
        assert [store.get_study(session, i).state for i in ids] == ["interpreted"] * 3
        details = session.execute(sa.select(AuditEvent.details).where(AuditEvent.action == "report.draft")
                                  .order_by(AuditEvent.id)).scalars().all()
        assert [d["study_id"] for d in details] == ids
        assert verify_chain(session).ok
    assert _count(pg_engine, Report) == 3 and _count(pg_engine, OutboxItem) == 0


def test_a_batch_names_the_study_whose_draft_cannot_be_made(engine: sa.Engine) -> None:
    """A study of the batch that is not `interpreted` is named (`DraftRefused` with the transition it
    cannot make) before anything of the batch is written; without it the others are drafted."""
    with store.session_scope(engine) as session:
        ids = [interpreted_study(session).id for _ in range(3)]
        store.fail(session, ids[1], "an operator's test", actor="test")
    with pytest.raises(store.DraftRefused) as refused:
        with store.session_scope(engine) as session:
            store.draft_reports(session, ids, endpoints=ENDPOINTS, actor="worker")
    assert refused.value.study_id == ids[1] and isinstance(refused.value.problem, store.InvalidTransition)
    assert _count(engine, Report) == 0
    with store.session_scope(engine) as session:
        drafts = store.draft_reports(session, [ids[0], ids[2]], endpoints=ENDPOINTS, actor="worker")
    assert sorted(drafts) == [ids[0], ids[2]] and _count(engine, Report) == 2


def test_outbox_rows_for_a_batch_are_one_insert_and_a_queued_pair_is_left_as_it_is(pg_engine: sa.Engine) -> None:
    with store.session_scope(pg_engine) as session:
        reports = [store.draft_report(session, interpreted_study(session).id, endpoints=ENDPOINTS, actor="worker")
                   for _ in range(2)]
        first = store.add_outbox(session, reports[0].id, "his", actor="worker")
    with store.session_scope(pg_engine) as session:
        reports = [session.get(Report, report.id) for report in reports]
        items = store.add_outboxes(session, reports, ["his", "lab", "lab"], actor="worker")  # "lab" named twice
    assert [(item.report_id, item.destination) for item in items] == [
        (reports[0].id, "his"), (reports[0].id, "lab"), (reports[1].id, "his"), (reports[1].id, "lab")]
    assert items[0].id == first.id  # queued before: returned, not queued twice
    assert _count(pg_engine, OutboxItem) == 4
    assert _actions(pg_engine).count("outbox.queued") == 4


def test_create_draft_report_with_a_given_message_is_idempotent(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        message = _message(session, study)
        first = store.create_draft_report(session, study.id, message, created_by="protocol-reader", actor="worker")
        second = store.create_draft_report(session, study.id, _message(session, study),
                                           created_by="protocol-reader", actor="worker")
        assert second.id == first.id and second.hl7_message == message
        # The placer order number is the accession number the device recorded.
        assert (study.placer_order_number, study.filler_order_number) == ("ACC-99", f"ECGWL{study.id}")
    assert _count(engine, Report) == 1


def test_concurrent_drafts_of_one_study_make_one_report(pg_engine: sa.Engine) -> None:
    with store.session_scope(pg_engine) as session:
        study_id = interpreted_study(session).id
    start = threading.Barrier(4)
    ids: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            with store.session_scope(pg_engine) as session:
                ids.append(store.draft_report(session, study_id, endpoints=ENDPOINTS, actor="worker").id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == [] and len(set(ids)) == 1 and _count(pg_engine, Report) == 1


def test_an_invalid_message_is_never_stored(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        study_id = study.id
        good = _message(session, study)
    events_before = len(_actions(engine))
    bad = good.replace("|||||P|||", "|||||Q|||", 1)  # OBX-11 = Q: not in table 0085
    assert bad != good
    with pytest.raises(store.InvalidMessage, match="OBX-11 'Q'"), store.session_scope(engine) as session:
        store.create_draft_report(session, study_id, bad, created_by="protocol-reader", actor="worker")
    final = good.replace("|EC|P", "|EC|F")  # a final result cannot be a machine draft
    with pytest.raises(store.InvalidMessage, match="OBR-25"), store.session_scope(engine) as session:
        store.create_draft_report(session, study_id, final, created_by="protocol-reader", actor="worker")
    assert _count(engine, Report) == 0
    assert len(_actions(engine)) == events_before
    with store.session_scope(engine) as session:
        assert store.get_study(session, study_id).state == "interpreted"


def test_sign_amend_and_the_versions_they_make(engine: sa.Engine) -> None:
    signed_at = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        draft = store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker")
        with deliberately_invalid():  # a final without its signer, built to be refused
            unsigned_final = _message(session, study, result_status="F")
        with pytest.raises(store.InvalidMessage, match="OBR-32"):  # a final needs its signer
            store.add_report_version(session, study.id, unsigned_final,
                                     status="signed", created_by="jdoe", signed_by="jdoe", actor="user:jdoe")
        signer = {"signed_by": "jdoe", "signed_by_name": "Doe^Jane", "signed_at": signed_at}
        final = _message(session, study, result_status="F", **signer)
        signed = store.add_report_version(session, study.id, final, status="signed", created_by="jdoe",
                                          signed_by="jdoe", signed_at=signed_at, actor="user:jdoe")
        assert study.state == "signed"
        correction = _message(session, study, result_status="C", impression="Corrected: sinus bradycardia",
                              **signer)
        amended = store.add_report_version(session, study.id, correction, status="amended", created_by="jdoe",
                                           signed_by="jdoe", actor="user:jdoe", destinations=["his"])
        assert [(i.destination, i.message_control_id) for i in amended.deliveries] == [
            ("his", amended.message_control_id)]
        assert study.state == "signed"
        with pytest.raises(store.InvalidTransition):  # a signed study cannot be rejected
            store.add_report_version(session, study.id, _message(session, study, result_status="X"),
                                     status="rejected", created_by="jdoe", actor="user:jdoe")
    assert [(r.version, r.status, r.result_status) for r in (draft, signed, amended)] == [
        (1, "draft", "P"), (2, "signed", "F"), (3, "amended", "C")]
    assert len({draft.message_control_id, signed.message_control_id, amended.message_control_id}) == 3
    with store.session_scope(engine) as session:
        assert store.latest_report(session, study.id).version == 3
        assert verify_chain(session).ok


def test_reject_withdraws_the_draft(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker")
        rejected = store.add_report_version(session, study.id, _message(session, study, result_status="X"),
                                            status="rejected", created_by="jdoe", actor="user:jdoe")
        assert (rejected.version, rejected.result_status, study.state) == (2, "X", "rejected")


# ---------------------------------------------------------------- outbox


def test_outbox_delivery_outcomes(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        report = store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker",
                                    destinations=["his", "archive", "ris"])
        held = store.add_outbox(session, report.id, "final-only", actor="worker", held=True)
        assert store.add_outbox(session, report.id, "his", actor="worker").state == "pending"
    soon = utcnow() + dt.timedelta(seconds=1)
    with store.session_scope(engine) as session:
        due = store.due_outbox(session, now=soon)
        assert sorted(item.destination for item in due) == ["archive", "his", "ris"]
        assert all(item.payload == report.hl7_message for item in due)
        by_name = {item.destination: item for item in due}
        acked = store.record_delivery(session, by_name["his"].id, ack_code="AA", actor="delivery")
        refused = store.record_delivery(session, by_name["archive"].id, ack_code="AE",
                                        error="unknown patient", actor="delivery")
        retry = store.record_delivery(session, by_name["ris"].id, error="connection refused",
                                      retry_at=soon + dt.timedelta(minutes=1), actor="delivery")
    assert (acked.state, acked.delivered_at is not None) == ("acked", True)
    assert (refused.state, refused.ack_code, refused.last_error) == ("error", "AE", "unknown patient")
    assert (retry.state, retry.attempts) == ("pending", 1)
    assert held.state == "held"
    with store.session_scope(engine) as session:
        assert store.due_outbox(session, now=soon) == []
        assert [i.destination for i in store.due_outbox(session, now=soon + dt.timedelta(minutes=2))] == ["ris"]


def test_audit_details_carry_no_patient_identifiers(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker", destinations=["his"])
    with engine.connect() as connection:
        details = json.dumps(list(connection.execute(sa.select(AuditEvent.details)).scalars()))
    for identifier in (PATIENT.patient_id, "Rossi", "Maria", "1950", PATIENT.accession):
        assert identifier not in details


def test_times_come_back_as_the_same_instant_in_utc(engine: sa.Engine) -> None:
    """SQLite stores no zone: without UtcDateTime a +02:00 time would shift by two hours there."""
    signed_at = dt.datetime(2026, 11, 21, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with store.session_scope(engine) as session:
        study = interpreted_study(session)
        store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker")
        message = _message(session, study, result_status="F", signed_by="jdoe", signed_at=signed_at)
        report = store.add_report_version(session, study.id, message, status="signed", created_by="jdoe",
                                          signed_by="jdoe", signed_at=signed_at, actor="user:jdoe")
    with store.session_scope(engine) as session:
        stored = session.get(Report, report.id)
        assert stored.signed_at == signed_at and stored.signed_at.utcoffset() == dt.timedelta(0)
        assert store.get_study(session, study.id).acquired_at == dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)


# ---------------------------------------------------------------- one read of a locked row


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda _c, _cur, statement, *_rest: seen.append(" ".join(statement.split())))
    return seen


def test_a_locked_study_is_read_once_per_transaction(engine: sa.Engine) -> None:
    with store.session_scope(engine) as session:
        study_id = interpreted_study(session).id
    seen = _statements(engine)
    with store.session_scope(engine) as session:
        claimed = store.claim_study(session, study_id, "interpreted")
        assert claimed is not None
        reads = [s for s in seen if s.startswith("SELECT") and "FROM studies" in s]
        assert len(reads) == 1 and "studies.features" not in reads[0]  # the JSON is left unread
        # Drafting, the state change and its audit rows use the locked row: no second read of it.
        store.draft_report(session, study_id, endpoints=ENDPOINTS, actor="worker:report")
        reads = [s for s in seen if s.startswith("SELECT") and "FROM studies" in s]
        assert len(reads) == 2  # the one lock, then the documents the draft is built from
        assert "studies.demographics" in reads[1] and "studies.features" not in reads[1]
        assert store.get_study(session, study_id, for_update=True) is claimed
        assert claimed.state == "awaiting_signoff"
        heads = [s for s in seen if s.startswith("SELECT") and "FROM audit_head" in s]
        assert len(heads) == 1  # the report row and the state change appended after one lock of the head
        # A bulk UPDATE may change the row behind the session's copy: the next lock reads it again.
        session.execute(sa.update(Study).where(Study.id == study_id).values(attempts=7)
                        .execution_options(synchronize_session=False))
        assert store.get_study(session, study_id, for_update=True).attempts == 7
    with store.session_scope(engine) as session:  # a new transaction locks again
        before = len(seen)
        store.get_study(session, study_id, for_update=True)
        assert any("FROM studies" in s for s in seen[before:])
    with store.session_scope(engine) as session:
        assert verify_chain(session).ok  # the events appended after one read of the head still chain


def test_a_draft_is_parsed_by_hl7apy_once_while_built_and_never_again(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's draft: hl7apy checks it strictly as it is built, the store's check does the
    rest without parsing it again; a message handed in from outside is parsed."""
    from reports import hl7_validate

    parses: list[str] = []
    real_parse = hl7_validate.parse_message
    monkeypatch.setattr(hl7_validate, "parse_message", lambda text, **kw: parses.append(text) or real_parse(text, **kw))
    with store.session_scope(engine) as session:
        drafted = interpreted_study(session)
        report = store.draft_report(session, drafted.id, endpoints=ENDPOINTS, actor="worker:report")
    assert report.hl7_message.startswith("MSH|") and parses == []
    assert hl7_validate.validate_oru(report.hl7_message) == [] and len(parses) == 1  # it does pass the parse
    with store.session_scope(engine) as session:
        given = interpreted_study(session)
        message = _message(session, given)
        store.create_draft_report(session, given.id, message, created_by="protocol-reader", actor="test")
    assert parses[1:] == [message]


def test_json_columns_hold_what_json_would_and_give_it_back_equal(engine: sa.Engine) -> None:
    """The JSON columns are written by orjson (`store.json_text`): the same values as json.dumps
    (integer keys become strings, non-ASCII text kept as it is, floats to the last digit), and a
    study's documents read back equal on both databases."""
    value = {"patient_name": "Ærøskøbing^Zoë", 3: [0.1, -0.0001, 1e-7, 123456.789, None, True], "nested": {"x": []}}
    text = store.json_text(value)
    assert json.loads(text) == json.loads(json.dumps(value)) and "Ærøskøbing^Zoë" in text
    with store.session_scope(engine) as session:
        study, _ = store.register_study(session, sha256=new_sha(), source_format="dicom", source_path="/in/a.dcm")
        study.demographics = {"patient_name": "Ærøskøbing^Zoë"}
        study.features = json.loads(json.dumps(value))
        study_id = study.id
    with store.session_scope(engine) as session:
        stored = store.get_study(session, study_id)
        assert stored.features == json.loads(json.dumps(value))
        assert stored.demographics == {"patient_name": "Ærøskøbing^Zoë"}
