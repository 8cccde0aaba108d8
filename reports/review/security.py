"""Passwords, login lock-out, session tokens and CSRF tokens for the review web app.

- Passwords are hashed with argon2id (argon2-cffi's defaults follow RFC 9106's
  recommendations); a hash is re-computed on login when the parameters changed.
- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; the
  server keeps only its SHA-256, so a copy of the database cannot be replayed as a login.
- Every session has its own CSRF token; every form carries it and every POST checks it
  with a constant-time comparison.
- After `MAX_FAILED_LOGINS` failures in a row an account is locked for `LOCKOUT_MINUTES`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from reports.db import Role

__all__ = ["Role", "MAX_FAILED_LOGINS", "LOCKOUT_MINUTES", "SESSION_HOURS", "hash_password", "check_password",
           "password_needs_rehash", "is_locked", "after_failed_login", "new_token", "token_digest", "tokens_match"]

MAX_FAILED_LOGINS = 5
LOCKOUT_MINUTES = 15
SESSION_HOURS = 12

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise ValueError("a password needs at least 10 characters")
    return _hasher.hash(password)


def check_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def is_locked(locked_until: dt.datetime | None, now: dt.datetime) -> bool:
    return locked_until is not None and _aware(locked_until) > now


def after_failed_login(failed_logins: int, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """The new failure count and, when it reaches the limit, until when the account is locked."""
    failed = failed_logins + 1
    if failed >= MAX_FAILED_LOGINS:
        return 0, now + dt.timedelta(minutes=LOCKOUT_MINUTES)
    return failed, None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_match(expected: str | None, given: str | None) -> bool:
    # Bytes, not str: compare_digest raises TypeError on non-ASCII text, and a form field
    # is whatever the client sent.
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite gives naive datetimes back; everything here is stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
