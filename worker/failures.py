"""What went wrong in a stage, and what to do about it (worker/leases.py, rule 6).

    database_errors()          the database could not be reached: wait for it, then carry on
    retry_later_reason(exc)    a passing condition (disk full, read-only volume, broker down):
                               "disk full: ..." -> free the study, retry after a backoff
    unreadable_reason(exc)     a reader or preparation crashed on this file: the quarantine reason
    error_text(stage, exc)     anything else: the `failed` reason (a bug; retrying repeats it)

Texts stored and audited never quote another library's message (it may hold patient data
read from the file): they give the error type and where in our code it happened.
"""

from __future__ import annotations

import errno
import traceback
from pathlib import Path

from ingest.errors import IngestError

_REPO = Path(__file__).resolve().parent.parent
# errno values that mean "the volume cannot take writes now", and how to say it.
_FULL_VOLUME = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only volume"}


def database_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the database could not be reached (or dropped the connection)."""
    import sqlalchemy.exc

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError)


def _broker_errors() -> tuple[type[BaseException], ...]:
    import kombu.exceptions
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError)


def retry_later_reason(exc: BaseException) -> str | None:
    """Why this error will likely pass by itself (then retry later), or None."""
    if isinstance(exc, OSError) and exc.errno in _FULL_VOLUME:
        where = f" writing {Path(exc.filename).parent}" if exc.filename else ""
        return f"{_FULL_VOLUME[exc.errno]}{where}: retrying until there is room"
    if isinstance(exc, _broker_errors()):
        return f"message broker unreachable ({type(exc).__name__}): retrying"
    return None


def where_in_our_code(exc: BaseException) -> str:
    """The innermost frame of the traceback inside this repository, as "path:line" (or "")."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename)
        if path.is_relative_to(_REPO) and not any(part.startswith(".venv") for part in path.parts):
            return f"{path.relative_to(_REPO)}:{frame.lineno}"
    return ""


def unreadable_reason(exc: BaseException) -> str:
    """The quarantine reason for a file a reader or preparation crashed on (not an IngestError)."""
    if isinstance(exc, IngestError):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "too large to process: reading or preparing it ran out of memory"
    where = where_in_our_code(exc)
    return (f"could not be read or prepared: {type(exc).__name__}{' at ' + where if where else ''} "
            "(not a known problem of the format; the worker log has the details)")


def error_text(stage: str, exc: BaseException) -> str:
    """A `failed` reason as stored and audited: the stage, the error type and where it happened.
    The messages of our own errors are kept; other libraries' are not (they may quote values)."""
    from reports.store import StoreError

    if isinstance(exc, (StoreError, IngestError)):
        text = str(exc.reason) if isinstance(exc, IngestError) else str(exc)
        return f"{stage} failed: {type(exc).__name__}: {text[:300]}"
    where = where_in_our_code(exc)
    return f"{stage} failed: {type(exc).__name__}{' at ' + where if where else ''} (see the worker log)"
