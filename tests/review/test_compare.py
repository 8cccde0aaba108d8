"""The patient's previous ECG and what changed (reports/review/compare.py), and its place on the page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from reports import store
from reports.db import Study
from reports.review.compare import ChangeThresholds, compare, label_changes, measurement_changes, previous_study

T = dt.datetime(2026, 11, 20, 8, 30)


def test_changes_beyond_the_thresholds_and_axes_the_short_way_round() -> None:
    before = {"hr_bpm": 60, "pr_ms": 160, "qrs_ms": 90, "qt_ms": 400, "qtc_ms": 400, "qrs_axis_deg": 170}
    after = {"hr_bpm": 70, "pr_ms": 181, "qrs_ms": 130, "qt_ms": 420, "qtc_ms": 431, "qrs_axis_deg": -170}
    rows = {row.field: row for row in measurement_changes(before, after, ChangeThresholds())}
    assert {f for f, row in rows.items() if row.significant} == {"pr_ms", "qrs_ms", "qtc_ms"}
    assert rows["hr_bpm"].delta == 10 and not rows["hr_bpm"].significant  # "more than", not "at least"
    assert rows["qrs_axis_deg"].delta == 20  # 170 -> -170 is 20 degrees, not 340
    assert rows["qrs_ms"].text == "QRS 90 → 130 ms (+40)"
    strict = ChangeThresholds(hr_bpm=5, qrs_axis_deg=15)
    assert {r.field for r in measurement_changes(before, after, strict) if r.significant} >= {"hr_bpm", "qrs_axis_deg"}
    missing = measurement_changes({"pr_ms": 160}, {}, ChangeThresholds())[1]
    assert not missing.significant and missing.text == "PR: not measured on this ECG"
    with pytest.raises(ValueError):
        ChangeThresholds(qtc_ms=0)


def test_new_and_resolved_findings() -> None:
    new, resolved = label_changes(["sinus rhythm", "Normal ECG"], ["sinus rhythm", "st elevation (inferior)"])
    assert new == ["st elevation (inferior)"] and resolved == ["Normal ECG"]
    assert label_changes(["sinus  rhythm"], ["Sinus rhythm"]) == ([], [])


def test_the_previous_ecg_is_the_latest_earlier_one_of_the_same_patient(
    make_study: Callable[..., int], review_engine: sa.Engine,
) -> None:
    oldest = make_study(patient_id="P-1", acquired_at=T - dt.timedelta(days=400), hr_bpm=60)
    previous = make_study(patient_id="p-1", acquired_at=T - dt.timedelta(days=30), hr_bpm=62,
                          labels=["sinus rhythm", "first degree av block"])
    current = make_study(patient_id="P-1", acquired_at=T, hr_bpm=95, labels=["sinus tachycardia"])
    later = make_study(patient_id="P-1", acquired_at=T + dt.timedelta(days=1))
    make_study(patient_id="P-2", acquired_at=T - dt.timedelta(days=1))  # someone else
    unknown_time = make_study(patient_id="P-1", acquired_at=None)  # received now: after all of them
    with store.session_scope(review_engine) as session:
        study = session.get(Study, current)
        assert previous_study(session, study).id == previous  # case of the MRN does not matter
        assert previous_study(session, session.get(Study, previous)).id == oldest
        assert previous_study(session, session.get(Study, oldest)) is None
        assert previous_study(session, session.get(Study, unknown_time)).id == later
        result = compare(session, study, ["sinus tachycardia"], ChangeThresholds())
    assert result.previous_id == previous and result.previous_time_is_acquisition
    assert [row.text for row in result.significant] == ["Heart rate 62 → 95 bpm (+33)"]
    assert result.new_findings == ["sinus tachycardia"]
    assert result.resolved_findings == ["sinus rhythm", "first degree av block"]


def test_the_study_page_lists_the_changes_beside_the_previous_ecg(
    make_study: Callable[..., int], logged_in: Callable[[str], TestClient],
) -> None:
    previous = make_study(patient_id="P-9", acquired_at=T - dt.timedelta(days=30), hr_bpm=60)
    current = make_study(["sinus tachycardia"], patient_id="P-9", acquired_at=T, hr_bpm=110, qtc_ms=520)
    page = logged_in("viewer1").get(f"/studies/{current}").text
    section = page.split('id="previous-ecg"')[1]
    assert f'href="/studies/{previous}"' in section and "acquired" in section
    changes = section.split('class="change-list"')[1].split("</ul>")[0]
    assert "Heart rate 60 → 110 bpm (+50)" in changes and "QTc 415 → 520 ms (+105)" in changes
    assert "new: sinus tachycardia" in changes and "no longer: normal ecg" in changes
    assert f'src="/studies/{previous}/image.png"' in section  # its file is gone in this test: the page image
    alone = logged_in("viewer1").get(f"/studies/{previous}").text
    assert 'id="previous-ecg"' not in alone


def test_a_site_sets_its_own_thresholds(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from worker.cli_review import review_config
    from worker.settings import Settings

    monkeypatch.setenv("ECGWL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ECGWL_REVIEW_CHANGE_THRESHOLDS", '{"qtc_ms": 60, "hr_bpm": 20}')
    config = review_config(Settings())
    assert config.change_thresholds == ChangeThresholds(qtc_ms=60, hr_bpm=20)  # the rest keep their defaults
    assert config.view_cache_dir == tmp_path.resolve() / "views"
    for wrong in ('{"qtc_ms": -5}', '{"qtcc_ms": 40}'):
        monkeypatch.setenv("ECGWL_REVIEW_CHANGE_THRESHOLDS", wrong)
        with pytest.raises(ValueError):
            review_config(Settings())
