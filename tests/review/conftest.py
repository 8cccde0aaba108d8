"""The sign-off web app on a real, freshly migrated Postgres: studies, accounts, a logged-in client.

Studies are taken through the store's own stages (register -> prepare -> interpret ->
draft), so every page and act sees rows exactly as the pipeline leaves them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from PIL import Image

from ingest.ecg import Demographics, Measurements, Sex
from ingest.interpretation import Interpretation
from ingest.measure.measured import GroundingFeatures
from ingest.report_format import format_output, parse_output
from reports import store
from reports.db import Study
from reports.hl7_oru import HL7Endpoints
from reports.review import accounts
from reports.review.app import create_app
from reports.review.config import ReviewConfig
from tests.reports_db.helpers import new_sha

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ACCOUNTS = {"cardio1": ("cardiologist", "Rossi^Anna"), "cardio2": ("cardiologist", "Bianchi^Luca"),
            "viewer1": ("viewer", None), "tech1": ("technician", None), "admin1": ("admin", None)}


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


@pytest.fixture
def review_engine(postgres_url: str) -> Iterator[sa.Engine]:
    store.upgrade(postgres_url)
    engine = store.make_engine(postgres_url)
    with store.session_scope(engine) as session:
        for name, (role, display) in ACCOUNTS.items():
            accounts.add_user(session, name, role, PASSWORD, actor="test", display_name=display)
    yield engine
    engine.dispose()


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


@pytest.fixture
def make_study(review_engine: sa.Engine, image_dir: Path) -> Callable[..., int]:
    """A study awaiting sign-off with the given labels; returns its id."""

    def make(labels: list[str] | None = None, *, critical: bool = False, source_format: str = "dicom",
             received: dt.datetime | None = None, narrative: str = "Sinus rhythm at 72 bpm, QTc 415 ms.",
             qtc_ms: float = 415, origin: str | None = "cardiology", demonstration: bool = False,
             patient_id: str | None = None, patient_name: str = "Verdi^Giuseppe", accession: str | None = None,
             acquired_at: dt.datetime | None = dt.datetime(2026, 11, 20, 8, 30), hr_bpm: float = 72) -> int:
        labels = labels or ["sinus rhythm", "normal ecg"]
        text = format_output({n: f"finding of step {n}" for n in range(1, 7)}, narrative, labels)
        interpretation = Interpretation(interpreter="protocol-reader", interpreter_version="1.0", modalities=["ecg"],
                                        is_demonstration=demonstration, raw_text=text, parsed=parse_output(text))
        # What the pipeline stores for a file without device measurements: ours, reported and in the features.
        measured = Measurements(hr_bpm=hr_bpm, pr_ms=160, qrs_ms=92, qt_ms=380, qtc_ms=qtc_ms)
        with store.session_scope(review_engine) as session:
            study, _ = store.register_study(session, sha256=new_sha(), source_format=source_format,
                                            source_path="/inbox/ecg", origin=origin, actor="test")
            png = image_dir / f"{study.id}.png"
            Image.new("RGB", (120, 80), "white").save(png)
            store.set_state(session, study.id, "queued_prepare", actor="test")
            store.save_prepared(
                session, study.id, actor="test", image_path=str(png),
                demographics=Demographics(patient_id=patient_id or f"MRN-{study.id}", patient_name=patient_name,
                                          sex=Sex.MALE, birth_date=dt.date(1947, 5, 1),
                                          accession=accession or f"ACC-{study.id}", acquired_at=acquired_at),
                measurements=measured, features=GroundingFeatures(global_=measured),
            )
            store.set_state(session, study.id, "queued_interpret", actor="test")
            store.save_interpretation(session, study.id, interpretation, actor="test", critical=critical,
                                      flags=["QTc claimed 415 ms, measured 520 ms"] if qtc_ms != 415 else [])
            store.draft_report(session, study.id, endpoints=HL7Endpoints(), actor="test", destinations=["his"])
            if received is not None:
                session.execute(sa.update(Study).where(Study.id == study.id).values(created_at=received))
            return study.id

    return make


@pytest.fixture
def config(postgres_url: str, image_dir: Path) -> ReviewConfig:
    # The test client speaks plain http: the documented opt-out of Secure cookies (default on).
    return ReviewConfig(database_url=postgres_url, destinations=["his"], image_roots=[image_dir],
                        secure_cookies=False)


@pytest.fixture
def app_factory(review_engine: sa.Engine) -> Callable[[ReviewConfig], TestClient]:
    def make(config: ReviewConfig) -> TestClient:
        return TestClient(create_app(config, engine=review_engine), follow_redirects=False)

    return make


@pytest.fixture
def client(app_factory: Callable[[ReviewConfig], TestClient], config: ReviewConfig) -> TestClient:
    return app_factory(config)


def login(client: TestClient, username: str, password: str = PASSWORD) -> TestClient:
    """Log `client` in through the real form (CSRF cookie and field); returns it for chaining."""
    page = client.get("/login")
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def logged_in(app_factory: Callable[[ReviewConfig], TestClient], config: ReviewConfig) -> Callable[[str], TestClient]:
    """A new client (its own cookie jar) logged in as the named account."""
    return lambda username: login(app_factory(config), username)
