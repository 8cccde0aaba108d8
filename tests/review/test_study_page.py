"""The study page's ECG, device data and navigation through the web app (no browser)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from reports.db import Study
from reports.review.config import ReviewConfig
from tests.review.conftest import login


def _point_at(engine: sa.Engine, study_id: int, path: Path) -> None:
    """Make the study's kept file `path` (the fixture's studies have none)."""
    with engine.begin() as connection:
        connection.execute(sa.update(Study).where(Study.id == study_id).values(archive_path=str(path)))


def test_the_drawing_is_served_gzipped_or_plain_and_kept_in_the_cache(
    make_study: Callable[..., int], review_engine: sa.Engine, app_factory: Callable[[ReviewConfig], TestClient],
    config: ReviewConfig, tmp_path: Path,
) -> None:
    study_id = make_study()
    _point_at(review_engine, study_id, Path(shutil.copy(get_testdata_file("waveform_ecg.dcm"), tmp_path / "e.dcm")))
    client = login(app_factory(config.model_copy(update={"view_cache_dir": tmp_path / "views"})), "viewer1")
    zipped = client.get(f"/studies/{study_id}/ecg.svg", headers={"Accept-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "image/svg+xml"
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["cache-control"] == "private, no-store"
    assert "default-src 'none'" in zipped.headers["content-security-policy"]  # opened on its own, it runs nothing
    plain = client.get(f"/studies/{study_id}/ecg.svg", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text.startswith("<svg")
    assert zipped.text == plain.text  # httpx unzipped it: the same drawing either way
    assert len(list((tmp_path / "views").rglob("*.svg.gz"))) == 1
    assert client.get("/studies/999999/ecg.svg").status_code == 404


def test_the_page_shows_the_devices_statements_and_measurements_beside_ours(
    make_study: Callable[..., int], review_engine: sa.Engine, logged_in: Callable[[str], TestClient], tmp_path: Path,
) -> None:
    study_id = make_study()
    _point_at(review_engine, study_id, Path(shutil.copy(get_testdata_file("waveform_ecg.dcm"), tmp_path / "e.dcm")))
    page = logged_in("viewer1").get(f"/studies/{study_id}").text
    assert f'src="/studies/{study_id}/ecg.svg"' in page and 'data-mm-per-s="25.0"' in page
    device = page.split('class="device-statements"')[1].split("</div>")[0]
    assert "RITMO SINUSALE" in device and "ECG NORMALE" in device and "el250" in device
    rows = page.split('<table class="measurements">')[1].split("</table>")[0]
    qtc = [r for r in rows.split("<tr") if ">QTc<" in r][0]
    assert "<td>415 ms</td>" in qtc and "370 ms" in qtc  # ours (the fixture's), the device's (the file's)
    assert 'class="differs">370 ms' in qtc  # 45 ms apart: beyond the claim-check tolerance
    assert "25 mm/s · 10 mm/mV · 1000 Hz" in page


def test_previous_and_next_follow_the_queue_and_the_keys_are_listed(
    make_study: Callable[..., int], logged_in: Callable[[str], TestClient],
) -> None:
    first, second, third = make_study(), make_study(), make_study()
    client = logged_in("cardio1")
    middle = client.get(f"/studies/{second}").text
    assert f'id="nav-prev" href="/studies/{first}"' in middle and f'id="nav-next" href="/studies/{third}"' in middle
    top = client.get(f"/studies/{first}").text
    assert 'id="nav-prev"' not in top and f'id="nav-next" href="/studies/{second}"' in top
    assert "<kbd>s</kbd> sign and next" in top and 'id="shortcuts"' in top
    assert 'data-critical="0"' in top
    assert '<script src="/static/review.js" defer></script>' in top
