"""One watcher per inbox: a lock per inbox folder, so two `ecg-worklist watch` never scan the same one.

    locks = InboxLocks.create(settings, engine)    # in `watch`, once
    held = locks.refresh()                          # every scan: the inboxes this watcher may scan now
    locks.close()                                   # releases them (so does the process ending)

A second watcher started on the same inbox (a rolling update, a node that comes back, a
second compose service by mistake) stands by: it logs once who holds the inbox, checks
every scan, and takes over within one poll when the holder stops or dies. Two inboxes are
two locks, so watchers on different inboxes run side by side.

How the lock is held:
- Postgres: a session-level advisory lock (`pg_try_advisory_lock`) on a connection kept
  for the watcher's life. Postgres frees it when that connection ends, however the process
  ends (SIGKILL, node lost: once the server notices the TCP connection is gone). Every
  refresh checks the connection with a `SELECT 1`; a broken connection means the locks are
  gone (the server may have restarted), so they are taken again or the watcher stands by.
  The lock's name is the inbox's absolute path: mount a shared inbox at the same path on
  every host (the manifests in deploy/ do).
- SQLite (the embedded single-host default): an exclusive `flock` on a file per inbox under
  `<data_dir>/locks/`, which the kernel frees when the process ends.

The lock keeps two watchers from doing the same work; it is not what keeps the data right.
Taking a file stays safe even if a lock were lost between a check and a scan: the study is
unique by content hash and the inbox file is only removed once archived.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa

log = logging.getLogger(__name__)

APPLICATION_NAME = "ecg-worklist watch"


def inbox_lock_key(inbox: Path) -> int:
    """The advisory lock key of an inbox: 64 bits of the SHA-256 of its absolute path."""
    digest = hashlib.sha256(b"ecg-worklist inbox\0" + os.fsencode(inbox.resolve())).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LockBackend(Protocol):
    def try_lock(self, inbox: Path) -> bool: ...

    def still_held(self) -> bool:
        """False when every lock was lost (the connection broke); the caller then takes them again."""
        ...

    def holder(self, inbox: Path) -> str | None:
        """Who holds the inbox, for the log (host and process), when it can be known."""
        ...

    def release_all(self) -> None: ...


@dataclass
class PostgresLocks:
    """Session advisory locks on one connection of its own (not from the pool)."""

    engine: sa.Engine
    _connection: sa.Connection | None = field(default=None, repr=False)

    def _conn(self) -> sa.Connection:
        if self._connection is None:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            # Shown in pg_stat_activity, so a standby (and an administrator) sees who holds an inbox.
            connection.execute(sa.text("SELECT set_config('application_name', :name, false)"),
                               {"name": f"{APPLICATION_NAME} {socket.gethostname()}:{os.getpid()}"})
            self._connection = connection
        return self._connection

    def try_lock(self, inbox: Path) -> bool:
        taken = self._conn().execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": inbox_lock_key(inbox)})
        return bool(taken.scalar_one())

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.DBAPIError:
            self._drop()
            return False

    def holder(self, inbox: Path) -> str | None:
        key = inbox_lock_key(inbox)
        # pg_locks splits a bigint advisory key into classid (high 32 bits) and objid (low 32 bits).
        row = self._conn().execute(sa.text(
            "SELECT a.application_name, a.client_addr::text FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = :high AND l.objid = :low"),
            {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF}).first()
        if row is None:
            return None
        name, address = row
        return f"{name or 'unknown'}" + (f" from {address}" if address else "")

    def release_all(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            except sa.exc.DBAPIError:
                pass  # the connection is gone, and its locks with it
            self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            except Exception:  # closing a broken connection may raise again; it is gone either way
                pass
            self._connection = None


@dataclass
class FileLocks:
    """flock on one file per inbox, for the embedded SQLite mode (one host)."""

    folder: Path
    _files: dict[Path, int] = field(default_factory=dict, repr=False)

    def _path(self, inbox: Path) -> Path:
        return self.folder / f"inbox-{inbox_lock_key(inbox) & 0xFFFFFFFFFFFFFFFF:016x}.lock"

    def try_lock(self, inbox: Path) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path(inbox), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()}:{os.getpid()}\n".encode())
        self._files[inbox] = fd
        return True

    def still_held(self) -> bool:
        return True  # a flock lasts as long as its file descriptor

    def holder(self, inbox: Path) -> str | None:
        try:
            text = self._path(inbox).read_text().strip()
        except OSError:
            return None
        return f"{APPLICATION_NAME} {text}" if text else None

    def release_all(self) -> None:
        for fd in self._files.values():
            os.close(fd)  # closing the descriptor releases its flock
        self._files.clear()


@dataclass
class InboxLocks:
    """The inboxes this watcher holds; the others it checks again on every refresh."""

    inboxes: list[Path]
    backend: LockBackend
    held: list[Path] = field(default_factory=list)
    _standby_logged: set[Path] = field(default_factory=set, repr=False)

    @classmethod
    def create(cls, inboxes: list[Path], engine: sa.Engine, data_dir: Path) -> InboxLocks:
        backend: LockBackend
        if engine.dialect.name == "postgresql":
            backend = PostgresLocks(engine)
        else:
            backend = FileLocks(data_dir / "locks")
        return cls(inboxes=[inbox.resolve() for inbox in inboxes], backend=backend)

    def refresh(self) -> list[Path]:
        """Take every inbox that is free now; returns the inboxes held, in configuration order."""
        if self.held and not self.backend.still_held():
            log.warning("the database connection holding the inbox locks was lost; taking them again")
            self.held = []
        for inbox in self.inboxes:
            if inbox in self.held:
                continue
            try:
                taken = self.backend.try_lock(inbox)
            except sa.exc.DBAPIError as exc:  # the database is down: scan nothing, try again next poll
                log.warning("could not take the lock of inbox %s (%s); retrying", inbox.name, type(exc).__name__)
                continue
            if taken:
                self.held.append(inbox)
                log.info("inbox %s: lock taken, watching it", inbox.name)
                self._standby_logged.discard(inbox)
            elif inbox not in self._standby_logged:
                self._standby_logged.add(inbox)
                log.info("inbox %s: another watcher holds it (%s); standing by", inbox.name,
                         self._holder(inbox) or "holder unknown")
        order = {inbox: n for n, inbox in enumerate(self.inboxes)}
        self.held.sort(key=order.__getitem__)
        return list(self.held)

    def _holder(self, inbox: Path) -> str | None:
        try:
            return self.backend.holder(inbox)
        except sa.exc.DBAPIError:
            return None

    def close(self) -> None:
        self.backend.release_all()
        self.held = []
