"""What the archive-format readers (GE MUSE, Philips and HL7 aECG XML, SCP-ECG) share.

    read_bounded(path)            the file's bytes, refused above MAX_FILE_BYTES
    parse_xml(path)               the root element, parsed with defusedxml (no entities, no DTD fetch)
    local_name(element)           a tag without its namespace
    decode_base64(text, ...)      base64 to bytes, the decoded size checked BEFORE decoding
    check_count(what, n, limit)   one size check, in one wording, before anything is allocated
    measurement(value, key)       a device measurement in ms/deg/bpm, or None for a non-value

The limits are checked before anything is decoded or allocated, so a hostile or broken file
costs at most what the limits allow. They live here until `ingest/readers/limits.py` (the
project-wide hard limits) lands; then these names become imports from there.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Any

from ingest.errors import IngestError

MAX_FILE_BYTES = 64 * 1024 * 1024  # a 12-lead archive file is well under 2 MB
MAX_DECODED_BYTES = 32 * 1024 * 1024  # one decoded or decompressed block
MAX_SAMPLES_PER_LEAD = 600_000  # 10 minutes at 1000 Hz: a resting ECG is 10 s
MAX_CHANNELS = 64


def check_count(what: str, count: int, limit: int, path: str | Path) -> None:
    """Raise `IngestError` when `count` of `what` exceeds `limit` (or is negative)."""
    if count < 0 or count > limit:
        raise IngestError(path, f"{what} is {count}, beyond the limit of {limit}")


def read_bounded(path: Path) -> bytes:
    """The whole file, refused before reading when it is larger than `MAX_FILE_BYTES`."""
    size = path.stat().st_size
    check_count("file size in bytes", size, MAX_FILE_BYTES, path)
    return path.read_bytes()


def parse_xml(path: Path) -> Any:
    """The root element of an XML file. defusedxml refuses entity tricks (billion laughs,
    external entities); a file that does not parse is an `IngestError` naming the position."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, fromstring

    data = read_bounded(path)
    try:
        return fromstring(data)
    except ParseError as exc:
        raise IngestError(path, f"not well-formed XML ({exc})") from exc
    except DefusedXmlException as exc:
        raise IngestError(path, f"XML refused for safety ({type(exc).__name__})") from exc


def local_name(element: Any) -> str:
    """`{urn:hl7-org:v3}sequence` -> `sequence`."""
    tag = element.tag if isinstance(element.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


_WHITESPACE = re.compile(rb"\s+")


def decode_base64(text: str | None, what: str, path: str | Path, max_bytes: int = MAX_DECODED_BYTES) -> bytes:
    """Strict base64 (line breaks allowed) to bytes; the size is checked before decoding."""
    raw = _WHITESPACE.sub(b"", (text or "").encode("ascii", "replace"))
    check_count(f"{what}: decoded size in bytes", len(raw) * 3 // 4, max_bytes, path)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IngestError(path, f"{what}: invalid base64 ({exc})") from exc


def measurement(value: float | None, key: str) -> float | None:
    """A device's global measurement, or None when the value means "not measured".

    Durations and rates of 0 or beyond 5 s are a device's way of saying "none" (GE and
    Philips also write 9999 or -1); axes outside -180..360 likewise (GE writes 999).
    """
    if value is None:
        return None
    if key.endswith("_deg"):
        return value if -180.0 <= value <= 360.0 else None
    return value if 0.0 < value < 5000.0 else None


def to_float(text: str | None) -> float | None:
    """A number from an XML text or attribute; None for empty or non-numeric text."""
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None
