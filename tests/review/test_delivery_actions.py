"""Retry now and Withdraw on the study page: a message an interface engine refused (AR, held for
a person) or is retrying, acted on through the web app on a real Postgres and a real MLLP listener."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient

from reports import audit, store
from reports.db import AuditEvent, OutboxItem, Report
from reports.delivery import deliver_due
from tests.delivery.conftest import destination
from tests.mllp_engine import FakeInterfaceEngine
from tests.review.conftest import csrf_of

RETRY = 'action="/studies/{study}/deliveries/{outbox}/retry"'
WITHDRAW = 'action="/studies/{study}/deliveries/{outbox}/withdraw"'


def _outbox(engine: sa.Engine, study_id: int) -> OutboxItem:
    with store.session_scope(engine) as session:
        return session.execute(sa.select(OutboxItem).join(Report, Report.id == OutboxItem.report_id)
                               .where(Report.study_id == study_id)).scalar_one()


def _refused_study(engine: sa.Engine, make_study: Callable[..., int], script: str = "AR:Unknown patient") -> int:
    """A study whose draft the receiver refused (AR: held for a person, `error`)."""
    study_id = make_study()
    with FakeInterfaceEngine(script=[script]) as his:
        summary = deliver_due(engine, [destination("his", his.port)])
    assert summary.held == 1
    return study_id


def _events(engine: sa.Engine, outbox_id: int) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            sa.select(AuditEvent.actor, AuditEvent.action)
            .where(AuditEvent.entity_type == "outbox", AuditEvent.entity_id == str(outbox_id))
            .order_by(AuditEvent.id)).all()]


def test_buttons_only_for_rows_needing_a_person_and_only_for_allowed_roles(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    refused = _refused_study(review_engine, make_study)
    queued = make_study()  # its draft is merely queued: nothing to act on
    queued_row, refused_row = _outbox(review_engine, queued), _outbox(review_engine, refused)
    assert refused_row.state == "error"
    for username, allowed in (("cardio1", True), ("admin1", True), ("viewer1", False), ("tech1", False)):
        client = logged_in(username)
        page = client.get(f"/studies/{refused}").text
        assert "held for a person (AR)" in page
        for form in (RETRY, WITHDRAW):
            assert (form.format(study=refused, outbox=refused_row.id) in page) is allowed, username
        quiet = client.get(f"/studies/{queued}").text
        assert "/deliveries/" not in quiet and "Retry now" not in quiet, username
    assert queued_row.state == "pending"


def test_retry_now_makes_it_due_and_it_is_delivered(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = _refused_study(review_engine, make_study)
    row = _outbox(review_engine, study_id)
    client = logged_in("cardio1")
    token = csrf_of(client.get(f"/studies/{study_id}").text)
    response = client.post(f"/studies/{study_id}/deliveries/{row.id}/retry", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == f"/studies/{study_id}?done=delivery_retried"
    assert "Retry now: the message is due at once" in client.get(response.headers["location"]).text
    released = _outbox(review_engine, study_id)
    assert (released.state, released.next_attempt_at is not None) == ("pending", True)
    with FakeInterfaceEngine() as his:
        assert deliver_due(review_engine, [destination("his", his.port)]).accepted == 1
    assert his.accepted_control_ids == [row.message_control_id]
    assert _outbox(review_engine, study_id).state == "acked"
    # Delivered: no buttons any more, and a replayed POST changes nothing.
    assert "Retry now" not in client.get(f"/studies/{study_id}").text
    assert client.post(f"/studies/{study_id}/deliveries/{row.id}/retry",
                       data={"csrf_token": token}).status_code == 400
    assert _events(review_engine, row.id) == [
        ("test", "outbox.queued"), ("delivery", "outbox.error"), ("user:cardio1", "outbox.released"),
        ("delivery", "outbox.acked")]


def test_withdraw_needs_a_reason_and_sets_the_message_aside(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = _refused_study(review_engine, make_study)
    row = _outbox(review_engine, study_id)
    client = logged_in("admin1")
    token = csrf_of(client.get(f"/studies/{study_id}").text)
    url = f"/studies/{study_id}/deliveries/{row.id}/withdraw"
    for reason in ("", "   "):
        response = client.post(url, data={"csrf_token": token, "reason": reason})
        assert response.status_code == 400 and "a reason is needed" in response.text
    assert _outbox(review_engine, study_id).state == "error"
    response = client.post(url, data={"csrf_token": token, "reason": "duplicate order, HIS has it"})
    assert response.headers["location"] == f"/studies/{study_id}?done=delivery_withdrawn"
    withdrawn = _outbox(review_engine, study_id)
    assert withdrawn.state == "held"
    assert withdrawn.last_error == "withdrawn by user:admin1: duplicate order, HIS has it"
    page = client.get(response.headers["location"]).text
    assert "Withdrawn: the message is set aside" in page and "Retry now" not in page
    with FakeInterfaceEngine() as his:  # never sent again on its own
        assert deliver_due(review_engine, [destination("his", his.port)]).sent == 0
    assert _events(review_engine, row.id)[-1] == ("user:admin1", "outbox.held")


def test_a_retrying_row_can_be_withdrawn_too(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    with FakeInterfaceEngine(script=["AE:busy"]) as his:
        deliver_due(review_engine, [destination("his", his.port, on_ae="retry")])
    row = _outbox(review_engine, study_id)
    assert (row.state, row.attempts) == ("pending", 1)
    client = logged_in("cardio1")
    page = client.get(f"/studies/{study_id}").text
    assert WITHDRAW.format(study=study_id, outbox=row.id) in page
    response = client.post(f"/studies/{study_id}/deliveries/{row.id}/withdraw",
                           data={"csrf_token": csrf_of(page), "reason": "sent by hand"})
    assert response.status_code == 303 and _outbox(review_engine, study_id).state == "held"


def test_crafted_posts_are_refused(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = _refused_study(review_engine, make_study)
    other = make_study()
    row = _outbox(review_engine, study_id)
    for username in ("viewer1", "tech1"):
        client = logged_in(username)
        token = csrf_of(client.get(f"/studies/{study_id}").text)  # the logout form's: valid for the session
        for action, form in (("retry", {}), ("withdraw", {"reason": "x"})):
            response = client.post(f"/studies/{study_id}/deliveries/{row.id}/{action}",
                                   data=form | {"csrf_token": token})
            assert response.status_code == 403, (username, action)
    cardio = logged_in("cardio1")
    token = csrf_of(cardio.get(f"/studies/{study_id}").text)
    for action, form in (("retry", {}), ("withdraw", {"reason": "x"})):
        url = f"/studies/{study_id}/deliveries/{row.id}/{action}"
        assert cardio.post(url, data=form).status_code == 403  # no CSRF token
        assert cardio.post(url, data=form | {"csrf_token": "forged"}).status_code == 403
        # Another study's URL cannot reach this message.
        assert cardio.post(f"/studies/{other}/deliveries/{row.id}/{action}",
                           data=form | {"csrf_token": token}).status_code == 404
    # A message merely queued is not offered, and a crafted POST cannot withdraw it either.
    queued = _outbox(review_engine, other)
    assert cardio.post(f"/studies/{other}/deliveries/{queued.id}/withdraw",
                       data={"csrf_token": token, "reason": "x"}).status_code == 400
    assert (_outbox(review_engine, study_id).state, _outbox(review_engine, other).state) == ("error", "pending")
    assert [action for _, action in _events(review_engine, row.id)] == ["outbox.queued", "outbox.error"]


def test_both_actions_are_audited_and_the_chain_verifies(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    retried, withdrawn = _refused_study(review_engine, make_study), _refused_study(review_engine, make_study)
    client = logged_in("cardio1")
    token = csrf_of(client.get(f"/studies/{retried}").text)
    retried_row, withdrawn_row = _outbox(review_engine, retried), _outbox(review_engine, withdrawn)
    client.post(f"/studies/{retried}/deliveries/{retried_row.id}/retry", data={"csrf_token": token})
    client.post(f"/studies/{withdrawn}/deliveries/{withdrawn_row.id}/withdraw",
                data={"csrf_token": token, "reason": "patient merged"})
    assert _events(review_engine, retried_row.id)[-1] == ("user:cardio1", "outbox.released")
    assert _events(review_engine, withdrawn_row.id)[-1] == ("user:cardio1", "outbox.held")
    with store.session_scope(review_engine) as session:
        result = audit.verify_chain(session)
    assert result.ok, result.describe()
