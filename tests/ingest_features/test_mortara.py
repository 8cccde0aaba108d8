"""`measure` on a real 12-lead ECG against the recording device's own measurements.

The Mortara ELI 250 measured this ECG itself; a second algorithm will not agree to the
millisecond (IEC 60601-2-25 tolerates mean differences of about 10 ms PR, 6 ms QRS and
12 ms QT against a referee, over a database), so the bounds here are per-record ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.features import measure

# Largest differences accepted against the device, per measurement (ms or degrees).
BOUNDS = {"pr_ms": 15, "qrs_ms": 10, "qt_ms": 20, "qtc_ms": 20, "qrs_axis_deg": 15, "p_axis_deg": 20,
          "t_axis_deg": 20, "rr_ms": 10}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_global_measurement_agrees_with_device(mortara, name):
    ours = getattr(mortara.features.global_, name)
    device = mortara.device.measurements[name]
    assert ours is not None, f"{name} not measured: {mortara.features.notes}"
    assert abs(ours - device) <= BOUNDS[name], f"{name}: ours {ours}, device {device}"


def test_heart_rate_and_rhythm(mortara):
    rhythm = mortara.features.rhythm
    assert abs(mortara.features.global_.hr_bpm - 60000 / mortara.device.measurements["rr_ms"]) <= 2
    # The device calls it sinus rhythm: regular, a P before every QRS, upright in II, inverted in aVR.
    assert rhythm.regular is True
    assert rhythm.p_wave_fraction == 1.0
    assert "II" in rhythm.p_positive_in and "aVR" in rhythm.p_negative_in
    assert rhythm.ectopic_count == 0


def test_every_beat_found_where_the_device_put_it(mortara):
    """Our fiducial points against the device's, one for one (the two define them a few ms apart)."""
    ours = np.asarray(mortara.features.rhythm.beat_times_ms)
    device = np.asarray(mortara.device.fiducials_ms)
    assert ours.shape == device.shape
    assert np.max(np.abs(ours - device)) <= 10


def test_amplitudes_match_the_device_median_beat(mortara):
    """R, S and ST levels of our median beats against the median beat the device stored."""
    median, marks = mortara.device.median_beat, mortara.device.median_marks
    onset, offset = marks["QRS Onset"], marks["QRS Offset"]
    baseline = median[:, onset - 20:onset - 4].mean(axis=1)
    qrs = median[:, onset:offset + 1] - baseline[:, None]
    st_60 = median[:, offset + 60] - baseline
    for index, lead in enumerate(STANDARD_LEADS):
        ours = mortara.features.leads[lead].median
        if lead not in mortara.features.leads_measured:
            continue
        assert ours.r_amp_mv == pytest.approx(max(qrs[index].max(), 0), abs=0.05, rel=0.05), lead
        assert ours.qrs_amp_mv == pytest.approx(np.ptp(qrs[index]), abs=0.05, rel=0.05), lead
        assert ours.st_level_mv == pytest.approx(st_60[index], abs=0.03), lead
    assert mortara.features.voltages.r_v5_mv == pytest.approx(qrs[10].max(), rel=0.05)
    assert mortara.features.voltages.s_v1_mv == pytest.approx(-qrs[6].min(), rel=0.05)


def test_lead_shapes_of_a_normal_ecg(mortara):
    """The device read "ECG NORMALE": what a normal ECG looks like lead by lead."""
    leads = mortara.features.leads
    assert leads["V1"].qrs_morphology == "rS"
    assert leads["aVR"].qrs_morphology in {"QS", "Qr", "rS"}
    assert leads["V6"].qrs_morphology is not None and "R" in leads["V6"].qrs_morphology
    # No P mitrale: the P in the limb leads where it is judged is a single hump.
    assert leads["II"].p_notched is False and leads["I"].p_notched is False
    # No left ventricular hypertrophy by Sokolow-Lyon (< 3.5 mV), no ST elevation of 0.2 mV.
    assert mortara.features.voltages.sokolow_lyon_mv < 3.5
    assert max(mortara.features.st_deviation_mv.values()) < 0.2


def test_per_beat_values_follow_the_median(mortara):
    lead = mortara.features.leads["II"]
    assert len(lead.beats) == mortara.features.rhythm.beat_count
    qts = [beat.qt_ms for beat in lead.beats if beat.qt_ms is not None]
    prs = [beat.pr_ms for beat in lead.beats if beat.pr_ms is not None]
    assert len(qts) >= 8 and len(prs) >= 8
    assert abs(np.median(qts) - lead.median.qt_ms) <= 10
    assert abs(np.median(prs) - lead.median.pr_ms) <= 10
    assert lead.beats[0].rr_ms is None and lead.beats[1].rr_ms == pytest.approx(1000, abs=30)


def test_measuring_at_the_source_rate_gives_the_same_answers(mortara, mortara_dicom_path):
    """The Mortara signal at its own 1000 Hz: the algorithm works in seconds, not samples."""
    from ingest.readers.read import read_ecg

    ecg = read_ecg(mortara_dicom_path)
    signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]]
    at_1000 = measure(signal, ecg.sampling_rate_hz).global_
    at_500 = mortara.features.global_
    for name in ("pr_ms", "qrs_ms", "qt_ms"):
        assert abs(getattr(at_1000, name) - getattr(at_500, name)) <= 6, name
    assert abs(at_1000.qrs_axis_deg - at_500.qrs_axis_deg) <= 3
