"""The sign-off queue: which studies a reviewer sees, in which order, with counts and paging.

Order: critical studies first, then the oldest received first (`created_at`, then id), so
a STEMI that arrived a minute ago is above a normal ECG that waited all night, and within
each group nothing waits forever.

The counts at the top come from counters the database keeps per state, critical flag,
format, origin and day (`reports.counts`), so they cost the same at a million studies as at
a hundred. Paging is by key (a cursor naming the last row shown), never OFFSET: OFFSET makes the
database walk and throw away every earlier row, so page 1,000 of a 100,000-study backlog
would cost a thousand pages. The queue is read as two segments, critical then routine; each
is one range scan of the index `ix_studies_queue (state, critical, created_at, id)` (or
`ix_studies_queue_all` for the all-states view), so every page costs the same.
`benchmarks/review_queue.py` measures it against OFFSET on 100,000 studies.

Search (`search`) finds studies by MRN, name or accession in every reviewable state, newest
first. What was typed goes through `reports.patient_keys.search_key` and is compared, as a
bound parameter (no SQL is built from it), with the indexed key columns: an MRN or accession
that equals or starts with it, a name that starts with it (family name first, "rossi" or
"rossi anna"; two words are also tried the other way round, "anna rossi").
"""

from __future__ import annotations

import base64
import datetime as dt
from enum import StrEnum
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from reports import audit
from reports.counts import count_studies
from reports.db import Study, StudyState
from reports.patient_keys import search_key
from reports.review.config import critical_in
from reports.triage import critical_now, stored_summary


class QueueStatus(StrEnum):
    AWAITING = "awaiting"
    SIGNED = "signed"
    REJECTED = "rejected"
    ALL = "all"


STATES: dict[QueueStatus, tuple[str, ...]] = {
    QueueStatus.AWAITING: (StudyState.AWAITING_SIGNOFF.value,),
    QueueStatus.SIGNED: (StudyState.SIGNED.value,),
    QueueStatus.REJECTED: (StudyState.REJECTED.value,),
    QueueStatus.ALL: (StudyState.AWAITING_SIGNOFF.value, StudyState.SIGNED.value, StudyState.REJECTED.value),
}


class QueueFilters(BaseModel):
    status: QueueStatus = QueueStatus.AWAITING
    source: str | None = None  # source format: dicom, wfdb, pdf
    origin: str | None = None  # the inbox (or "batch") the study came from
    date_from: dt.date | None = None  # inclusive, UTC days
    date_to: dt.date | None = None  # inclusive
    date_on: Literal["received", "acquired"] = "received"


class Cursor(BaseModel):
    """A position in the queue order: the key of one row."""

    critical: bool
    created_at: dt.datetime
    id: int

    def encode(self) -> str:
        text = f"{int(self.critical)}|{self.created_at.isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Cursor | None:
        """The cursor of a URL parameter; None for none or a malformed one (first page)."""
        if not value:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            critical, created_at, study_id = raw.split("|")
            return cls(critical=critical == "1", created_at=dt.datetime.fromisoformat(created_at), id=int(study_id))
        except (ValueError, UnicodeDecodeError, ValidationError):
            return None


class QueueRow(BaseModel):
    study_id: int
    critical: bool
    created_at: dt.datetime
    acquired_at: dt.datetime | None
    source: str
    origin: str | None
    state: str
    patient: str
    labels: list[str]
    flag_count: int
    demonstration: bool
    patient_id: str | None = None
    accession: str | None = None
    triage: str | None = None  # "critical: measured ST elevation II, III, aVF (measured values)" (reports.triage)
    has_signal: bool = True  # False: an image-only study, nothing was measured

    @property
    def cursor(self) -> Cursor:
        return Cursor(critical=self.critical, created_at=self.created_at, id=self.study_id)


class QueuePage(BaseModel):
    rows: list[QueueRow]
    next_cursor: Cursor | None  # the last row, when more follow
    prev_cursor: Cursor | None  # the first row, when more come before


class QueueCounts(BaseModel):
    awaiting: int = 0
    awaiting_critical: int = 0
    signed: int = 0
    rejected: int = 0

    def in_view(self, status: QueueStatus) -> int:
        return {QueueStatus.AWAITING: self.awaiting, QueueStatus.SIGNED: self.signed,
                QueueStatus.REJECTED: self.rejected}.get(status, self.awaiting + self.signed + self.rejected)


# Only what a queue row shows: of the interpretation (with its verbatim text) only the claim
# checks' flags and the demonstration mark are read, by the database, for the rows shown.
_COLUMNS = (Study.id, Study.critical, Study.created_at, Study.acquired_at, Study.source_format, Study.origin,
            Study.state, Study.demographics, Study.labels, Study.triage,
            Study.interpretation["flags"].label("flags"),
            Study.interpretation["is_demonstration"].label("is_demonstration"))


def _filter_clauses(filters: QueueFilters, *, with_status: bool = True) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    if with_status:
        states = STATES[filters.status]
        clauses.append(Study.state == states[0] if len(states) == 1 else Study.state.in_(states))
    if filters.source:
        clauses.append(Study.source_format == filters.source)
    if filters.origin:
        clauses.append(Study.origin == filters.origin)
    column = Study.created_at if filters.date_on == "received" else Study.acquired_at
    if filters.date_from:
        clauses.append(column >= dt.datetime.combine(filters.date_from, dt.time(), dt.UTC))
    if filters.date_to:
        clauses.append(column < dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time(), dt.UTC))
    return clauses


def _segment(
    session: Session, filters: QueueFilters, critical: bool, cursor: Cursor | None, forward: bool, limit: int,
) -> list[Any]:
    """Up to `limit` rows of one segment (critical or routine) after/before `cursor`, in reading order."""
    query = sa.select(*_COLUMNS).where(*_filter_clauses(filters), Study.critical == critical)  # '= true' can use the index; 'IS TRUE' cannot
    key = sa.tuple_(Study.created_at, Study.id)
    if cursor is not None and cursor.critical == critical:
        bound = (cursor.created_at, cursor.id)
        query = query.where(key > bound if forward else key < bound)
    if forward:
        query = query.order_by(Study.created_at, Study.id)
    else:
        query = query.order_by(Study.created_at.desc(), Study.id.desc())
    return list(session.execute(query.limit(limit)).all())


def _walk(session: Session, filters: QueueFilters, cursor: Cursor | None, forward: bool, limit: int) -> list[Any]:
    """Rows strictly after (forward) or before `cursor` in queue order, nearest first."""
    segments = [True, False] if forward else [False, True]
    if cursor is not None:
        # Segments entirely behind the cursor are skipped.
        segments = segments[segments.index(cursor.critical):]
    rows: list[Any] = []
    for critical in segments:
        if len(rows) >= limit:
            break
        rows += _segment(session, filters, critical, cursor, forward, limit - len(rows))
    return rows


def _patient(demographics: dict[str, Any] | None) -> str:
    name = (demographics or {}).get("patient_name") or ""
    return name.replace("^", ", ").strip(", ") or "unknown patient"


def _row(raw: Any) -> QueueRow:
    return QueueRow(
        study_id=raw.id, critical=bool(raw.critical), created_at=raw.created_at, acquired_at=raw.acquired_at,
        source=raw.source_format, origin=raw.origin, state=raw.state, patient=_patient(raw.demographics),
        patient_id=(raw.demographics or {}).get("patient_id"), accession=(raw.demographics or {}).get("accession"),
        labels=list(raw.labels or []), flag_count=len(raw.flags or []), demonstration=bool(raw.is_demonstration),
        triage=stored_summary(raw.triage), has_signal=(raw.triage or {}).get("has_signal", True),
    )


def queue_page(
    session: Session, filters: QueueFilters, *, after: Cursor | None = None, before: Cursor | None = None,
    limit: int = 50,
) -> QueuePage:
    """One page of the queue: after `after` (next), before `before` (previous), or the first.

    One row more than the page is read to know whether another page follows in that
    direction; the other direction is asked only when the page did not start at an end.
    """
    forward = before is None
    cursor = after if forward else before
    raw = _walk(session, filters, cursor, forward=forward, limit=limit + 1)
    more = len(raw) > limit
    raw = raw[:limit] if forward else list(reversed(raw[:limit]))
    rows = [_row(r) for r in raw]
    next_cursor = prev_cursor = None
    if rows:
        behind = cursor is not None and bool(
            _walk(session, filters, rows[0].cursor if forward else rows[-1].cursor, forward=not forward, limit=1))
        has_next, has_prev = (more, behind) if forward else (behind, more)
        next_cursor = rows[-1].cursor if has_next else None
        prev_cursor = rows[0].cursor if has_prev else None
    return QueuePage(rows=rows, next_cursor=next_cursor, prev_cursor=prev_cursor)


def queue_counts(session: Session, filters: QueueFilters) -> QueueCounts:
    """Studies per status (and critical ones awaiting) under the source/origin/date filters,
    from the counters the database keeps (`reports.counts`): the same numbers as a GROUP BY
    over the studies, without reading them."""
    found = count_studies(session, STATES[QueueStatus.ALL], source_format=filters.source, origin=filters.origin,
                          day_kind=filters.date_on, day_from=filters.date_from, day_to=filters.date_to)
    counts = QueueCounts()
    for (state, critical), number in found.items():
        if state == StudyState.AWAITING_SIGNOFF.value:
            counts.awaiting += number
            counts.awaiting_critical += number if critical else 0
        elif state == StudyState.SIGNED.value:
            counts.signed += number
        else:
            counts.rejected += number
    return counts


def study_cursor(session: Session, study_id: int) -> Cursor | None:
    found = session.execute(
        sa.select(Study.critical, Study.created_at, Study.id).where(Study.id == study_id)
    ).one_or_none()
    return None if found is None else Cursor(critical=bool(found.critical), created_at=found.created_at, id=found.id)


def next_awaiting(session: Session, after_study_id: int | None = None) -> int | None:
    """The study to read next: the first awaiting one after `after_study_id` in queue order,
    else the first awaiting one from the top (someone else may have left one behind)."""
    filters = QueueFilters(status=QueueStatus.AWAITING)
    cursor = study_cursor(session, after_study_id) if after_study_id is not None else None
    found = _walk(session, filters, cursor, forward=True, limit=1) if cursor else []
    if not found:
        found = _walk(session, filters, None, forward=True, limit=1)
    found = [row for row in found if row.id != after_study_id]
    return found[0].id if found else None


def previous_awaiting(session: Session, before_study_id: int) -> int | None:
    """The awaiting study just before `before_study_id` in queue order (None at the top)."""
    cursor = study_cursor(session, before_study_id)
    if cursor is None:
        return None
    found = _walk(session, QueueFilters(status=QueueStatus.AWAITING), cursor, forward=False, limit=1)
    return found[0].id if found else None


def sync_critical(session: Session, critical_labels: list[str] | None, *, actor: str, batch: int = 1000) -> int:
    """Re-mark which awaiting drafts are critical under this site's list; the number changed.

    The pipeline marks `critical` from every reader when it interprets (`reports.triage`); a
    site that configures its own list gets the queue re-sorted by it when the web app starts:
    the draft's labels and the protocol reader's second reading by that list, and what the
    measured values found always (a site list never makes a measured STEMI routine).
    One audit row records how many studies changed (no identifiers).
    """
    changed = 0
    last_id = 0
    while True:
        rows = session.execute(
            sa.select(Study.id, Study.labels, Study.critical, Study.triage)
            .where(Study.state == StudyState.AWAITING_SIGNOFF.value, Study.id > last_id)
            .order_by(Study.id).limit(batch)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        for row in rows:
            wanted = critical_now(row.triage, row.labels, critical_labels)
            if wanted != bool(row.critical):
                session.execute(sa.update(Study).where(Study.id == row.id).values(critical=wanted))
                changed += 1
    if changed:
        audit.append(session, actor=actor, action="review.critical_resorted", entity_type="queue", entity_id="awaiting",
                     details={"changed": changed, "site_list": critical_labels is not None})
    return changed


SEARCH_LIMIT = 100


def _prefix(key: str) -> str:
    """A LIKE pattern for "starts with `key`", the wildcards in `key` taken literally."""
    return key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_clause(text: str) -> sa.ColumnElement[bool] | None:
    """The WHERE clause matching `text` as an MRN, accession or name; None when nothing was typed."""
    key = search_key(text)
    if key is None:
        return None
    names = [key]
    words = key.split(" ")
    if len(words) == 2:
        names.append(f"{words[1]} {words[0]}")
    matches = [Study.patient_id_key.like(_prefix(key), escape="\\"),
               Study.accession_key.like(_prefix(key), escape="\\"),
               *(Study.patient_name_key.like(_prefix(name), escape="\\") for name in names)]
    return sa.or_(*matches)


class SearchResult(BaseModel):
    rows: list[QueueRow]
    more: bool  # more than SEARCH_LIMIT matched: only the newest are shown


def search(session: Session, text: str, *, limit: int = SEARCH_LIMIT) -> SearchResult:
    """Reviewable studies whose MRN, accession or name matches `text`, newest first."""
    clause = search_clause(text)
    if clause is None:
        return SearchResult(rows=[], more=False)
    raw = session.execute(
        sa.select(*_COLUMNS).where(clause, Study.state.in_(STATES[QueueStatus.ALL]))
        .order_by(Study.created_at.desc(), Study.id.desc()).limit(limit + 1)
    ).all()
    return SearchResult(rows=[_row(r) for r in raw[:limit]], more=len(raw) > limit)
