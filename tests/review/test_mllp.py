"""The MLLP client against a real MLLP listener (the `hl7` package's asyncio server)."""

from __future__ import annotations

import socket

import pytest

from reports.mllp import MllpError, frame, parse_ack, send_message
from tests.mllp_engine import FakeInterfaceEngine

MESSAGE = "\r".join([
    "MSH|^~\\&|ECGWL|HOSP|HIS|HOSP|20261124101500||ORU^R01^ORU_R01|CTRL-1|P|2.5.1",
    "PID|1||DEMO-0001^^^HOSP^MR||DEMO^PATIENT",
    "OBR|1|PLC-1|FIL-1|34534-8^12 lead EKG panel^LN|||20261124101000|||||||||||||||20261124101500|||P",
])


def test_frame_wraps_message_in_mllp_blocks() -> None:
    framed = frame("MSH|a\nPID|b")
    assert framed.startswith(b"\x0b") and framed.endswith(b"\x1c\x0d")
    assert b"MSH|a\rPID|b\r" in framed  # newlines normalised to HL7 segment ends


def test_accepted_message_is_acknowledged_with_its_control_id() -> None:
    with FakeInterfaceEngine() as engine:
        ack = send_message("127.0.0.1", engine.port, MESSAGE, timeout_s=5)
    assert ack.accepted and ack.code == "AA"
    assert ack.control_id == "CTRL-1"
    assert engine.accepted_control_ids == ["CTRL-1"]
    assert str(engine.received[0].segment("PID")(5)) == "DEMO^PATIENT"


@pytest.mark.parametrize("code", ["AE", "AR"])
def test_error_and_reject_are_reported_not_accepted(code: str) -> None:
    with FakeInterfaceEngine(script=[code]) as engine:
        ack = send_message("127.0.0.1", engine.port, MESSAGE, timeout_s=5)
    assert ack.code == code and not ack.accepted
    assert engine.accepted_control_ids == []


def test_dropped_connection_raises() -> None:
    with FakeInterfaceEngine(script=["drop"]) as engine:
        with pytest.raises(MllpError, match="closed"):
            send_message("127.0.0.1", engine.port, MESSAGE, timeout_s=5)
        assert len(engine.received) == 1


def test_refused_connection_raises() -> None:
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MllpError, match=str(port)):
        send_message("127.0.0.1", port, MESSAGE, timeout_s=2)


def test_silent_engine_times_out() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # accepts the TCP connection but never answers
        with pytest.raises(MllpError, match="timed out|Timeout"):
            send_message("127.0.0.1", server.getsockname()[1], MESSAGE, timeout_s=0.5)


def test_reply_without_msa_is_not_an_ack() -> None:
    with pytest.raises(MllpError, match="MSA"):
        parse_ack("MSH|^~\\&|X\rPID|1")
