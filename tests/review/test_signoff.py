"""Sign (F), amend (C), reject (X): the messages, the outbox, optimistic locking and the audit chain.

The signed report is the cardiologist's: the F/C message carries the confirmed statements,
impression and measurements and "Confirmed by", never the machine's reasoning, claim checks,
notes or "preliminary" sentence; an amendment needs a reason and a change.
"""

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
                                                 "impression": "Normal, amended", "action": "amend",
                                                 "reason": "wording"})
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


def _notes(message: hl7.Message) -> list[str]:
    return [message.unescape(str(nte[3])) for nte in message.segments("NTE")]


def test_the_signed_report_carries_only_what_the_cardiologist_confirmed(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    # A demonstration-model draft with a claim check, and the interpreter's "preliminary" sentence.
    study_id = make_study(["sinus rhythm", "normal ecg"], demonstration=True, qtc_ms=520,
                          narrative="Sinus rhythm. Preliminary computer reading of the measured signal; requires "
                                    "cardiologist confirmation.")
    client = logged_in("cardio1")
    page = client.get(f"/studies/{study_id}").text
    # The form offers the draft's statements and impression without the machine's sentence, and the library.
    assert 'name="labels" value="sinus rhythm; normal ecg"' in page
    assert ">Sinus rhythm.</textarea>" in page and '<option value="st elevation (inferior)">' in page
    draft = hl7.parse(_versions(review_engine, study_id)[0].hl7_message)
    assert "DEMONSTRATION MODEL - NOT FOR CLINICAL USE" in _notes(draft)
    assert any(note.startswith("Check: ") for note in _notes(draft))
    response = client.post(f"/studies/{study_id}/sign", data={
        "csrf_token": csrf_of(page), "based_on_version": "1", "impression": "Sinus rhythm. Long QT.",
        "labels": "sinus rhythm", "add_statement": "marked qt prolongation", "m_qtc_ms": "520", "m_pr_ms": "172",
        "action": "sign"})
    assert response.status_code == 303, response.text
    final = _versions(review_engine, study_id)[1]
    message = hl7.parse(final.hl7_message)
    impression = next(obx for obx in message.segments("OBX") if str(obx[3][0][0]) == "8601-7")
    assert [str(r) for r in impression[5]] == ["sinus rhythm", "marked qt prolongation", "Sinus rhythm. Long QT."]
    notes = _notes(message)
    assert any(note.startswith("Confirmed by Rossi, Anna on ") for note in notes)
    assert not any(note.startswith(("Check:", "Interpreter:", "Machine draft")) for note in notes)
    assert "DEMONSTRATION" not in final.hl7_message and "Preliminary computer reading" not in final.hl7_message
    assert "ECGWL-REASONING" not in final.hl7_message
    # The measurement the reviewer changed says so; the one left as it was keeps its source.
    sources = {str(obx[3][0][0]): str(obx[17][0][0]) for obx in message.segments("OBX") if str(obx[2]) == "NM"}
    values = {str(obx[3][0][0]): str(obx[5]) for obx in message.segments("OBX") if str(obx[2]) == "NM"}
    assert sources["8625-6"] == "REVIEWER" and values["8625-6"] == "172"
    assert sources["76635-2"] == "COMPUTED" and values["76635-2"] == "520"
    assert final.measurements["sources"]["pr_ms"] == "reviewer"
    with store.session_scope(review_engine) as session:
        details = session.execute(sa.select(AuditEvent.details).where(AuditEvent.action == "report.signed")
                                  .order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert details["statements"] == ["sinus rhythm", "marked qt prolongation"]
    assert details["entered_measurements"] == {"pr_ms": 172.0, "qtc_ms": 520.0}  # as posted


def test_signing_the_preliminary_sentence_is_refused(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    client = logged_in("cardio1")
    response = _sign_via_web(client, study_id, "Normal. Preliminary computer reading; requires cardiologist "
                                                "confirmation.")
    assert response.status_code == 400 and "your signature is the confirmation" in response.text
    assert len(_versions(review_engine, study_id)) == 1


def test_an_amendment_needs_a_reason_and_a_change_and_the_c_message_carries_both(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    client = logged_in("cardio1")
    assert _sign_via_web(client, study_id, "Sinus rhythm.", "sinus rhythm; normal ecg").status_code == 303

    def amend(**fields: str):
        page = client.get(f"/studies/{study_id}").text
        return client.post(f"/studies/{study_id}/sign", data={
            "csrf_token": csrf_of(page), "based_on_version": "2", "impression": "Sinus rhythm.",
            "labels": "sinus rhythm; normal ecg", "action": "amend"} | fields)

    no_reason = amend(labels="sinus rhythm; first degree av block")
    assert no_reason.status_code == 400 and "the reason for the correction is required" in no_reason.text
    no_change = amend(reason="checked again")
    assert no_change.status_code == 400 and "nothing to correct" in no_change.text
    assert len(_versions(review_engine, study_id)) == 2  # both refused, nothing written
    done = amend(reason="PR re-measured on the rhythm strip", labels="sinus rhythm; first degree av block",
                 m_pr_ms="212")
    assert done.status_code == 303, done.text
    corrected = _versions(review_engine, study_id)[2]
    notes = _notes(hl7.parse(corrected.hl7_message))
    assert "Correction of the report signed as v2: PR re-measured on the rhythm strip" in notes
    changed = next(note for note in notes if note.startswith("Changed: "))
    assert "statements added: first degree av block" in changed and "statements removed: normal ecg" in changed
    assert "P-R Interval 160 -> 212 ms" in changed
    with store.session_scope(review_engine) as session:
        details = session.execute(sa.select(AuditEvent.details).where(AuditEvent.action == "report.amended")
                                  ).scalar_one()
    assert details["reason"] == "PR re-measured on the rhythm strip" and details["corrects_version"] == 2
    assert "P-R Interval 160 -> 212 ms" in details["changes"]
