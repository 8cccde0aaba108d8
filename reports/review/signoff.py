"""Sign, amend and reject: a cardiologist's act becomes a new report version, never an edit.

    sign(session, study_id, user, based_on_version, impression, labels, policy=...)    -> F
    amend(session, study_id, user, based_on_version, impression, labels, reason, ...)  -> C
    reject(session, study_id, user, based_on_version, reason, policy=...)              -> X

The signed report is the cardiologist's: the statements (`labels`: the draft's, confirmed or
edited, from the statement library `ingest.protocol.vocabulary.LABELS` or free text), the
impression and, when the reviewer entered them, the measurements. The F/C message carries
exactly that and "Confirmed by NAME on DATE"; the machine's reasoning, claim checks, the
interpreter and demonstration notes and the "preliminary computer reading" sentence stay with
the draft (v1) and in the audit trail (`reports.hl7_oru.MACHINE_ONLY`). An amendment needs a
reason and a change (statements, impression or measurements differ from the version it
corrects); both go in the audit row and the C message.

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

from ingest.ecg import Measurements
from reports import store
from reports.db import Report, ReportStatus, Role, User, utcnow
from reports.hl7_oru import MEASUREMENT_CODES, PRELIMINARY_SENTENCE, HL7Endpoints, build_oru, new_control_id

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


def draft_impression(impression: str | None) -> str:
    """The draft's impression as the form offers it for confirming: without the interpreter's
    "Preliminary computer reading ...; requires cardiologist confirmation." sentence."""
    lines = [PRELIMINARY_SENTENCE.sub("", line).strip() for line in (impression or "").splitlines()]
    return "\n".join(line for line in lines if line)


def _clean_measurements(values: dict[str, float | None] | None) -> dict[str, float] | None:
    """The reviewer's measurements (None: not entered, the report keeps the study's)."""
    if not values:
        return None
    cleaned: dict[str, float] = {}
    for name, value in values.items():
        if name not in MEASUREMENT_CODES:
            raise InvalidInput(f"{name!r} is not a measurement this report sends")
        if value is None:
            continue
        if not -360 <= value <= 3000:
            raise InvalidInput(f"{MEASUREMENT_CODES[name][1]} {value} is outside any ECG's range")
        cleaned[name] = float(value)
    return cleaned or None


def _report_measurements(study_measurements: dict | None, sources: dict[str, str] | None,
                         entered: dict[str, float] | None) -> tuple[dict[str, float], dict[str, str]]:
    """(values, sources) a version sends: the study's, with what the reviewer entered replacing them."""
    values = {name: value for name, value in (study_measurements or {}).items()
              if name in MEASUREMENT_CODES and value is not None}
    origin = {name: (sources or {}).get(name, "computed") for name in values}
    for name, value in (entered or {}).items():
        if values.get(name) is None or round(values[name]) != round(value):
            values[name], origin[name] = value, "reviewer"
    return values, origin


def _new_version(
    session: Session, study_id: int, user: User, latest: Report, status: ReportStatus, *,
    impression: str, labels: list[str], comments: list[str], policy: SignoffPolicy, now: dt.datetime,
    measurements: dict[str, float] | None = None, audit_details: dict | None = None,
) -> Report:
    study = store.get_study(session, study_id)
    signer = user.username if status is not ReportStatus.REJECTED else None
    version = latest.version + 1
    oru_study, oru_report, study_measurements, interpretation = store.oru_inputs(
        session, study, version=version, labels=labels, impression=impression, signed_by=signer,
        signed_by_name=user.display_name if signer else None, signed_at=now if signer else None, comments=comments,
    )
    base = latest.measurements if latest.status in ("signed", "amended") and latest.measurements else None
    values, sources = _report_measurements(
        (base or {}).get("values") if base else (study_measurements.model_dump() if study_measurements else None),
        (base or {}).get("sources") if base else study.measurement_sources, measurements)
    sent = Measurements(**values) if values else None
    oru_report.measurement_sources = sources  # type: ignore[assignment]
    # A cardiologist's report (F, C, X) is built without the interpreter: its reasoning, notes and
    # checks belong to the draft (hl7_oru also leaves them out of F/C whatever it is given).
    message = build_oru(oru_study, oru_report, sent, None, result_status=RESULT_STATUS[status],
                        endpoints=policy.endpoints, control_id=new_control_id(), message_time=now)
    hold = status is ReportStatus.REJECTED and policy.reject_action == "hold"
    actor = f"user:{user.username}"
    try:
        with session.begin_nested():
            report = store.add_report_version(
                session, study_id, message, status=status, actor=actor, created_by=user.username,
                impression=impression, labels=labels, signed_by=signer, signed_at=now if signer else None,
                destinations=() if hold else policy.destinations,
                measurements={"values": values, "sources": sources} if values else None,
                audit_details=audit_details,
            )
    except IntegrityError as exc:
        # Only reachable if the row lock was bypassed: the unique version is the last guard.
        raise Conflict(f"Study {study_id} got report v{version} from someone else at the same moment. "
                       "Nothing was saved: reload the study.") from exc
    for destination in policy.destinations if hold else ():
        store.add_outbox(session, report.id, destination, actor=actor, held=True)
    return report


def _confirmed_content(impression: str, labels: list[str]) -> tuple[str, list[str]]:
    """The statements and impression as they will be signed, refused if they are the machine's
    "preliminary, requires confirmation" sentence (that is what signing replaces)."""
    impression, labels = _clean_text(impression, "the impression"), _clean_labels(labels)
    _require_content(impression, labels)
    if PRELIMINARY_SENTENCE.search(impression) or any(PRELIMINARY_SENTENCE.search(label) for label in labels):
        raise InvalidInput("the impression still says it is a preliminary computer reading that requires "
                           "confirmation: remove that sentence, your signature is the confirmation")
    return impression, labels


def _signed_details(impression: str, labels: list[str], measurements: dict[str, float] | None) -> dict:
    """What the cardiologist confirmed, for the audit row (clinical content, no patient identifiers)."""
    return {"statements": labels, "impression": impression, "entered_measurements": measurements or {}}


def sign(
    session: Session, study_id: int, user: User, based_on_version: int, impression: str, labels: list[str], *,
    policy: SignoffPolicy, now: dt.datetime | None = None, measurements: dict[str, float | None] | None = None,
) -> Report:
    """The final report (OBR-25 F) of a draft awaiting sign-off: the statements, impression and
    (optionally) measurements the reviewer confirmed or entered, and nothing else."""
    _check_signer(user)
    impression, labels = _confirmed_content(impression, labels)
    entered = _clean_measurements(measurements)
    latest = _current(session, study_id, based_on_version, {ReportStatus.DRAFT})
    return _new_version(session, study_id, user, latest, ReportStatus.SIGNED, impression=impression, labels=labels,
                        comments=[], policy=policy, now=now or utcnow(), measurements=entered,
                        audit_details=_signed_details(impression, labels, entered))


def _changes(latest: Report, impression: str, labels: list[str], entered: dict[str, float] | None) -> list[str]:
    """What an amendment changes against the version it corrects, in words; [] for nothing."""
    changes: list[str] = []
    before = list(latest.labels or [])
    added = [label for label in labels if label not in before]
    removed = [label for label in before if label not in labels]
    if added:
        changes.append("statements added: " + "; ".join(added))
    if removed:
        changes.append("statements removed: " + "; ".join(removed))
    if not added and not removed and labels != before:
        changes.append("statements reordered")
    if impression != (latest.impression or ""):
        changes.append("impression changed")
    old_values = ((latest.measurements or {}).get("values") or {})
    for name, value in (entered or {}).items():
        old = old_values.get(name)
        if old is None or round(old) != round(value):
            unit = MEASUREMENT_CODES[name][2]
            was = f"{round(old)}" if old is not None else "not reported"
            changes.append(f"{MEASUREMENT_CODES[name][1]} {was} -> {round(value)} {unit}")
    return changes


def amend(
    session: Session, study_id: int, user: User, based_on_version: int, impression: str, labels: list[str],
    reason: str = "", *, policy: SignoffPolicy, now: dt.datetime | None = None,
    measurements: dict[str, float | None] | None = None,
) -> Report:
    """A correction of a signed report (OBR-25 C): same order numbers, a new message control id.

    Refused without a reason, and refused when nothing changes (the same statements,
    impression and measurements as the version it corrects): a correction corrects something.
    """
    _check_signer(user)
    impression, labels = _confirmed_content(impression, labels)
    reason = _clean_text(reason, "the reason for the correction", required=True)
    entered = _clean_measurements(measurements)
    latest = _current(session, study_id, based_on_version, {ReportStatus.SIGNED, ReportStatus.AMENDED})
    changes = _changes(latest, impression, labels, entered)
    if not changes:
        raise InvalidInput(f"nothing to correct: the statements, impression and measurements are those of the "
                           f"signed report v{latest.version}. Change what is wrong, or leave the report as it is.")
    comments = [f"Correction of the report signed as v{latest.version}: {reason}", "Changed: " + "; ".join(changes)]
    details = _signed_details(impression, labels, entered) | {"reason": reason, "changes": changes,
                                                               "corrects_version": latest.version}
    return _new_version(session, study_id, user, latest, ReportStatus.AMENDED, impression=impression,
                        labels=labels, comments=comments, policy=policy, now=now or utcnow(), measurements=entered,
                        audit_details=details)


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
                        now=now or utcnow(), audit_details={"reason": reason})
