"""Delivery over MLLP against real listeners (the `hl7` package's asyncio server) and a real
Postgres: what the outbox records, and what the engine on the other end really took."""

from __future__ import annotations

import json
import threading

import sqlalchemy as sa

from reports import store
from reports.db import AuditEvent
from reports.delivery import deliver_due
from reports.delivery_view import delivery_problems, delivery_status_for_study, retry_now, withdraw
from tests.delivery.conftest import amend, control_ids, destination, draft, later, outbox, sign
from tests.mllp_engine import FakeInterfaceEngine


def test_accepted_message_is_delivered_once(engine: sa.Engine) -> None:
    study_id, report = draft(engine, ["his"])
    with FakeInterfaceEngine() as his:
        first = deliver_due(engine, [destination("his", his.port)])
        again = deliver_due(engine, [destination("his", his.port)], now=later(60))
    [row] = outbox(engine)
    assert (row.state, row.ack_code, row.attempts, row.last_error) == ("acked", "AA", 1, None)
    assert row.delivered_at is not None
    assert (first.sent, first.accepted) == (1, 1) and again.sent == 0
    assert his.accepted_control_ids == [report.message_control_id]
    assert str(his.received[0].segment("OBR")(25)) == "P"  # the draft goes out as preliminary
    with store.session_scope(engine) as session:
        [status] = delivery_status_for_study(session, study_id)
        assert (status.status, status.report_version, status.destination) == ("delivered", 1, "his")
        assert delivery_problems(session) == []


def test_application_error_is_retried_with_its_text_kept_until_accepted(engine: sa.Engine) -> None:
    _, report = draft(engine, ["his"])
    with FakeInterfaceEngine(script=["AE:Order number not found"]) as his:
        his_dest = destination("his", his.port, on_ae="retry", retry_base_seconds=120)
        first = deliver_due(engine, [his_dest])
        [row] = outbox(engine)
        assert (row.state, row.ack_code, row.last_error, row.attempts) == (
            "pending", "AE", "Order number not found", 1)
        assert deliver_due(engine, [his_dest], now=later(1)).sent == 0  # backoff: not yet (2 minutes)
        with store.session_scope(engine) as session:
            [problem] = delivery_problems(session)
        assert (problem.status, problem.error) == ("retrying after AE", "Order number not found")
        second = deliver_due(engine, [his_dest], now=later(3))
    assert (first.errors, first.retried, first.accepted) == (1, 1, 0)
    assert second.accepted == 1
    [row] = outbox(engine)
    assert (row.state, row.attempts, row.ack_code) == ("acked", 2, "AA")
    assert control_ids(his.received) == [report.message_control_id] * 2
    assert his.accepted_control_ids == [report.message_control_id]  # delivered exactly once


def test_reject_is_held_for_a_person_then_released(engine: sa.Engine) -> None:
    study_id, report = draft(engine, ["his"])
    text = "Unknown patient MRN-4711"  # engines quote the patient: kept on the row, not in the audit
    with FakeInterfaceEngine(script=[f"AR:{text}"]) as his:
        his_dest = destination("his", his.port)  # on_ar defaults to hold
        first = deliver_due(engine, [his_dest])
        assert deliver_due(engine, [his_dest], now=later(24 * 60)).sent == 0  # held: never retried alone
        with store.session_scope(engine) as session:
            [problem] = delivery_problems(session)
            assert (problem.study_id, problem.report_version, problem.destination) == (study_id, 1, "his")
            assert (problem.state, problem.status, problem.ack_code, problem.error, problem.next_attempt_at) == (
                "error", "held for a person (AR)", "AR", text, None)
            released = retry_now(session, problem.outbox_id, "user:analyst")
        assert (released.state, released.status) == ("pending", "retrying after AR")
        second = deliver_due(engine, [his_dest])
    assert (first.rejected, first.held) == (1, 1) and second.accepted == 1
    assert his.accepted_control_ids == [report.message_control_id]
    with engine.connect() as connection:
        events = connection.execute(sa.select(AuditEvent.actor, AuditEvent.action, AuditEvent.details)
                                    .where(AuditEvent.entity_type == "outbox").order_by(AuditEvent.id)).all()
    assert [(e.actor, e.action) for e in events] == [
        ("worker", "outbox.queued"), ("delivery", "outbox.error"), ("user:analyst", "outbox.released"),
        ("delivery", "outbox.acked")]
    assert "MRN-4711" not in json.dumps([e.details for e in events])
    assert events[1].details["error"].startswith("receiver text sha256:")


def test_dropped_connection_is_retried_and_the_engine_takes_the_message_once(engine: sa.Engine) -> None:
    _, report = draft(engine, ["his"])
    with FakeInterfaceEngine(script=["drop"]) as his:
        his_dest = destination("his", his.port, retry_base_seconds=30)
        first = deliver_due(engine, [his_dest])
        [row] = outbox(engine)
        assert (row.state, row.ack_code, row.attempts) == ("pending", None, 1)
        assert row.last_error.startswith("no ACK:") and "closed" in row.last_error
        second = deliver_due(engine, [his_dest], now=later(1))
    assert (first.retried, second.accepted) == (1, 1)
    assert len(his.received) == 2
    assert his.accepted_control_ids == [report.message_control_id]
    assert outbox(engine)[0].state == "acked"


def test_unreachable_engine_backs_off_exponentially(engine: sa.Engine) -> None:
    draft(engine, ["his"])
    with FakeInterfaceEngine() as closed:
        port = closed.port  # nobody listens there once the listener is closed
    his_dest = destination("his", port, retry_base_seconds=10, retry_max_seconds=35)
    waits = []
    clock = later(0)
    for _ in range(4):
        assert deliver_due(engine, [his_dest], now=clock).retried == 1
        row = outbox(engine)[0]
        waits.append(round((row.next_attempt_at - clock).total_seconds()))
        clock = row.next_attempt_at
    assert waits == [10, 20, 35, 35]
    assert outbox(engine)[0].attempts == 4


def test_timeout_retries_and_the_resend_carries_the_same_control_id(engine: sa.Engine) -> None:
    """At-least-once on the wire: an engine that took the message but answered too late gets
    it again with the same MSH-10 (the receiver drops the duplicate); the row is delivered once."""
    _, report = draft(engine, ["his"])
    with FakeInterfaceEngine(script=["slow"], slow_seconds=1.5) as his:
        his_dest = destination("his", his.port, ack_timeout_seconds=0.5)
        first = deliver_due(engine, [his_dest])
        assert "timed out" in outbox(engine)[0].last_error
        second = deliver_due(engine, [his_dest], now=later(5))
    assert (first.retried, second.accepted) == (1, 1)
    assert his.accepted_control_ids == [report.message_control_id] * 2
    [row] = outbox(engine)
    assert (row.state, row.attempts) == ("acked", 2)


def test_ack_for_another_message_is_not_accepted(engine: sa.Engine) -> None:
    _, report = draft(engine, ["his"])
    with FakeInterfaceEngine(script=["AA-other"]) as his:
        his_dest = destination("his", his.port)
        first = deliver_due(engine, [his_dest])
        [row] = outbox(engine)
        assert (row.state, row.ack_code, row.delivered_at) == ("pending", None, None)
        assert f"MSA-2 'NOT-{report.message_control_id}'" in row.last_error
        second = deliver_due(engine, [his_dest], now=later(5))
    assert (first.accepted, first.retried, second.accepted) == (0, 1, 1)
    assert outbox(engine)[0].state == "acked"


def test_a_correction_waits_for_its_original_while_other_patients_go(engine: sa.Engine) -> None:
    study_a, draft_a = draft(engine, ["his"], patient_id="PAT-A")
    signed_a = sign(engine, study_a, ["his"])
    corrected_a = amend(engine, study_a, ["his"])
    _, draft_b = draft(engine, ["his"], patient_id="PAT-B")
    _, other_study_a = draft(engine, ["his"], patient_id="PAT-A")  # the same patient's next ECG
    with FakeInterfaceEngine(script=["AE:Interface busy"]) as his:
        his_dest = destination("his", his.port, on_ae="retry")
        first = deliver_due(engine, [his_dest])
        assert his.accepted_control_ids == [draft_b.message_control_id]  # only the other patient went
        second = deliver_due(engine, [his_dest], now=later(5))
    assert (first.errors, first.waiting, first.accepted) == (1, 3, 1)
    assert (second.accepted, second.waiting) == (4, 0)
    assert his.accepted_control_ids == [draft_b.message_control_id] + [
        r.message_control_id for r in (draft_a, signed_a, corrected_a, other_study_a)]
    assert [str(m.segment("OBR")(25)) for m in his.received[-4:]] == ["P", "F", "C", "P"]
    assert {row.state for row in outbox(engine)} == {"acked"}


def test_a_withdrawn_message_no_longer_holds_up_the_patient(engine: sa.Engine) -> None:
    study_id, draft_report = draft(engine, ["his"])
    with FakeInterfaceEngine(script=["AR:Invalid patient class"]) as his:
        his_dest = destination("his", his.port)
        deliver_due(engine, [his_dest])
        signed = sign(engine, study_id, ["his"])
        assert deliver_due(engine, [his_dest]).waiting == 1  # the final waits behind the refused draft
        with store.session_scope(engine) as session:
            [problem] = delivery_problems(session)
            withdrawn = withdraw(session, problem.outbox_id, "user:analyst", "draft not needed, final follows")
        assert (withdrawn.state, withdrawn.status) == ("held", "not sent")
        assert deliver_due(engine, [his_dest]).accepted == 1
    assert his.accepted_control_ids == [signed.message_control_id]
    with store.session_scope(engine) as session:
        rows = delivery_status_for_study(session, study_id)
    assert [(r.report_version, r.status) for r in rows] == [(1, "not sent"), (2, "delivered")]
    assert rows[0].error == "withdrawn by user:analyst: draft not needed, final follows"


def test_two_destinations_one_taking_drafts(engine: sa.Engine) -> None:
    names = ["his", "cardio-archive"]
    study_id, draft_report = draft(engine, names)
    with FakeInterfaceEngine() as his, FakeInterfaceEngine() as archive:
        destinations = [destination("his", his.port, drafts=False), destination("cardio-archive", archive.port)]
        first = deliver_due(engine, destinations)
        signed = sign(engine, study_id, names)
        second = deliver_due(engine, destinations)
    assert (first.accepted, first.drafts_held, second.accepted) == (1, 1, 2)
    assert his.accepted_control_ids == [signed.message_control_id]
    assert archive.accepted_control_ids == [draft_report.message_control_id, signed.message_control_id]
    with store.session_scope(engine) as session:
        rows = delivery_status_for_study(session, study_id)
        assert delivery_problems(session) == []  # a draft set aside on purpose is no problem
    assert [(r.report_version, r.destination, r.result_status, r.status) for r in rows] == [
        (1, "cardio-archive", "P", "delivered"), (1, "his", "P", "not sent"),
        (2, "cardio-archive", "F", "delivered"), (2, "his", "F", "delivered")]
    assert "drafts: false" in rows[1].error


def test_two_senders_at_once_never_send_a_row_twice(pg_url: str, engine: sa.Engine) -> None:
    """Two `deliver` processes (own engines, own connections) on the same outbox at the same time."""
    sent = [draft(engine, ["his"], patient_id=f"PAT-{n}")[1].message_control_id for n in range(16)]
    with FakeInterfaceEngine(delay_seconds=0.05) as his:
        his_dest = destination("his", his.port)
        engines = [store.make_engine(pg_url) for _ in range(2)]
        summaries = [None, None]
        start = threading.Barrier(2)

        def run(n: int) -> None:
            start.wait()
            summaries[n] = deliver_due(engines[n], [his_dest])

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for other in engines:
            other.dispose()
    assert all(s is not None and s.accepted > 0 for s in summaries)  # both really worked
    assert sum(s.accepted for s in summaries) == 16
    assert sorted(control_ids(his.received)) == sorted(sent)  # each message on the wire once
    assert sorted(his.accepted_control_ids) == sorted(sent)
    assert {row.state for row in outbox(engine)} == {"acked"}


def test_destinations_without_an_address_and_other_names_are_left_alone(engine: sa.Engine) -> None:
    draft(engine, ["his", "ris"])
    with FakeInterfaceEngine() as his:
        summary = deliver_due(engine, [destination("his", his.port), destination("ris", 1, host=None)])
    assert summary.accepted == 1
    assert [(r.destination, r.state) for r in outbox(engine)] == [("his", "acked"), ("ris", "pending")]
