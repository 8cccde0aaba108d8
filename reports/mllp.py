"""MLLP: how HL7 v2 messages travel over TCP to an interface engine, and how ACKs come back.

A frame is  0x0B  message  0x1C 0x0D  (segments inside end with 0x0D). We send one
message per frame and wait for exactly one ACK frame before the next; an ACK frame that ends
at 0x1C without the 0x0D is accepted (some engines send it so). The bytes are in the
destination's character set (`encode`), and MSH-18 names that set.

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
FILE_SEPARATOR = b"\x1c"  # the end of a frame; the 0x0D after it is often left out by engines

# HL7 table 0211 (MSH-18) names and the Python codecs that write those bytes.
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "iso8859-1", "8859/2": "iso8859-2", "8859/3": "iso8859-3", "8859/4": "iso8859-4",
    "8859/5": "iso8859-5", "8859/6": "iso8859-6", "8859/7": "iso8859-7", "8859/8": "iso8859-8",
    "8859/9": "iso8859-9", "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}


class MllpError(Exception):
    """The connection failed, timed out, or the peer answered something that is not an ACK."""


class UnencodableMessage(ValueError):
    """The message holds a character the destination's character set cannot carry."""


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA/CA accepted, AE/CE error, AR/CR rejected
    control_id: str  # MSA-2: must echo the MSH-10 we sent
    text: str  # MSA-3 / ERR text, when the engine gave one
    raw: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def _segments(message: str) -> str:
    body = message.replace("\r\n", "\r").replace("\n", "\r")
    return body if body.endswith("\r") else body + "\r"


def with_charset(message: str, charset: str) -> str:
    """The message with MSH-18 (character set) set to `charset` (an HL7 table 0211 name)."""
    segments = _segments(message).split("\r")
    msh = segments[0]
    if not msh.startswith("MSH") or len(msh) < 4:
        raise ValueError("the message does not start with an MSH segment")
    fields = msh.split(msh[3])  # MSH-1, the field separator, is the 4th character
    fields += [""] * max(0, 18 - len(fields))  # fields[n - 1] is MSH-n
    fields[17] = charset
    segments[0] = msh[3].join(fields)
    return "\r".join(segments)


def encode(message: str, charset: str = "UNICODE UTF-8") -> bytes:
    """The message's bytes in `charset`, with MSH-18 saying so: what is on the wire and what the
    message claims always agree. Raises `UnencodableMessage` naming the first character and
    segment the character set cannot carry (nothing is replaced or dropped silently)."""
    if charset not in CHARSETS:
        raise ValueError(f"unknown HL7 character set {charset!r}; known: {', '.join(CHARSETS)}")
    text = with_charset(message, charset)
    try:
        return text.encode(CHARSETS[charset])
    except UnicodeEncodeError as exc:
        segment = text[: exc.start].rsplit("\r", 1)[-1][:3]
        raise UnencodableMessage(f"character U+{ord(text[exc.start]):04X} in {segment} cannot be sent in "
                                 f"{charset}") from exc


def frame(message: str | bytes) -> bytes:
    """Wrap one message in an MLLP frame: text is sent as UTF-8 (segments separated by \\r);
    bytes (from `encode`) are sent as they are."""
    body = message if isinstance(message, bytes) else _segments(message).encode("utf-8")
    return START_BLOCK + body + END_BLOCK


def read_frame(sock: socket.socket, max_bytes: int = 1 << 20, encoding: str = "utf-8") -> str:
    """Read bytes until a whole MLLP frame has arrived; return its message text.

    The frame ends at 0x1C: the 0x0D the standard puts after it is not waited for, since
    some engines leave it out (their ACK would otherwise be taken as no ACK at all)."""
    buffer = b""
    while FILE_SEPARATOR not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise MllpError("connection closed before a complete MLLP frame arrived")
        buffer += chunk
        if len(buffer) > max_bytes:
            raise MllpError("MLLP frame larger than the allowed size")
    start = buffer.find(START_BLOCK)
    end = buffer.index(FILE_SEPARATOR)
    if start < 0 or start > end:
        raise MllpError("MLLP frame without a start block")
    return buffer[start + 1: end].decode(encoding, errors="replace")


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


def send_message(host: str, port: int, message: str | bytes, *, timeout_s: float = 30.0,
                 charset: str = "UNICODE UTF-8") -> Ack:
    """Send one message and wait for its ACK. Raises MllpError on any transport problem.

    `message` as text is sent as UTF-8; as bytes (from `encode(message, charset)`) as is, and
    the ACK is read in the same `charset`. The caller decides what an AE/AR means; this
    function only reports it.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(frame(message))
            return parse_ack(read_frame(sock, encoding=CHARSETS.get(charset, "utf-8")))
    except (OSError, TimeoutError) as exc:  # refused, reset, timed out
        raise MllpError(f"{host}:{port}: {exc.__class__.__name__}: {exc}") from exc
