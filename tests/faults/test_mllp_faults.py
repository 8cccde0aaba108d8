"""MLLP faults against a raw TCP peer on a real Postgres: ACK framing without the final 0x0D,
the retry ceiling and its alert, one audit row per state change (not per attempt), and the
destination's character set on the wire (MSH-18 and the bytes agree)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from reports import store
from reports.audit import verify_chain
from reports.db import AuditEvent, OutboxItem
from reports.delivery import deliver_due
from reports.delivery_view import alert_count, delivery_metrics, delivery_status_for_study
from tests.delivery.conftest import ENDPOINTS, destination, later
from tests.reports_db.helpers import PATIENT, interpreted_study


class RawEngine:
    """An MLLP peer that answers exactly the bytes a test wants, and keeps every frame's bytes.

    `reply(frame_bytes) -> bytes | None`: what to send back (None: close without answering).
    """

    def __init__(self, reply) -> None:
        self.reply = reply
        self.frames: list[bytes] = []
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            with connection:
                buffer = b""
                while b"\x1c" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    buffer += chunk
                frame = buffer[buffer.find(b"\x0b") + 1: buffer.find(b"\x1c")]
                self.frames.append(frame)
                answer = self.reply(frame)
                if answer is not None:
                    connection.sendall(answer)


def msh(frame: bytes, encoding: str = "latin-1") -> list[str]:
    return frame.decode(encoding).split("\r")[0].split("|")


def ack_without_cr(frame: bytes) -> bytes:
    control_id = msh(frame)[9]
    return b"\x0b" + f"MSH|^~\\&|HIS|HOSP|ECGWL|HOSP|20260101||ACK|A1|P|2.5.1\rMSA|AA|{control_id}\r".encode() + b"\x1c"


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    store.upgrade(postgres_url)
    engine = store.make_engine(postgres_url)
    yield engine
    with store.session_scope(engine) as session:
        result = verify_chain(session)
    engine.dispose()
    assert result.ok, result.describe()


def draft_for(engine: sa.Engine, name: str = "DOE^JANE", patient_id: str = "MRN-1") -> int:
    with store.session_scope(engine) as session:
        study = interpreted_study(session, demographics=PATIENT.model_copy(
            update={"patient_name": name, "patient_id": patient_id}))
        store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker", destinations=["his"])
        return study.id


def the_row(engine: sa.Engine) -> OutboxItem:
    with store.session_scope(engine) as session:
        return session.execute(sa.select(OutboxItem)).scalar_one()


def outbox_audit(engine: sa.Engine, outbox_id: int) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(
            sa.select(AuditEvent.action).where(AuditEvent.entity_type == "outbox",
                                               AuditEvent.entity_id == str(outbox_id))
            .order_by(AuditEvent.id)).scalars())


def test_an_ack_ending_in_0x1c_without_0x0d_is_accepted(engine: sa.Engine) -> None:
    draft_for(engine)
    with RawEngine(ack_without_cr) as his:
        summary = deliver_due(engine, [destination("his", his.port)])
    assert summary.accepted == 1 and the_row(engine).state == "acked"


def test_the_retry_ceiling_holds_the_message_for_a_person_with_an_alert(engine: sa.Engine) -> None:
    study_id = draft_for(engine)
    his = destination("his", 9, max_attempts=4, ack_timeout_seconds=0.5)  # port 9: nobody listens
    for step in range(6):
        deliver_due(engine, [his], now=later(60 * step))
    row = the_row(engine)
    assert (row.state, row.attempts) == ("error", 4)
    assert row.last_error.startswith("gave up after 4 attempts")
    with store.session_scope(engine) as session:
        [counts] = delivery_metrics(session)
        assert alert_count(session) == 1
        [shown] = delivery_status_for_study(session, study_id)
    assert (counts.destination, counts.needs_a_person, counts.gave_up, counts.retrying) == ("his", 1, 1, 0)
    assert counts.oldest_undelivered_seconds is not None and counts.oldest_undelivered_seconds >= 0
    assert shown.status == "ALERT: gave up after 4 attempts, held for a person"


def test_one_audit_row_per_state_change_not_per_attempt(engine: sa.Engine) -> None:
    draft_for(engine)
    his = destination("his", 9, max_attempts=12, ack_timeout_seconds=0.5)
    for step in range(12):
        deliver_due(engine, [his], now=later(60 * step))
    row = the_row(engine)
    assert (row.state, row.attempts) == ("error", 12)
    actions = outbox_audit(engine, row.id)
    # queued when created, retrying after the first failure, held at the ceiling: 12 attempts, 3 rows
    assert actions[-2:] == ["outbox.pending", "outbox.error"] and len(actions) <= 3, actions


def test_the_destination_charset_is_on_the_wire_and_in_msh_18(engine: sa.Engine) -> None:
    draft_for(engine, name="MÜLLER^Jürgen")
    with RawEngine(ack_without_cr) as his:
        assert deliver_due(engine, [destination("his", his.port, charset="8859/1")]).accepted == 1
    [frame] = his.frames
    assert msh(frame)[17] == "8859/1"
    assert "MÜLLER^Jürgen".encode("latin-1") in frame and "MÜLLER".encode("utf-8") not in frame


def test_utf8_is_the_default_and_says_so(engine: sa.Engine) -> None:
    draft_for(engine, name="MÜLLER^Łukasz")
    with RawEngine(ack_without_cr) as his:
        assert deliver_due(engine, [destination("his", his.port)]).accepted == 1
    [frame] = his.frames
    assert msh(frame, "utf-8")[17] == "UNICODE UTF-8" and "Łukasz".encode("utf-8") in frame


def test_a_character_the_charset_cannot_carry_is_held_not_mangled(engine: sa.Engine) -> None:
    draft_for(engine, name="MÜLLER^Łukasz")
    with RawEngine(ack_without_cr) as his:
        summary = deliver_due(engine, [destination("his", his.port, charset="8859/1")])
    assert his.frames == [] and summary.unencodable == 1
    row = the_row(engine)
    assert row.state == "error" and "U+0141 in PID cannot be sent in 8859/1" in row.last_error
