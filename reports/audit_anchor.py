"""Signed checkpoints of the audit chain's head, kept outside the database.

The chain in `reports.audit` shows any change to a row, unless whoever changed it also
recomputed the hashes after it, which anyone who can write the table can do (the hash
function is in this repository). So, every few minutes, the head of the chain (the last
event's id and hash) is signed with HMAC-SHA256 under a key that lives only in the
application's environment (`ECGWL_AUDIT_CHECKPOINT_KEY`), never in the database, and the
signed line is appended to a file outside the database (`ECGWL_AUDIT_CHECKPOINT_PATH`):

    {"at": "2025-01-02T03:04:05Z", "key_id": "3f2a...", "last_hash": "9c1e...", "last_id": 1234,
     "mac": "b7d0...", "prev_mac": "51aa...", "v": 1}

    write_checkpoint(session, path, key)      verify what was added since the last checkpoint,
                                              then append and fsync one signed line (None: no change)
    read_checkpoints(path, key)               every line, each signature and link checked
    verify_with_checkpoints(session, path, key)   `audit verify`: the chain, and every checkpoint's
                                              event still carrying the hash that was signed

What it catches, against the last checkpoint: a row changed and the rest re-hashed; rows
removed from the end and the head moved back; the whole table rebuilt. What it cannot: a
change to events written after the last checkpoint (up to one interval, 5 minutes by
default); anyone holding the key (they can sign anything); lines removed from the end of the
checkpoint file itself (keep it append-only on another machine or volume: `chattr +a`, a
WORM share, a log host). Each line carries the previous line's MAC, so a line removed or
edited in the middle of the file is found too. A checkpoint is only written after the
events added since the previous one have been verified, so a chain broken in between is
reported (and never signed) rather than anchored.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.orm import Session

from reports.audit import Anchor, VerifyResult, verify_chain
from reports.db import AuditHead

FORMAT_VERSION = 1
_FIRST_PREV_MAC = "0" * 64


class CheckpointError(Exception):
    """The checkpoint file is damaged or forged, or the chain cannot be signed as it is."""


class Checkpoint(BaseModel):
    v: int = FORMAT_VERSION
    at: str
    last_id: int
    last_hash: str
    prev_mac: str
    key_id: str
    mac: str = ""

    def signed_text(self) -> bytes:
        content = self.model_dump(exclude={"mac"})
        return json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def line(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")) + "\n"


def key_id(key: bytes) -> str:
    """A short public name for a key, so that a line signed with another key says so."""
    return hashlib.sha256(b"ecg-worklist audit checkpoint key\0" + key).hexdigest()[:16]


def _mac(key: bytes, checkpoint: Checkpoint) -> str:
    return hmac.new(key, checkpoint.signed_text(), hashlib.sha256).hexdigest()


def read_checkpoints(path: Path, key: bytes) -> list[Checkpoint]:
    """Every checkpoint in the file, oldest first; `CheckpointError` at the first line that is
    not valid, not signed with this key, or not linked to the line before it."""
    if not path.exists():
        return []
    checkpoints: list[Checkpoint] = []
    previous_mac = _FIRST_PREV_MAC
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            checkpoint = Checkpoint.model_validate_json(text)
        except ValueError as exc:
            raise CheckpointError(f"{path.name} line {number} is not a checkpoint ({type(exc).__name__})") from exc
        if checkpoint.key_id != key_id(key):
            raise CheckpointError(f"{path.name} line {number} was signed with another key (key id "
                                  f"{checkpoint.key_id}, this key is {key_id(key)})")
        if not hmac.compare_digest(checkpoint.mac, _mac(key, checkpoint)):
            raise CheckpointError(f"{path.name} line {number}: the signature does not match (the line was edited)")
        if checkpoint.prev_mac != previous_mac:
            raise CheckpointError(f"{path.name} line {number} does not follow the line before it (lines were "
                                  "removed or reordered)")
        if checkpoints and checkpoint.last_id < checkpoints[-1].last_id:
            raise CheckpointError(f"{path.name} line {number} names an older event than the line before it")
        checkpoints.append(checkpoint)
        previous_mac = checkpoint.mac
    return checkpoints


def anchors(checkpoints: list[Checkpoint]) -> dict[int, Anchor]:
    """Event id -> the hash its checkpoints recorded (for `verify_chain(anchors=...)`)."""
    return {c.last_id: Anchor(c.last_hash, c.at) for c in checkpoints if c.last_id > 0}


def _append_durably(path: Path, line: str) -> None:
    """Append one line under an exclusive lock and fsync it (and the folder, for a new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, line.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def write_checkpoint(session: Session, path: Path, key: bytes, *, now: dt.datetime | None = None) -> Checkpoint | None:
    """Sign the chain's head and append it to `path`; None when the head has not moved.

    Raises `CheckpointError` (and writes nothing) when the events added since the last
    checkpoint do not verify, or when the checkpoint file itself does not.
    """
    history = read_checkpoints(path, key)
    last = history[-1] if history else None
    head = session.execute(sa.select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).one_or_none()
    if head is None:
        raise CheckpointError("audit_head row is missing")
    if head.last_id == 0 or (last is not None and (last.last_id, last.last_hash) == (head.last_id, head.last_hash)):
        return None
    after = (last.last_id, last.last_hash) if last is not None else None
    result = verify_chain(session, after=after)
    if not result.ok:
        raise CheckpointError(f"not signed: {result.describe()}")
    checkpoint = Checkpoint(
        at=(now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        last_id=result.last_id, last_hash=result.last_hash or "",
        prev_mac=last.mac if last is not None else _FIRST_PREV_MAC, key_id=key_id(key))
    checkpoint.mac = _mac(key, checkpoint)
    _append_durably(path, checkpoint.line())
    return checkpoint


class AnchoredResult(BaseModel):
    """`audit verify`'s answer: the chain walk, and what the checkpoints add to it."""

    chain: VerifyResult
    checkpoints: int
    last_checkpoint_at: str | None = None
    last_checkpoint_id: int | None = None
    problem: str | None = None  # the checkpoint file itself is damaged, forged or missing

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.problem is None

    def describe(self) -> str:
        lines = [self.chain.describe()]
        if self.problem:
            lines.append(f"checkpoints: {self.problem}")
        elif self.checkpoints:
            lines.append(f"checked against {self.checkpoints} signed checkpoint(s) kept outside the database; "
                         f"the last, {self.last_checkpoint_at}, anchors event {self.last_checkpoint_id} "
                         "(events after it are covered by the chain only)")
        return "\n".join(lines)


def verify_with_checkpoints(session: Session, path: Path, key: bytes) -> AnchoredResult:
    """The whole chain, with every checkpoint's event required to carry the hash it signed."""
    try:
        history = read_checkpoints(path, key)
    except CheckpointError as exc:
        return AnchoredResult(chain=verify_chain(session), checkpoints=0, problem=str(exc))
    chain = verify_chain(session, anchors=anchors(history))
    if not history:
        return AnchoredResult(chain=chain, checkpoints=0,
                              problem=f"no checkpoint in {path} yet: the chain is checked against itself only")
    last = history[-1]
    return AnchoredResult(chain=chain, checkpoints=len(history), last_checkpoint_at=last.at,
                          last_checkpoint_id=last.last_id)
