"""Serial comparison: this ECG beside the same patient's previous one, and what changed.

    previous_study(session, study)   the latest earlier study of the same patient id (MRN)
    compare(current, previous, ...)  rate, PR, QRS, QT, QTc and QRS axis that moved by more than
                                     a threshold; findings (labels) that are new or resolved

"Earlier" is by acquisition time; when a study's acquisition time is unknown the time it was
received stands in (the page says which). Only studies a reviewer can open count (awaiting
sign-off, signed, rejected). The labels compared are each study's latest report's: what the
cardiologist signed for an older study, the draft for one still waiting.

The measurements compared are the ones our measurement code made on both recordings
(`studies.features.global`), so a change is not just one device's method against another's;
a study without them (a scan) falls back on the reported measurements.

Default thresholds (`ChangeThresholds`; a site sets its own with ECGWL_REVIEW_CHANGE_THRESHOLDS):
two automated measurements of the same heart differ by up to the sum of their error bounds
(IEC 60601-2-25 allows about 10 ms for PR, 6 ms for QRS and 12 ms for QT on the CSE set),
so a change smaller than that says nothing. Each default is that sum rounded up to a step a
reader sees on paper: PR 20 ms and QRS 20 ms (half a small square is 20 ms at 25 mm/s),
QT and QTc 30 ms (2 x 12 = 24, and the 30 ms step ICH E14 uses for a QTc increase of
concern), heart rate 10 bpm (beyond the resting variability of a 10 s strip) and QRS axis 30
degrees (twice the ~15 degree agreement of automated axes, and the width of one hexaxial
sector).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from reports.db import Report, Study, StudyState

REVIEWABLE = (StudyState.AWAITING_SIGNOFF.value, StudyState.SIGNED.value, StudyState.REJECTED.value)


class ChangeThresholds(BaseModel):
    """How far a measurement must move between two ECGs to be listed as a change."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error at start, not a silent default

    hr_bpm: float = Field(default=10.0, gt=0)
    pr_ms: float = Field(default=20.0, gt=0)
    qrs_ms: float = Field(default=20.0, gt=0)
    qt_ms: float = Field(default=30.0, gt=0)
    qtc_ms: float = Field(default=30.0, gt=0)
    qrs_axis_deg: float = Field(default=30.0, gt=0)


# (field, what the page calls it, unit, is an angle)
COMPARED: tuple[tuple[str, str, str, bool], ...] = (
    ("hr_bpm", "Heart rate", "bpm", False),
    ("pr_ms", "PR", "ms", False),
    ("qrs_ms", "QRS", "ms", False),
    ("qt_ms", "QT", "ms", False),
    ("qtc_ms", "QTc", "ms", False),
    ("qrs_axis_deg", "QRS axis", "°", True),
)


class Change(BaseModel):
    field: str
    name: str
    unit: str
    before: float | None
    after: float | None
    delta: float | None  # after - before (the shorter way round for an axis)
    threshold: float
    significant: bool  # |delta| > threshold

    @property
    def text(self) -> str:
        """"QTc 412 -> 468 ms (+56)": one line of the list of changes."""
        if self.before is None or self.after is None or self.delta is None:
            return f"{self.name}: not measured on {'this' if self.after is None else 'the previous'} ECG"
        return f"{self.name} {self.before:.0f} → {self.after:.0f} {self.unit} ({self.delta:+.0f})"


class Comparison(BaseModel):
    previous_id: int
    previous_time: dt.datetime | None
    previous_time_is_acquisition: bool
    previous_status: str  # of its latest report: draft, signed, amended, rejected
    previous_signed_by: str | None
    previous_labels: list[str]
    rows: list[Change]  # every compared quantity, in COMPARED order
    new_findings: list[str]
    resolved_findings: list[str]

    @property
    def significant(self) -> list[Change]:
        return [row for row in self.rows if row.significant]


def _angle_delta(before: float, after: float) -> float:
    return (after - before + 180.0) % 360.0 - 180.0


def measurement_changes(before: dict[str, Any] | None, after: dict[str, Any] | None,
                        thresholds: ChangeThresholds) -> list[Change]:
    rows = []
    for field, name, unit, is_angle in COMPARED:
        old, new = (before or {}).get(field), (after or {}).get(field)
        limit = float(getattr(thresholds, field))
        delta = None
        if old is not None and new is not None:
            delta = _angle_delta(float(old), float(new)) if is_angle else float(new) - float(old)
        rows.append(Change(field=field, name=name, unit=unit, before=old, after=new, delta=delta,
                           threshold=limit, significant=delta is not None and abs(delta) > limit))
    return rows


def label_changes(before: list[str], after: list[str]) -> tuple[list[str], list[str]]:
    """(new, resolved) findings: labels only in `after`, only in `before` (case and spacing ignored)."""
    def key(label: str) -> str:
        return " ".join(label.lower().split())

    old, new = {key(label) for label in before}, {key(label) for label in after}
    return ([label for label in after if key(label) not in old],
            [label for label in before if key(label) not in new])


def compared_measurements(study: Study) -> dict[str, Any] | None:
    """Our own global measurements of the study; the reported ones when it has none (a scan)."""
    measured = (study.features or {}).get("global")
    return measured or study.measurements


def _when(study: Study) -> tuple[dt.datetime, bool]:
    return (study.acquired_at, True) if study.acquired_at is not None else (study.created_at, False)


def previous_study(session: Session, study: Study) -> Study | None:
    """The same patient's latest study acquired (else received) before this one, or None."""
    if not study.patient_id_key:
        return None
    candidates = session.execute(
        sa.select(Study).where(Study.patient_id_key == study.patient_id_key, Study.id != study.id,
                               Study.state.in_(REVIEWABLE))
    ).scalars().all()
    this_time = _when(study)[0]
    earlier = [other for other in candidates if _when(other)[0] < this_time
               or (_when(other)[0] == this_time and other.id < study.id)]
    return max(earlier, key=lambda other: (_when(other)[0], other.id), default=None)


def latest_report(session: Session, study_id: int) -> Report | None:
    return session.execute(sa.select(Report).where(Report.study_id == study_id)
                           .order_by(Report.version.desc()).limit(1)).scalar_one_or_none()


def compare(session: Session, study: Study, labels: list[str], thresholds: ChangeThresholds) -> Comparison | None:
    """This study (with the labels the page shows for it) against the patient's previous ECG."""
    previous = previous_study(session, study)
    if previous is None:
        return None
    report = latest_report(session, previous.id)
    previous_labels = list(report.labels or []) if report is not None and report.labels is not None \
        else list(previous.labels or [])
    new, resolved = label_changes(previous_labels, labels)
    when, is_acquisition = _when(previous)
    return Comparison(
        previous_id=previous.id, previous_time=when, previous_time_is_acquisition=is_acquisition,
        previous_status=report.status if report is not None else previous.state,
        previous_signed_by=report.signed_by if report is not None else None, previous_labels=previous_labels,
        rows=measurement_changes(compared_measurements(previous), compared_measurements(study), thresholds),
        new_findings=new, resolved_findings=resolved,
    )
