"""What the sign-off web app is configured with: one pydantic object, built at the edge.

`worker/cli_review.py` builds it from `worker.settings.Settings` (the `ECGWL_*` environment),
so nothing under `reports/` reads the environment or imports `worker`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ingest.protocol import vocabulary
from reports.hl7_oru import HL7Endpoints
from reports.review.compare import ChangeThresholds


class ReviewConfig(BaseModel):
    database_url: str
    # The HL7 receivers every signed / amended / rejected version is queued for.
    destinations: list[str] = Field(default_factory=list)
    endpoints: HL7Endpoints = Field(default_factory=HL7Endpoints)
    # Labels that put a draft first in the queue and mark it red. None: the protocol
    # vocabulary's list (ST elevation, VT, wide complex tachycardia, complete heart block,
    # QTc > 500 ms) and the common spellings other interpreters use for them.
    critical_labels: list[str] | None = None
    # A rejection always becomes report version n+1 with OBR-25 X and outbox rows.
    # "send": the X message goes out (the receiver withdraws the preliminary result);
    # "hold": the rows are recorded as held, shown, and never sent.
    reject_action: Literal["send", "hold"] = "send"
    # Images are served only from below these folders (a study's image_path is data, not trust).
    image_roots: list[Path] = Field(default_factory=list)
    session_hours: float = Field(default=12.0, gt=0)
    # Cookies carry the Secure attribute (sent over HTTPS only). Off only for development on
    # plain-http localhost (ECGWL_REVIEW_SECURE_COOKIES=false): browsers drop Secure cookies there.
    secure_cookies: bool = True
    page_size: int = Field(default=50, ge=1, le=500)
    # Where the drawings of the ECGs for people are kept once made (None: drawn on every request).
    view_cache_dir: Path | None = None
    # Preparation's files (ECGWL_DATA_DIR/prepared): the display copies the drawings are made from.
    prepared_dir: Path | None = None
    # How far a measurement must move from the patient's previous ECG to be listed as a change.
    change_thresholds: ChangeThresholds = Field(default_factory=ChangeThresholds)


def critical_in(labels: list[str] | None, configured: list[str] | None) -> list[str]:
    """The labels that are critical for this site, in the order given."""
    labels = list(labels or [])
    if configured is None:
        return vocabulary.critical_labels(labels)
    wanted = {label.strip().lower() for label in configured}
    return [label for label in labels if label.strip().lower() in wanted]
