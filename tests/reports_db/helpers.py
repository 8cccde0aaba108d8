"""Small builders the database tests share: file hashes, interpretations, a study moved along."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from sqlalchemy.orm import Session

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.report_format import format_output, parse_output
from reports import store
from reports.db import Study

PATIENT = Demographics(
    patient_id="MRN-4711", patient_name="Rossi^Maria", sex=Sex.FEMALE, birth_date=dt.date(1950, 3, 4),
    accession="ACC-99", acquired_at=dt.datetime(2026, 11, 20, 8, 30, 0),
)


def new_sha() -> str:
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def interpretation(labels: list[str] | None = None) -> Interpretation:
    labels = labels or ["sinus rhythm", "normal ECG"]
    text = format_output({n: f"finding {n}" for n in range(1, 7)}, "Sinus rhythm at 72/min.", labels)
    return Interpretation(interpreter="protocol-reader", interpreter_version="1.0", modalities=["ecg"],
                          raw_text=text, parsed=parse_output(text))


def interpreted_study(session: Session, *, demographics: Demographics = PATIENT) -> Study:
    """A new study taken through prepare and interpret, ready for its draft report."""
    study, _ = store.register_study(session, sha256=new_sha(), source_format="dicom",
                                    source_path="/inbox/ecg.dcm", actor="test")
    store.set_state(session, study.id, "queued_prepare", actor="test")
    store.save_prepared(session, study.id, actor="test", demographics=demographics,
                        measurements=Measurements(hr_bpm=72, pr_ms=160, qrs_ms=92, qt_ms=380, qtc_ms=415))
    store.set_state(session, study.id, "queued_interpret", actor="test")
    store.save_interpretation(session, study.id, interpretation(), actor="test")
    return study
