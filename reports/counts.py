"""How many studies are where, read from the counters the database keeps: O(1) in the number of studies.

    counts_by_state(session)                     {state: n}, every state listed (metrics, progress)
    count_studies(session, states, ...)          {(state, critical): n} under the queue's filters
    counted_differences(session)                 where the counters disagree with the studies (checks)

The counters (`study_counts`, `study_counts_by_day`) are kept by triggers on `studies` in the
transaction of every change (migrations/versions/0005_study_counts.py says how), so a count
read here is exactly what a GROUP BY over the studies would say at the same moment, for the
price of reading a few hundred small rows instead of every study. `counted_differences` does
that GROUP BY, for the tests and for anyone who wants to check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from reports.db import Study, StudyCount, StudyCountByDay, StudyState

DayKind = Literal["received", "acquired"]


def counts_by_state(session: Session) -> dict[str, int]:
    """How many studies are in each state (every state listed, 0 where none)."""
    counts = {state.value: 0 for state in StudyState}
    query = sa.select(StudyCount.state, sa.func.sum(StudyCount.n)).group_by(StudyCount.state)
    for state, number in session.execute(query):
        counts[state] = int(number)
    return counts


def count_studies(
    session: Session, states: Iterable[str], *, source_format: str | None = None, origin: str | None = None,
    day_kind: DayKind = "received", day_from: dt.date | None = None, day_to: dt.date | None = None,
) -> dict[tuple[str, bool], int]:
    """{(state, critical): n} of the studies in `states`, of one source format and origin when
    given, received (or acquired, by `day_kind`) on UTC days `day_from`..`day_to` inclusive."""
    dated = day_from is not None or day_to is not None
    table = StudyCountByDay if dated else StudyCount
    clauses: list[sa.ColumnElement[bool]] = [table.state.in_(list(states))]
    if source_format is not None:
        clauses.append(table.source_format == source_format)
    if origin is not None:
        clauses.append(table.origin == origin)
    if dated:
        clauses.append(StudyCountByDay.day_kind == day_kind)
        if day_from is not None:
            clauses.append(StudyCountByDay.day >= day_from)
        if day_to is not None:
            clauses.append(StudyCountByDay.day <= day_to)
    query = (sa.select(table.state, table.critical, sa.func.sum(table.n))
             .where(*clauses).group_by(table.state, table.critical))
    return {(state, bool(critical)): int(number) for state, critical, number in session.execute(query) if number}


def _day(column: sa.ColumnElement[dt.datetime], dialect: str) -> sa.ColumnElement[dt.date]:
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)
    return sa.func.date(column)


def counted_differences(session: Session) -> list[str]:
    """Every counter that differs from a GROUP BY over the studies (an empty list: they agree).
    Reads every study: for tests and checks, never for a page."""
    dialect = session.get_bind().dialect.name
    key = (Study.state, Study.critical, Study.source_format, sa.func.coalesce(Study.origin, ""))
    problems: list[str] = []

    def by_key(rows: Iterable[sa.Row]) -> dict[tuple[str, ...], int]:
        """(day, state, critical, source_format, origin) as text -> n; day '' when not by day."""
        out: dict[tuple[str, ...], int] = {}
        for day, state, critical, source_format, origin, n in rows:
            out[(str(day or "")[:10], state, str(bool(critical)), source_format, origin)] = int(n)
        return out

    def compare(name: str, kept: dict[tuple[str, ...], int], exact: dict[tuple[str, ...], int]) -> None:
        for item in sorted(set(kept) | set(exact)):
            if kept.get(item, 0) != exact.get(item, 0):
                problems.append(f"{name} {item}: counter {kept.get(item, 0)}, studies {exact.get(item, 0)}")

    no_day = sa.literal("")
    compare("study_counts",
            by_key(session.execute(sa.select(no_day, StudyCount.state, StudyCount.critical,
                                             StudyCount.source_format, StudyCount.origin, StudyCount.n))),
            by_key(session.execute(sa.select(no_day, *key, sa.func.count()).group_by(*key))))
    for kind, column in (("received", Study.created_at), ("acquired", Study.acquired_at)):
        day = _day(column, dialect)
        compare(f"study_counts_by_day {kind}",
                by_key(session.execute(
                    sa.select(StudyCountByDay.day, StudyCountByDay.state, StudyCountByDay.critical,
                              StudyCountByDay.source_format, StudyCountByDay.origin, StudyCountByDay.n)
                    .where(StudyCountByDay.day_kind == kind))),
                by_key(session.execute(sa.select(day, *key, sa.func.count()).where(column.is_not(None))
                                       .group_by(day, *key))))
    return problems
