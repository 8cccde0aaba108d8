"""The canonical ECG: the one type every stage of ecg-worklist speaks.

A reader (DICOM, WFDB, PDF, ...) turns a file into an `Ecg`; preparation turns an
`Ecg` into a `PreparedEcg` (model-ready signal, rendered image, measured features).
Everything after that (the interpreters, the HL7 builder, the review page, training)
reads these types and nothing format-specific.

Conventions, fixed here once so no later stage has to guess:
- signal is float32, shape (leads, samples), in millivolts;
- leads follow `STANDARD_LEADS` order when the source has all twelve; a source with
  fewer leads keeps only the leads it has (never padded to look like twelve), and
  `missing_leads` names the rest;
- times are timezone-naive local acquisition times as the device recorded them.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

# The model's input contract (ECG-R1): 12 leads, 500 Hz, 10 s.
MODEL_SAMPLING_RATE_HZ = 500
MODEL_WINDOW_SAMPLES = 5000


class SourceFormat(StrEnum):
    DICOM = "dicom"
    WFDB = "wfdb"
    PDF = "pdf"
    MUSE_XML = "muse_xml"  # GE MUSE RestingECG XML export
    PHILIPS_XML = "philips_xml"  # Philips Sierra / PageWriter XML (restingecgdata)
    HL7_AECG = "hl7_aecg"  # HL7 v3 annotated ECG (FDA aECG)
    SCP_ECG = "scp_ecg"  # SCP-ECG, EN 1064 / ISO 11073-91064


class Sex(StrEnum):
    MALE = "M"
    FEMALE = "F"
    OTHER = "O"
    UNKNOWN = "U"


class Demographics(BaseModel):
    """Who and when. Patient identifiers live here and only here: never log them."""

    patient_id: str | None = None
    patient_name: str | None = None  # HL7/DICOM style "FAMILY^GIVEN" where known
    sex: Sex = Sex.UNKNOWN
    birth_date: dt.date | None = None
    age_years: int | None = None
    accession: str | None = None
    study_uid: str | None = None
    acquired_at: dt.datetime | None = None


class Measurements(BaseModel):
    """Global ECG measurements, as a device prints them on the header of a 12-lead.

    `None` means "could not be measured reliably", never zero.
    """

    hr_bpm: float | None = None
    rr_ms: float | None = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_ms: float | None = None  # Bazett, the value reported as "QTc"
    qtc_fridericia_ms: float | None = None
    p_axis_deg: float | None = None
    qrs_axis_deg: float | None = None
    t_axis_deg: float | None = None


class DeviceStatement(BaseModel):
    """One interpretation statement as the acquiring device, or its ECG management system, stored it.

    `confirmed` tells whose statement it is, when the file says: False for the device's own
    (unconfirmed) reading, True for the statement as a physician confirmed or edited it in the
    management system (MUSE "Diagnosis" against "OriginalDiagnosis", SCP-ECG's confirmed flag),
    None when the file does not say. A plain string is accepted where a statement is expected.
    """

    text: str
    code: str | None = None  # the vendor's or the standard's statement code, when stored
    detail: str | None = None  # the device's reason for it, when stored (Philips' right-hand text)
    confirmed: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value


class Ecg(BaseModel):
    """One ECG as read from its source, before any resampling or measuring."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    source_format: SourceFormat
    source_path: str
    signal: np.ndarray | None = None  # (leads, samples) float32 mV, or None for a scan
    sampling_rate_hz: float | None = None
    lead_names: list[str] = Field(default_factory=list)
    median_beat: np.ndarray | None = None  # (leads, samples) mV, when the device stored one
    median_beat_rate_hz: float | None = None
    pages: list[Any] = Field(default_factory=list)  # PIL images of a PDF's pages
    demographics: Demographics = Field(default_factory=Demographics)
    device_measurements: Measurements | None = None
    device_statements: list[DeviceStatement] = Field(default_factory=list)
    device_name: str | None = None
    provenance: dict[str, str] = Field(default_factory=dict)

    @property
    def device_statement_texts(self) -> list[str]:
        """The device's statements as plain text, in the file's order."""
        return [statement.text for statement in self.device_statements]

    @property
    def has_signal(self) -> bool:
        return self.signal is not None

    @property
    def duration_s(self) -> float | None:
        if self.signal is None or not self.sampling_rate_hz:
            return None
        return self.signal.shape[1] / self.sampling_rate_hz

    @property
    def missing_leads(self) -> list[str]:
        if self.signal is None:
            return list(STANDARD_LEADS)
        return [lead for lead in STANDARD_LEADS if lead not in self.lead_names]
