"""Where HL7 reports go: the configured interface engines (MLLP receivers) and their rules.

One `HL7Destination` per receiving system, read from `ECGWL_HL7_DESTINATIONS` (a JSON list)
by `worker.settings.Settings` and passed to `reports.delivery`:

    [{"name": "his", "host": "10.0.0.5", "port": 2575, "drafts": false},
     {"name": "cardio-archive", "host": "10.0.0.9", "port": 6661, "on_ae": "hold"}]

A bare name ("his") is still accepted, as the setting used to be a list of names: it is a
destination with every default and no address yet, so rows are queued for it but
`ecg-worklist deliver` refuses to start until it has a host and port.

Unknown keys are refused: a typo such as "draft": false must not silently send drafts.
This module holds no secrets and opens no connections; it is plain pydantic.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OnRefusal(StrEnum):
    """What to do when the receiver answers AE (error) or AR (reject)."""

    RETRY = "retry"  # try again later with backoff (the receiver's problem may be passing)
    HOLD = "hold"  # stop and wait for a person (shown on the web page, released by "retry now")


class HL7Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The name outbox rows carry (OutboxItem.destination); keep it stable once rows exist.
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    # True: machine drafts (preliminary, OBR-25 P/R) go out too. False: only what a
    # cardiologist did (signed F, corrected C, rejected X); drafts are recorded as not sent.
    drafts: bool = True
    ack_timeout_seconds: float = Field(default=30.0, gt=0)  # connect + send + wait for the ACK
    on_ae: OnRefusal = OnRefusal.RETRY  # AE/CE: often transient (the engine's own backend is down)
    on_ar: OnRefusal = OnRefusal.HOLD  # AR/CR: usually the message itself; resending will not help
    retry_base_seconds: float = Field(default=30.0, gt=0)  # first retry after this long, then doubling
    retry_max_seconds: float = Field(default=1800.0, gt=0)  # ... up to this long between attempts
    # The retry ceiling: after this many attempts without delivery a message stops retrying and
    # is held for a person (state `error`, shown on the web page and counted in the metrics).
    # With the default backoff, 20 attempts take about 7 hours.
    max_attempts: int = Field(default=20, ge=1)
    # The character set of the bytes on the wire, an HL7 table 0211 name; MSH-18 is set to it.
    # A message with a character the set cannot carry is held for a person, never mangled.
    charset: Literal["UNICODE UTF-8", "ASCII", "8859/1", "8859/2", "8859/3", "8859/4", "8859/5", "8859/6",
                     "8859/7", "8859/8", "8859/9", "8859/15"] = "UNICODE UTF-8"

    @property
    def has_address(self) -> bool:
        return bool(self.host) and self.port is not None

    def takes(self, report_status: str) -> bool:
        """Does this receiver want a report version of this status (`ReportStatus` value)?"""
        return self.drafts or report_status != "draft"

    def on_refusal(self, ack_code: str) -> OnRefusal:
        """The policy for a refusing ACK code (AR/CR reject, anything else an error)."""
        return self.on_ar if ack_code in ("AR", "CR") else self.on_ae

    def retry_delay(self, attempts: int) -> dt.timedelta:
        """How long to wait after the `attempts`-th failed attempt (1, 2, ...): base * 2^(n-1), capped."""
        exponent = min(max(attempts - 1, 0), 32)  # 2**32 * base is past any sane cap already
        return dt.timedelta(seconds=min(self.retry_base_seconds * 2**exponent, self.retry_max_seconds))


def parse_destination(value: object) -> object:
    """Accept the old form (a bare name) beside the object form; pydantic validates the rest."""
    return {"name": value} if isinstance(value, str) else value


def check_unique_names(destinations: list[HL7Destination]) -> list[HL7Destination]:
    names = [d.name for d in destinations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"HL7 destination names must be unique; repeated: {', '.join(duplicates)}")
    return destinations
