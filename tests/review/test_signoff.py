"""Sign (F), amend (C), reject (X): the messages, the outbox, optimistic locking and the audit chain."""

from __future__ import annotations

from collections.abc import Callable

import hl7
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from reports import audit, store
from reports.db import AuditEvent, OutboxItem, Report, Study, User
from reports.review import signoff
from reports.review.config import ReviewConfig
from tests.review.conftest import csrf_of

POLICY = signoff.SignoffPolicy(destinations=["his"])


def _versions(engine: sa.Engine, study_id: int) -> list[Report]:
    with store.session_scope(engine) as session:
        return list(session.execute(sa.select(Report).where(Report.study_id == study_id)
                                    .order_by(Report.version)).scalars())


def _user(engine: sa.Engine, username: str) -> User:
    with store.session_scope(engine) as session:
        return session.execute(sa.select(User).where(User.username == username)).scalar_one()


def _sign_via_web(client: TestClient, study_id: int, impression: str, labels: str = "sinus rhythm",
                  action: str = "sign", version: int | None = None, page: str | None = None):
    page = page or client.get(f"/studies/{study_id}").text
    based_on = version if version is not None else int(page.split('name="based_on_version" value="')[1].split('"')[0])
    return client.post(f"/studies/{study_id}/sign", data={
        "csrf_token": csrf_of(page), "based_on_version": str(based_on), "impression": impression,
        "labels": labels, "action": action})


def _obx_statuses(message: hl7.Message) -> set[str]:
    return {str(segment[11]) for segment in message.segments("OBX")}


def test_sign_makes_a_final_oru_with_the_signer_and_an_outbox_row(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study(["sinus rhythm", "normal ecg"])
    client = logged_in("cardio1")
    response = _sign_via_web(client, study_id, "Sinus rhythm. Normal ECG, reviewed.", "sinus rhythm; normal ecg")
    assert response.status_code == 303 and response.headers["location"] == f"/studies/{study_id}?done=signed"
    draft, final = _versions(review_engine, study_id)
    assert (final.version, final.status, final.result_status, final.signed_by) == (2, "signed", "F", "cardio1")
    message = hl7.parse(final.hl7_message)
    obr = message.segment("OBR")
    assert str(obr[25]) == "F" and _obx_statuses(message) == {"F"}
    assert str(obr[32]).startswith("cardio1&Rossi&Anna^")  # OBR-32: who signed, and when
    assert str(obr[32]).split("^")[1][:12] == final.signed_at.strftime("%Y%m%d%H%M")
    assert "Sinus rhythm. Normal ECG, reviewed." in final.hl7_message
    assert str(obr[2]) == str(hl7.parse(draft.hl7_message).segment("OBR")[2])
    with store.session_scope(review_engine) as session:
        outbox = session.execute(sa.select(OutboxItem).where(OutboxItem.report_id == final.id)).scalars().all()
        assert [(o.destination, o.state, o.message_control_id) for o in outbox] == \
            [("his", "pending", final.message_control_id)]
        assert session.get(Study, study_id).state == "signed"
    page = client.get(f"/studies/{study_id}?done=signed").text
    assert "Signed: the final report (F)" in page and "Amend the signed report" in page


def test_amend_makes_a_correction_with_the_same_order_numbers_and_a_new_control_id(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    client = logged_in("cardio1")
    assert _sign_via_web(client, study_id, "First reading.").status_code == 303
    page = client.get(f"/studies/{study_id}").text
    response = client.post(f"/studies/{study_id}/sign", data={
        "csrf_token": csrf_of(page), "based_on_version": "2", "impression": "Corrected: first degree AV block.",
        "labels": "sinus rhythm; first degree av block", "reason": "PR re-measured", "action": "amend"})
    assert response.status_code == 303
    draft, final, corrected = _versions(review_engine, study_id)
    assert (corrected.status, corrected.result_status, corrected.signed_by) == ("amended", "C", "cardio1")
    messages = [hl7.parse(r.hl7_message) for r in (draft, final, corrected)]
    for field in (2, 3):
        assert len({str(m.segment("ORC")[field]) for m in messages}) == 1
        assert len({str(m.segment("OBR")[field]) for m in messages}) == 1
    assert len({str(m.segment("MSH")[10]) for m in messages}) == 3
    assert str(messages[2].segment("OBR")[25]) == "C" and _obx_statuses(messages[2]) == {"C"}
    assert "PR re-measured" in corrected.hl7_message
    with store.session_scope(review_engine) as session:
        assert session.execute(sa.select(sa.func.count()).select_from(OutboxItem)
                               .where(OutboxItem.report_id == corrected.id)).scalar_one() == 1


@pytest.mark.parametrize("action,state", [("send", "pending"), ("hold", "held")])
def test_reject_is_recorded_as_x_and_queued_or_held_never_dropped(
    app_factory, config: ReviewConfig, make_study: Callable[..., int], review_engine: sa.Engine,
    action: str, state: str,
) -> None:
    from tests.review.conftest import login

    study_id = make_study()
    client = login(app_factory(config.model_copy(update={"reject_action": action})), "cardio2")
    page = client.get(f"/studies/{study_id}").text
    response = client.post(f"/studies/{study_id}/reject", data={
        "csrf_token": csrf_of(page), "based_on_version": "1", "reason": "baseline wander, repeat the ECG"})
    assert response.status_code == 303
    rejected = _versions(review_engine, study_id)[-1]
    assert (rejected.version, rejected.status, rejected.result_status) == (2, "rejected", "X")
    assert str(hl7.parse(rejected.hl7_message).segment("OBR")[25]) == "X"
    assert "baseline wander, repeat the ECG" in rejected.impression
    with store.session_scope(review_engine) as session:
        outbox = session.execute(sa.select(OutboxItem).where(OutboxItem.report_id == rejected.id)).scalars().all()
        assert [(o.destination, o.state) for o in outbox] == [("his", state)]
        assert session.get(Study, study_id).state == "rejected"
    page = client.get(f"/studies/{study_id}").text
    assert "Reject draft" not in page and "Sign and next" not in page


def test_reject_needs_a_reason(logged_in: Callable[[str], TestClient], make_study: Callable[..., int],
                               review_engine: sa.Engine) -> None:
    study_id = make_study()
    client = logged_in("cardio1")
    page = client.get(f"/studies/{study_id}").text
    response = client.post(f"/studies/{study_id}/reject", data={"csrf_token": csrf_of(page),
                                                                "based_on_version": "1", "reason": "  "})
    assert response.status_code == 400 and "reason" in response.text
    assert [r.version for r in _versions(review_engine, study_id)] == [1]


def test_second_reviewer_gets_a_conflict_and_the_first_signature_stands(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    first, second = logged_in("cardio1"), logged_in("cardio2")
    page_first = first.get(f"/studies/{study_id}").text
    page_second = second.get(f"/studies/{study_id}").text  # both opened v1
    assert _sign_via_web(first, study_id, "Reading of cardio1", page=page_first).status_code == 303
    response = _sign_via_web(second, study_id, "Reading of cardio2", page=page_second)
    assert response.status_code == 409
    assert "signed by cardio1" in response.text and "Nothing was saved" in response.text
    # Rejecting on the stale page and signing with a hand-made newer version are refused too.
    reject = second.post(f"/studies/{study_id}/reject", data={"csrf_token": csrf_of(page_second),
                                                              "based_on_version": "1", "reason": "mine"})
    assert reject.status_code == 409
    assert _sign_via_web(second, study_id, "Reading of cardio2", version=2, page=page_second).status_code == 409
    reports = _versions(review_engine, study_id)
    assert [(r.version, r.signed_by, r.impression) for r in reports[1:]] == [(2, "cardio1", "Reading of cardio1")]


def test_signoff_functions_check_the_role_and_the_version_themselves(
    make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    viewer, cardio = _user(review_engine, "viewer1"), _user(review_engine, "cardio1")
    with store.session_scope(review_engine) as session:
        with pytest.raises(signoff.NotAllowed):
            signoff.sign(session, study_id, viewer, 1, "x", [], policy=POLICY)
        with pytest.raises(signoff.NotAllowed):
            signoff.reject(session, study_id, viewer, 1, "x", policy=POLICY)
    with store.session_scope(review_engine) as session:
        with pytest.raises(signoff.InvalidInput):
            signoff.amend(session, study_id, cardio, 1, "x", [], policy=POLICY)  # nothing signed yet
        with pytest.raises(signoff.InvalidInput, match="impression or at least one label"):
            signoff.sign(session, study_id, cardio, 1, "   ", [" ", ""], policy=POLICY)
    with store.session_scope(review_engine) as session:
        signoff.sign(session, study_id, cardio, 1, "ok", ["sinus rhythm"], policy=POLICY)
    with store.session_scope(review_engine) as session:
        with pytest.raises(signoff.Conflict, match="signed by cardio1"):
            signoff.sign(session, study_id, cardio, 1, "again", [], policy=POLICY)
        with pytest.raises(signoff.Conflict):
            signoff.sign(session, study_id, cardio, 2, "again", [], policy=POLICY)  # signed: amend, not sign
    assert [r.version for r in _versions(review_engine, study_id)] == [1, 2]


def test_concurrent_signers_one_wins(make_study: Callable[..., int], review_engine: sa.Engine) -> None:
    """Two transactions at once: the row lock decides, the loser gets Conflict, one v2 exists."""
    import threading

    study_id = make_study()
    users = [_user(review_engine, "cardio1"), _user(review_engine, "cardio2")]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def act(user: User) -> None:
        barrier.wait()
        try:
            with store.session_scope(review_engine) as session:
                signoff.sign(session, study_id, user, 1, f"by {user.username}", [], policy=POLICY)
            outcomes.append("signed")
        except signoff.Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=act, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["conflict", "signed"]
    assert [r.version for r in _versions(review_engine, study_id)] == [1, 2]


def test_sign_and_next_opens_the_next_study_in_the_queue(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int],
) -> None:
    routine = make_study()
    critical = make_study(["st elevation (inferior)"], critical=True)
    client = logged_in("cardio1")
    queue = client.get("/queue").text
    assert queue.index(f"#{critical}<") < queue.index(f"#{routine}<")  # the critical one is on top
    response = _sign_via_web(client, critical, "Inferior STEMI", "st elevation (inferior)", action="sign_next")
    assert response.headers["location"] == f"/studies/{routine}?done=signed"
    response = _sign_via_web(client, routine, "Normal", action="sign_next")
    assert response.headers["location"] == "/queue?done=queue_empty"


def test_every_act_is_in_the_audit_chain_and_it_verifies(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
    postgres_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed, rejected = make_study(), make_study()
    client = logged_in("cardio1")
    _sign_via_web(client, signed, "Normal")
    page = client.get(f"/studies/{signed}").text
    client.post(f"/studies/{signed}/sign", data={"csrf_token": csrf_of(page), "based_on_version": "2",
                                                 "impression": "Normal, amended", "action": "amend"})
    client.post(f"/studies/{rejected}/reject", data={"csrf_token": csrf_of(page), "based_on_version": "1",
                                                     "reason": "noise"})
    with store.session_scope(review_engine) as session:
        rows = session.execute(sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.details)
                               .where(AuditEvent.actor == "user:cardio1")).all()
        assert audit.verify_chain(session).ok
    actions = [r.action for r in rows]
    for action in ("report.signed", "report.amended", "report.rejected", "outbox.queued", "user.login"):
        assert action in actions
    assert not any("Verdi" in str(r.details) or "MRN-" in str(r.details) for r in rows)  # no patient ids
    from worker.cli import main as cli

    monkeypatch.setenv("ECGWL_DATABASE_URL", postgres_url)
    result = CliRunner().invoke(cli, ["audit", "verify"])
    assert result.exit_code == 0, result.output
