"""Accounts and logins of the sign-off web app, over the `users` and `web_sessions` tables.

    add_user, list_users, set_active      what `ecg-worklist users ...` and an admin do
    unlock                                end a lock-out before its time (an admin, or `users unlock`)
    login                                 password check with lock-out; a new server-side session
    session_for_token, logout             what every request does with its cookie

Every account change and every login outcome is an audit row (actor, user name, role,
outcome). Passwords, hashes and session tokens never reach the audit trail or a log. A
user name typed at the login form that matches no account is not recorded either: people
type their password into the wrong box.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager

from reports import audit
from reports.db import Role, User, WebSession, utcnow
from reports.review import security

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# A well-formed hash of nothing anyone knows: unknown user names cost the same time as known ones.
_DUMMY_HASH = security.hash_password("not-a-real-password-for-timing")


class AccountError(ValueError):
    pass


class LoginOutcome(StrEnum):
    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"  # unknown user, wrong password, or disabled account
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    outcome: LoginOutcome
    user: User | None = None
    token: str | None = None  # the raw session token, for the cookie only
    session: WebSession | None = None
    locked_until: dt.datetime | None = None


def _audit_user(session: Session, user: User, action: str, actor: str, **details: object) -> None:
    audit.append(session, actor=actor, action=action, entity_type="user", entity_id=user.id,
                 details={"username": user.username, "role": user.role, **details})


def get_user(session: Session, username: str) -> User | None:
    return session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()


def add_user(
    session: Session, username: str, role: Role | str, password: str, *, actor: str,
    display_name: str | None = None,
) -> User:
    """A new account (AccountError for a bad or taken name, ValueError for a short password)."""
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise AccountError("a user name is 2-64 characters: lower-case letters, digits, '.', '_', '-'")
    role = Role(role)
    if get_user(session, username) is not None:
        raise AccountError(f"user {username!r} exists already")
    user = User(username=username, display_name=(display_name or None), role=role.value,
                password_hash=security.hash_password(password), active=True, failed_logins=0,
                created_at=utcnow())
    session.add(user)
    session.flush()
    _audit_user(session, user, "user.added", actor)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.execute(sa.select(User).order_by(User.username)).scalars())


def set_active(session: Session, username: str, active: bool, *, actor: str) -> User:
    """Enable or disable an account; disabling ends all of its sessions at once."""
    user = get_user(session, username)
    if user is None:
        raise AccountError(f"no user {username!r}")
    if user.active != active:
        user.active = active
        if not active:
            session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id))
        session.flush()
        _audit_user(session, user, "user.enabled" if active else "user.disabled", actor)
    return user


def unlock(session: Session, username: str, *, actor: str) -> User:
    """End a lock-out now and clear the failure count (audited when there was something to clear).

    The person who locked themselves out asked an administrator: the admin page's Unlock
    button and `ecg-worklist users unlock NAME` both come here.
    """
    user = get_user(session, username.strip().lower())
    if user is None:
        raise AccountError(f"no user {username!r}")
    if user.locked_until is not None or user.failed_logins:
        was_locked_until = user.locked_until
        user.locked_until, user.failed_logins = None, 0
        session.flush()
        _audit_user(session, user, "user.unlocked", actor,
                    was_locked_until=was_locked_until.isoformat() if was_locked_until else None)
    return user


def login(
    session: Session, username: str, password: str, *, session_hours: float, now: dt.datetime | None = None,
) -> LoginResult:
    """Check the password, count failures, lock after `MAX_FAILED_LOGINS`; a session on success."""
    now = now or utcnow()
    user = get_user(session, username.strip().lower())
    if user is None or not user.active:
        security.check_password(_DUMMY_HASH, password)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    # Row lock: two parallel guesses must both be counted.
    session.execute(sa.select(User.id).where(User.id == user.id).with_for_update())
    session.refresh(user)
    if security.is_locked(user.locked_until, now):
        _audit_user(session, user, "user.login_refused", "web", reason="locked")
        return LoginResult(LoginOutcome.LOCKED, locked_until=user.locked_until)
    if not security.check_password(user.password_hash, password):
        user.failed_logins, locked_until = security.after_failed_login(user.failed_logins, now)
        if locked_until is not None:
            user.locked_until = locked_until
            _audit_user(session, user, "user.locked", "web", minutes=security.LOCKOUT_MINUTES)
            return LoginResult(LoginOutcome.LOCKED, locked_until=locked_until)
        _audit_user(session, user, "user.login_failed", "web", failed_logins=user.failed_logins)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    if security.password_needs_rehash(user.password_hash):
        user.password_hash = security.hash_password(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    token = security.new_token()
    web_session = WebSession(token_digest=security.token_digest(token), user_id=user.id,
                             csrf_token=security.new_token(), created_at=now,
                             expires_at=now + dt.timedelta(hours=session_hours))
    session.add(web_session)
    # Expired sessions of this user go now, so the table stays the size of who is logged in.
    session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id, WebSession.expires_at < now))
    session.flush()
    _audit_user(session, user, "user.login", f"user:{user.username}")
    return LoginResult(LoginOutcome.OK, user=user, token=token, session=web_session)


def session_for_token(session: Session, token: str | None, *, now: dt.datetime | None = None) -> WebSession | None:
    """The live session of a cookie's token (None for no, unknown, expired, or disabled)."""
    if not token:
        return None
    now = now or utcnow()
    found = session.execute(
        sa.select(WebSession).join(User).where(
            WebSession.token_digest == security.token_digest(token), WebSession.expires_at > now,
            User.active.is_(True),
        ).options(contains_eager(WebSession.user))  # the account comes with it: one query per request
    ).scalar_one_or_none()
    return found


def logout(session: Session, web_session: WebSession) -> None:
    user = web_session.user
    session.delete(web_session)
    session.flush()
    _audit_user(session, user, "user.logout", f"user:{user.username}")
