"""Sign, amend and reject: a cardiologist's act becomes a new report version, never an edit.

    sign(session, study_id, user, based_on_version, impression, labels, policy=...)    -> F
    amend(session, study_id, user, based_on_version, impression, labels, reason, ...)  -> C
    reject(session, study_id, user, based_on_version, reason, policy=...)              -> X

Each builds the ORU^R01 (same order numbers as the draft, a new MSH-10; OBR-32 the signer
and the time for F and C), stores it through `reports.store.add_report_version` (which
validates it, writes the audit row and moves the study) and queues one outbox row per
destination, all in the caller's transaction.

Optimistic locking: every form carries the report version it was based on. When another
version exists by the time the act arrives (a colleague signed first), `Conflict` names who
did what and when, and nothing is written. The study row is locked while the act is
checked, so two acts on one study are decided one after the other; `UNIQUE(study_id,
version)` in the database backs this up.

The role is checked here as well as in the web layer: these functions are the boundary.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reports import store
from reports.db import Report, ReportStatus, Role, User, utcnow
from reports.hl7_oru import HL7Endpoints, build_oru, new_control_id

RESULT_STATUS = {ReportStatus.SIGNED: "F", ReportStatus.AMENDED: "C", ReportStatus.REJECTED: "X"}
MAX_LABELS = 40
MAX_TEXT = 4000


class SignoffPolicy(BaseModel):
    """Site choices that shape the message and where it goes."""

    endpoints: HL7Endpoints = Field(default_factory=HL7Endpoints)
    destinations: list[str] = Field(default_factory=list)
    reject_action: Literal["send", "hold"] = "send"


class SignoffError(Exception):
    """Base of the refusals below; the text is meant for the reviewer's screen."""


class NotAllowed(SignoffError, PermissionError):
    pass


class Conflict(SignoffError):
    """Someone else acted on the study after the version this form was based on."""

    def __init__(self, message: str, latest: Report | None = None) -> None:
        super().__init__(message)
        self.latest = latest


class InvalidInput(SignoffError, ValueError):
    pass


def _who_did(report: Report) -> str:
    who = report.signed_by or report.created_by
    when = report.signed_at or report.created_at
    verb = {"signed": "signed", "amended": "amended", "rejected": "rejected"}.get(report.status, "changed")
    return f"{verb} by {who} at {when:%Y-%m-%d %H:%M} UTC (report v{report.version})"


def _check_signer(user: User) -> None:
    if not user.active or not Role(user.role).can_sign:
        raise NotAllowed(f"the {user.role} role cannot sign, amend or reject reports")


def _clean_labels(labels: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(label.strip() for label in labels if label.strip()))
    if len(cleaned) > MAX_LABELS or any(len(label) > 200 for label in cleaned):
        raise InvalidInput(f"at most {MAX_LABELS} labels of at most 200 characters")
    return cleaned


def _clean_text(text: str, what: str, *, required: bool = False) -> str:
    text = text.strip()
    if required and not text:
        raise InvalidInput(f"{what} is required")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"{what} is limited to {MAX_TEXT} characters")
    return text


def _require_content(impression: str, labels: list[str]) -> None:
    if not impression and not labels:
        raise InvalidInput("a signed report needs an impression or at least one label")


def _current(session: Session, study_id: int, based_on_version: int, allowed: set[ReportStatus]) -> Report:
    """The latest report, if it is the one the form was based on and of a kind this act follows."""
    store.get_study(session, study_id, for_update=True)  # decide concurrent acts one at a time
    latest = store.latest_report(session, study_id)
    if latest is None:
        raise InvalidInput(f"study {study_id} has no draft report yet")
    if latest.version != based_on_version:
        raise Conflict(f"Study {study_id} was {_who_did(latest)} after you opened it (you were reading "
                       f"v{based_on_version}). Nothing was saved: reload the study to see the current report.",
                       latest)
    if ReportStatus(latest.status) not in allowed:
        if latest.status == ReportStatus.DRAFT:
            raise InvalidInput(f"study {study_id} is not signed yet: sign it instead of amending")
        raise Conflict(f"Study {study_id} was already {_who_did(latest)}. Nothing was saved.", latest)
    return latest


def _new_version(
    session: Session, study_id: int, user: User, latest: Report, status: ReportStatus, *,
    impression: str, labels: list[str], comments: list[str], policy: SignoffPolicy, now: dt.datetime,
) -> Report:
    study = store.get_study(session, study_id)
    signer = user.username if status is not ReportStatus.REJECTED else None
    version = latest.version + 1
    oru_study, oru_report, measurements, interpretation = store.oru_inputs(
        session, study, version=version, labels=labels, impression=impression, signed_by=signer,
        signed_by_name=user.display_name if signer else None, signed_at=now if signer else None, comments=comments,
    )
    message = build_oru(oru_study, oru_report, measurements, interpretation, result_status=RESULT_STATUS[status],
                        endpoints=policy.endpoints, control_id=new_control_id(), message_time=now)
    hold = status is ReportStatus.REJECTED and policy.reject_action == "hold"
    actor = f"user:{user.username}"
    try:
        with session.begin_nested():
            report = store.add_report_version(
                session, study_id, message, status=status, actor=actor, created_by=user.username,
                impression=impression, labels=labels, signed_by=signer, signed_at=now if signer else None,
                destinations=() if hold else policy.destinations,
            )
    except IntegrityError as exc:
        # Only reachable if the row lock was bypassed: the unique version is the last guard.
        raise Conflict(f"Study {study_id} got report v{version} from someone else at the same moment. "
                       "Nothing was saved: reload the study.") from exc
    for destination in policy.destinations if hold else ():
        store.add_outbox(session, report.id, destination, actor=actor, held=True)
    return report


def sign(
    session: Session, study_id: int, user: User, based_on_version: int, impression: str, labels: list[str], *,
    policy: SignoffPolicy, now: dt.datetime | None = None,
) -> Report:
    """The final report (OBR-25 F) of a draft awaiting sign-off, with the reviewer's edits."""
    _check_signer(user)
    impression, labels = _clean_text(impression, "the impression"), _clean_labels(labels)
    _require_content(impression, labels)
    latest = _current(session, study_id, based_on_version, {ReportStatus.DRAFT})
    return _new_version(session, study_id, user, latest, ReportStatus.SIGNED, impression=impression, labels=labels,
                        comments=[], policy=policy, now=now or utcnow())


def amend(
    session: Session, study_id: int, user: User, based_on_version: int, impression: str, labels: list[str],
    reason: str = "", *, policy: SignoffPolicy, now: dt.datetime | None = None,
) -> Report:
    """A correction of a signed report (OBR-25 C): same order numbers, a new message control id."""
    _check_signer(user)
    impression, labels = _clean_text(impression, "the impression"), _clean_labels(labels)
    reason = _clean_text(reason, "the reason")
    _require_content(impression, labels)
    latest = _current(session, study_id, based_on_version, {ReportStatus.SIGNED, ReportStatus.AMENDED})
    comments = [f"Correction: {reason}"] if reason else ["Corrected report"]
    return _new_version(session, study_id, user, latest, ReportStatus.AMENDED, impression=impression,
                        labels=labels, comments=comments, policy=policy, now=now or utcnow())


def reject(
    session: Session, study_id: int, user: User, based_on_version: int, reason: str, *,
    policy: SignoffPolicy, now: dt.datetime | None = None,
) -> Report:
    """Withdraw the machine draft (OBR-25 X) with the reviewer's reason; sent or held as configured."""
    _check_signer(user)
    reason = _clean_text(reason, "a reason for the rejection", required=True)
    latest = _current(session, study_id, based_on_version, {ReportStatus.DRAFT})
    impression = f"Preliminary interpretation rejected by the reviewing cardiologist: {reason}"
    return _new_version(session, study_id, user, latest, ReportStatus.REJECTED, impression=impression, labels=[],
                        comments=[f"Rejected by {(user.display_name or user.username).replace('^', ', ')}"], policy=policy,
                        now=now or utcnow())
