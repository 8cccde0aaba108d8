"""MLLP: how HL7 v2 messages travel over TCP to an interface engine, and how ACKs come back.

A frame is  0x0B  message  0x1C 0x0D  (segments inside end with 0x0D). We send one
message per frame and wait for exactly one ACK frame before the next.

Why our own client rather than `hl7.client.MLLPClient`: that one sends with a single
`socket.send` and reads the ACK with a single `recv(4096)`, with no timeout, so a slow
engine or a split TCP read gives a truncated ACK or a hang. A delivery loop needs a hard
timeout and a whole frame. (The `hl7` package stays our independent parser, and its
asyncio server plays the interface engine in the tests.)
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"


class MllpError(Exception):
    """The connection failed, timed out, or the peer answered something that is not an ACK."""


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA/CA accepted, AE/CE error, AR/CR rejected
    control_id: str  # MSA-2: must echo the MSH-10 we sent
    text: str  # MSA-3 / ERR text, when the engine gave one
    raw: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def frame(message: str) -> bytes:
    """Wrap one ER7 message (segments separated by \\r) in an MLLP frame."""
    body = message.replace("\r\n", "\r").replace("\n", "\r")
    if not body.endswith("\r"):
        body += "\r"
    return START_BLOCK + body.encode("utf-8") + END_BLOCK


def read_frame(sock: socket.socket, max_bytes: int = 1 << 20) -> str:
    """Read bytes until a whole MLLP frame has arrived; return its message text."""
    buffer = b""
    while END_BLOCK not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise MllpError("connection closed before a complete MLLP frame arrived")
        buffer += chunk
        if len(buffer) > max_bytes:
            raise MllpError("MLLP frame larger than the allowed size")
    start = buffer.find(START_BLOCK)
    if start < 0:
        raise MllpError("MLLP frame without a start block")
    return buffer[start + 1: buffer.index(END_BLOCK)].decode("utf-8", errors="replace")


def parse_ack(text: str) -> Ack:
    """Pull MSA-1/2/3 (and an ERR text if present) out of an ACK message."""
    segments = [s for s in text.replace("\n", "\r").split("\r") if s]
    msa = next((s for s in segments if s.startswith("MSA")), None)
    if msa is None:
        raise MllpError("the reply has no MSA segment: not an HL7 ACK")
    fields = msa.split("|")
    code = fields[1] if len(fields) > 1 else ""
    control_id = fields[2] if len(fields) > 2 else ""
    message_text = fields[3] if len(fields) > 3 else ""
    err = next((s for s in segments if s.startswith("ERR")), None)
    if err and not message_text:
        message_text = err
    return Ack(code=code, control_id=control_id, text=message_text, raw=text)


def send_message(host: str, port: int, message: str, *, timeout_s: float = 30.0) -> Ack:
    """Send one message and wait for its ACK. Raises MllpError on any transport problem.

    The caller decides what an AE/AR means; this function only reports it.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(frame(message))
            return parse_ack(read_frame(sock))
    except (OSError, TimeoutError) as exc:  # refused, reset, timed out
        raise MllpError(f"{host}:{port}: {exc.__class__.__name__}: {exc}") from exc
