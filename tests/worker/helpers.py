"""Small database readers shared by the pipeline tests."""

from __future__ import annotations

import sqlalchemy as sa

from reports.db import AuditEvent, Report, Study


def studies(engine: sa.Engine) -> list[Study]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(Study).order_by(Study.id)).all())


def study_states(engine: sa.Engine) -> dict[str, str]:
    """{file name: state} of every study."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Study.source_path, Study.state)).all()
    return {path.rsplit("/", 1)[-1]: state for path, state in rows}


def reports(engine: sa.Engine) -> list[tuple[int, int, str, str]]:
    """(study id, version, result status, HL7 message) of every report."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(Report.study_id, Report.version, Report.result_status, Report.hl7_message).order_by(Report.id))]


def audit_actions(engine: sa.Engine, *, entity_type: str | None = None, entity_id: str | int | None = None) -> list[str]:
    query = sa.select(AuditEvent.action).order_by(AuditEvent.id)
    if entity_type is not None:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == str(entity_id))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def audit_details(engine: sa.Engine, action: str) -> list[dict]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(AuditEvent.details).where(AuditEvent.action == action)
                                 .order_by(AuditEvent.id)).scalars())
