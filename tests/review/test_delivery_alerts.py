"""The delivery alert on the web pages: a message given up on at the retry ceiling (or refused and
held) is announced on its study page and counted on the queue page (real Postgres)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fastapi.testclient import TestClient

from reports.delivery import deliver_due
from tests.delivery.conftest import destination, later


def test_a_message_given_up_on_is_an_alert_on_the_study_and_queue_pages(
    logged_in: Callable[[str], TestClient], make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    study_id = make_study()
    unreachable = destination("his", 9, max_attempts=2, ack_timeout_seconds=0.5)  # port 9: nobody listens
    for step in range(3):
        deliver_due(review_engine, [unreachable], now=later(60 * step))
    client = logged_in("viewer1")
    page = client.get(f"/studies/{study_id}").text
    assert 'role="alert"' in page and "1 message held for a person" in page
    assert "ALERT: gave up after 2 attempts, held for a person" in page
    queue = client.get("/queue").text
    assert "<b>1</b>deliveries held for a person" in queue
    queued = make_study()  # queued, not tried yet: no alert
    assert 'role="alert"' not in client.get(f"/studies/{queued}").text
