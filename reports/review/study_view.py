"""What the study page shows beside the report: the ECG, what the device said, the previous ECG.

    ecg            the drawing's geometry for zoom and calipers (or the scanned page)
    device         the device's own statements and measurements, read from the file
    measurements   ours | the device's | what the draft states, a row per quantity
    comparison     the patient's previous ECG and what changed (reports.review.compare)
    navigation     the awaiting studies before and after this one in queue order

The report itself (impression, labels, versions, deliveries) stays in `app.study_context`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from ingest.ecg import DeviceStatement, Measurements
from ingest.interpretation import Interpretation
from reports.db import Study
from reports.review.compare import ChangeThresholds, Comparison, compare
from reports.review.ecg_source import EcgView, ViewCache
from reports.review.queue import next_awaiting, previous_awaiting
from reports.verify import FIELDS, extract_values

# The rows of the measurements table, in the order a 12-lead header prints them.
MEASUREMENT_ROWS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg")


class MeasurementRow(BaseModel):
    label: str
    ours: str
    device: str
    claimed: str
    mismatch: bool  # the draft states a value beyond the claim-check tolerance of ours
    device_differs: bool  # the device's value is beyond the same tolerance of ours


class StudyExtras(BaseModel):
    view: EcgView
    device_name: str | None
    device_statements: list[DeviceStatement] = Field(default_factory=list)
    measurement_rows: list[MeasurementRow]
    has_device_measurements: bool
    comparison: Comparison | None
    previous_view: EcgView | None
    previous_id: int | None  # in queue order, awaiting sign-off
    next_id: int | None


def source_file(study: Study) -> Path:
    """The kept copy of the study's file (the original for a batch study), as the pipeline reads it."""
    return Path(study.archive_path or study.source_path)


def our_measurements(study: Study) -> dict[str, Any] | None:
    """What our measurement code found (`features.global`); None for a scan."""
    return (study.features or {}).get("global") or None


def _format_value(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f} {unit}"


def _differs(low: float, high: float | None, measured: float, spec: Any) -> bool:
    if spec.kind == "angle":
        distance = min(abs((measured - end + 180) % 360 - 180) for end in (low, high if high is not None else low))
        return distance > spec.tolerance
    top = high if high is not None else low
    if low <= measured <= top:
        return False
    return min(abs(measured - low), abs(measured - top)) > spec.tolerance


def _stated_text(interpretation: Interpretation | None) -> str:
    if interpretation is None:
        return ""
    parsed = interpretation.parsed
    if parsed.steps or parsed.narrative:
        return "\n".join([*(parsed.steps[n] for n in sorted(parsed.steps)), parsed.narrative])
    return interpretation.raw_text


def measurement_rows(ours: dict[str, Any] | None, device: Measurements | None,
                     interpretation: Interpretation | None) -> list[MeasurementRow]:
    """Our value, the device's and the draft's claims for each quantity; disagreements beyond the
    tolerance `reports.verify` uses for its flags are marked."""
    text = _stated_text(interpretation)
    claims = extract_values(text) if text else []
    device_values = device.model_dump() if device is not None else {}
    rows = []
    for field in MEASUREMENT_ROWS:
        spec = FIELDS[field]
        value, device_value = (ours or {}).get(field), device_values.get(field)
        stated = [c for c in claims if c.field == field]
        claimed = "; ".join(dict.fromkeys(
            f"{c.value:.0f}" + (f"-{c.upper:.0f}" if c.upper is not None else "") + f" {spec.unit}" for c in stated))
        rows.append(MeasurementRow(
            label=spec.name, ours=_format_value(value, spec.unit), device=_format_value(device_value, spec.unit),
            claimed=claimed or "-",
            mismatch=value is not None and any(_differs(c.value, c.upper, value, spec) for c in stated),
            device_differs=value is not None and device_value is not None
            and _differs(device_value, None, value, spec),
        ))
    return rows


def study_extras(session: Session, study: Study, labels: list[str], interpretation: Interpretation | None, *,
                 views: ViewCache, thresholds: ChangeThresholds) -> StudyExtras:
    view = views.view(study.sha256, source_file(study))
    comparison = compare(session, study, labels, thresholds)
    previous_view = None
    if comparison is not None:
        previous = session.get(Study, comparison.previous_id)
        previous_view = views.view(previous.sha256, source_file(previous)) if previous is not None else None
    device = view.device_measurements
    return StudyExtras(
        view=view, device_name=view.device_name, device_statements=view.device_statements,
        measurement_rows=measurement_rows(our_measurements(study), device, interpretation),
        has_device_measurements=device is not None and any(v is not None for v in device.model_dump().values()),
        comparison=comparison, previous_view=previous_view,
        previous_id=previous_awaiting(session, study.id), next_id=next_awaiting(session, study.id),
    )
