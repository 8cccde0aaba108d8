"""Fixtures of the delivery tests: a migrated Postgres per test (the audit chain is verified
when each test ends), report versions made through the store, and destinations pointing
at the test's MLLP listeners."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from ingest.ecg import Demographics
from reports import store
from reports.audit import verify_chain
from reports.db import OutboxItem, Report, utcnow
from reports.destinations import HL7Destination
from reports.hl7_oru import HL7Endpoints, build_oru, new_control_id
from tests.reports_db.helpers import PATIENT, interpreted_study

ENDPOINTS = HL7Endpoints(sending_facility="HOSP", receiving_facility="HIS")
SIGNER = {"signed_by": "jdoe", "signed_by_name": "Doe^Jane"}


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    store.upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    """The store's engine on a fresh Postgres; afterwards the audit chain must verify."""
    engine = store.make_engine(pg_url)
    yield engine
    with store.session_scope(engine) as session:
        result = verify_chain(session)
    engine.dispose()
    assert result.ok, result.describe()


def destination(name: str, port: int, **overrides: Any) -> HL7Destination:
    """A destination on this machine with test-sized timeouts and backoff."""
    values: dict[str, Any] = {"name": name, "host": "127.0.0.1", "port": port, "ack_timeout_seconds": 3.0,
                              "retry_base_seconds": 60.0, "retry_max_seconds": 600.0}
    values.update(overrides)
    return HL7Destination(**values)


def patient(patient_id: str) -> Demographics:
    return PATIENT.model_copy(update={"patient_id": patient_id})


def draft(engine: sa.Engine, destinations: list[str], *, patient_id: str = "MRN-4711") -> tuple[int, Report]:
    """A new study for the patient with its machine draft (v1, P) queued for `destinations`."""
    with store.session_scope(engine) as session:
        study = interpreted_study(session, demographics=patient(patient_id))
        report = store.draft_report(session, study.id, endpoints=ENDPOINTS, actor="worker",
                                    destinations=destinations)
        return study.id, report


def _next_version(engine: sa.Engine, study_id: int, *, result_status: str, status: str,
                  destinations: list[str], **report_fields: Any) -> Report:
    with store.session_scope(engine) as session:
        study = store.get_study(session, study_id)
        oru_study, oru_report, measurements, interpretation = store.oru_inputs(
            session, study, version=store.latest_report(session, study_id).version + 1, signed_at=utcnow(),
            **SIGNER, **report_fields)
        message = build_oru(oru_study, oru_report, measurements, interpretation, result_status=result_status,
                            endpoints=ENDPOINTS, control_id=new_control_id())
        return store.add_report_version(session, study_id, message, status=status, created_by="jdoe",
                                        signed_by="jdoe", actor="user:jdoe", destinations=destinations)


def sign(engine: sa.Engine, study_id: int, destinations: list[str]) -> Report:
    return _next_version(engine, study_id, result_status="F", status="signed", destinations=destinations)


def amend(engine: sa.Engine, study_id: int, destinations: list[str]) -> Report:
    return _next_version(engine, study_id, result_status="C", status="amended", destinations=destinations,
                         impression="Corrected: sinus bradycardia", comments=["Amended: rate re-measured"])


def outbox(engine: sa.Engine) -> list[OutboxItem]:
    with store.session_scope(engine) as session:
        return list(session.execute(sa.select(OutboxItem).order_by(OutboxItem.id)).scalars())


def later(minutes: float) -> dt.datetime:
    """A pass clock this far ahead: retries set for up to then are due."""
    return utcnow() + dt.timedelta(minutes=minutes)


def control_ids(messages: list) -> list[str]:
    """MSH-10 of each message a listener received, in arrival order."""
    return [str(m.segment("MSH")(10)) for m in messages]
