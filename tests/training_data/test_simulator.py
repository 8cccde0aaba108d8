"""The synthetic 12-lead simulator: exact lead algebra, labels that follow the parameters, measurable rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.features import measure
from ingest.protocol import vocabulary as v
from training.synthetic import FS, GUARD, SAMPLES, SimulatedTruth, project, simulate

SEED = 11
COUNT = 60
IDX = {lead: i for i, lead in enumerate(STANDARD_LEADS)}


@pytest.fixture(scope="module")
def records() -> list[tuple[np.ndarray, SimulatedTruth]]:
    return [simulate(f"t-{i}", SEED, i) for i in range(COUNT)]


def test_signal_is_a_500_hz_ten_second_float32_12_lead(records):
    for signal, truth in records[:5]:
        assert signal.shape == (12, SAMPLES) and SAMPLES == 5000 and FS == 500
        assert signal.dtype == np.float32
        assert np.isfinite(signal).all()
        assert 0.05 < np.abs(signal).max() < 10.0, truth.id


def test_einthoven_and_goldberger_hold_exactly_noise_included(records):
    for signal, truth in records:
        lead_i, lead_ii = signal[IDX["I"]], signal[IDX["II"]]
        assert np.array_equal(signal[IDX["III"]], lead_ii - lead_i), truth.id
        assert np.array_equal(signal[IDX["aVR"]], -(lead_i + lead_ii) / 2), truth.id
        assert np.array_equal(signal[IDX["aVL"]], lead_i - lead_ii / 2), truth.id
        assert np.array_equal(signal[IDX["aVF"]], lead_ii - lead_i / 2), truth.id
        # The textbook forms, to float32 rounding.
        lead_iii = signal[IDX["III"]]
        assert np.allclose(signal[IDX["aVL"]], (lead_i - lead_iii) / 2, atol=1e-5)
        assert np.allclose(signal[IDX["aVF"]], (lead_ii + lead_iii) / 2, atol=1e-5)
        assert np.allclose(signal[IDX["aVR"]] + signal[IDX["aVL"]] + signal[IDX["aVF"]], 0, atol=1e-5)


def test_projection_of_a_leftward_dipole():
    # A pure leftward vector: I positive, aVR negative, III = II - I, V6 sees it, V1 sees it negative.
    leads = project(np.array([[1.0], [0.0], [0.0]]))[:, 0]
    assert leads[IDX["I"]] == 1.0 and leads[IDX["II"]] == pytest.approx(0.5)
    assert leads[IDX["III"]] == pytest.approx(-0.5) and leads[IDX["aVR"]] < 0
    assert leads[IDX["V6"]] > 0 > leads[IDX["V1"]]


def test_same_seed_same_record_other_index_other_record():
    a_signal, a_truth = simulate("x", 3, 5)
    b_signal, b_truth = simulate("x", 3, 5)
    c_signal, _ = simulate("x", 3, 6)
    assert np.array_equal(a_signal, b_signal) and a_truth == b_truth
    assert not np.array_equal(a_signal, c_signal)


def test_rate_and_rhythm_labels_follow_the_parameters(records):
    for _, truth in records:
        if truth.rhythm == "atrial fibrillation":
            assert v.ATRIAL_FIBRILLATION in truth.labels
            assert truth.rr_cv >= 0.10  # irregular
            assert truth.pr_ms is None and truth.p_ii_mv is None  # no P waves
            continue
        assert truth.rr_cv < 0.10  # sinus: regular
        assert truth.p_ii_mv is not None and truth.p_ii_mv > 0  # upright P in II
        expected = (v.SINUS_BRADYCARDIA if truth.hr_bpm < 60 else v.SINUS_TACHYCARDIA if truth.hr_bpm > 100
                    else v.SINUS_RHYTHM)
        assert expected in truth.labels, (truth.id, truth.hr_bpm, truth.labels)
        # Guard band: never within 3 bpm of a rate threshold.
        assert min(abs(truth.hr_bpm - 60), abs(truth.hr_bpm - 100)) >= GUARD["hr"] - 0.5


def test_af_records_have_no_p_waves_and_a_fibrillatory_baseline():
    af = None
    for index in range(40):
        signal, truth = simulate("af", 5, index)
        if truth.rhythm == "atrial fibrillation":
            af = (signal, truth)
            break
    assert af is not None
    features = measure(af[0], FS)
    assert features.rhythm.regular is False
    assert (features.rhythm.p_wave_fraction or 0.0) <= 0.5


def test_interval_axis_and_voltage_labels_follow_the_parameters(records):
    for _, truth in records:
        labels = set(truth.labels)
        if truth.pr_ms is not None:
            assert (v.FIRST_DEGREE_AV_BLOCK in labels) == (truth.pr_ms > 200)
            assert (v.SHORT_PR in labels) == (truth.pr_ms < 120)
        assert (v.INCOMPLETE_BBB in labels) == (110 <= truth.qrs_ms < 120 and truth.conduction != "normal")
        assert (v.RBBB in labels) == (truth.qrs_ms >= 120 and truth.conduction == "rbbb")
        assert (v.LBBB in labels) == (truth.qrs_ms >= 120 and truth.conduction == "lbbb")
        assert (v.LEFT_AXIS_DEVIATION in labels) == (-90 <= truth.axis_deg < -30)
        assert (v.RIGHT_AXIS_DEVIATION in labels) == (truth.axis_deg > 90)
        # QT decided by Framingham (QT + 154 ms x (1 - RR)), less the QRS widening beyond 100 ms from 120 ms
        qt = truth.qt_ms - (truth.qrs_ms - 100 if round(truth.qrs_ms) >= 120 else 0)
        framingham = qt + 154 * (1 - 60 / truth.hr_bpm)
        assert (v.MARKED_QT_PROLONGATION in labels) == (framingham > 500)
        assert (v.PROLONGED_QT in labels) == (450 <= framingham <= 500)
        leads = truth.leads
        sokolow = leads["V1"].s_mv + max(leads["V5"].r_mv, leads["V6"].r_mv)
        lvh = sokolow > 3.5 or leads["I"].r_mv > 1.5 or leads["aVL"].r_mv > 1.1
        assert (v.LVH in labels) == lvh, (truth.id, sokolow)
        low = (max(leads[lead].qrs_pp_mv for lead in STANDARD_LEADS[:6]) < 0.5
               or max(leads[lead].qrs_pp_mv for lead in STANDARD_LEADS[6:]) < 1.0)
        assert (v.LOW_QRS_VOLTAGE in labels) == low
        if truth.voltage_mode == "lvh":
            assert v.LVH in labels


def test_st_elevation_labels_name_the_simulated_territory(records):
    injured = [truth for _, truth in records if truth.st_territory is not None]
    assert injured
    for truth in injured:
        label = v.territory_label(v.ST_ELEVATION, truth.st_territory)
        if label in truth.labels:
            continue
        # An injury too small (or attenuated by low voltage) to reach the threshold is not labelled,
        # nor one discordant to the QRS of a bundle branch block (secondary, by the protocol).
        assert truth.st_injury_mv < 0.25 or truth.voltage_mode == "low" or truth.conduction in ("lbbb", "rbbb"), truth
    for _, truth in records:
        if truth.st_territory is None and truth.conduction not in ("lbbb", "rbbb"):
            assert not any(label.startswith(v.ST_ELEVATION) for label in truth.labels), truth.labels


def test_normal_ecg_only_without_abnormal_labels(records):
    for _, truth in records:
        abnormal = [label for label in truth.labels if label not in v.NORMAL_LABELS]
        assert (v.NORMAL_ECG in truth.labels) == (not abnormal)
        assert all(label in v.LABELS for label in truth.labels), truth.labels


def test_the_set_has_variety(records):
    labels = {label for _, truth in records for label in truth.labels}
    for expected in (v.SINUS_RHYTHM, v.SINUS_BRADYCARDIA, v.SINUS_TACHYCARDIA, v.ATRIAL_FIBRILLATION,
                     v.FIRST_DEGREE_AV_BLOCK, v.RBBB, v.LBBB, v.LEFT_AXIS_DEVIATION, v.RIGHT_AXIS_DEVIATION,
                     v.LVH, v.LOW_QRS_VOLTAGE, v.PROLONGED_QT, v.NORMAL_ECG):
        assert expected in labels, expected
    assert any(label.startswith(v.ST_ELEVATION) for label in labels)
    assert {truth.noise for _, truth in records} >= {"clean", "typical", "noisy"}


def test_measured_heart_rate_within_2_bpm_on_regular_rhythms(records):
    errors = []
    for signal, truth in records:
        if truth.rhythm != "sinus":
            continue
        hr = measure(signal, FS).global_.hr_bpm
        assert hr is not None, truth.id
        errors.append(abs(hr - truth.hr_bpm))
    assert len(errors) >= 30
    assert max(errors) <= 2.0, sorted(errors)[-3:]
    assert math.isfinite(float(np.mean(errors)))
