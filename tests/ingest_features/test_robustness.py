"""What `measure` does with bad leads, bad records and odd inputs: None and a note, never a guess."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ingest.measure.beats import classify_and_align, detect_qrs, qrs_band, qrs_energy
from ingest.ecg import STANDARD_LEADS
from ingest.measure.features import measure
from tests.ingest_features.synthetic import NORMAL_LEADS, Beat, ecg, qrs_onsets

NORMAL = Beat()
AT_70 = qrs_onsets(70, seconds=10.6)
LEAD = {name: index for index, name in enumerate(STANDARD_LEADS)}


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    signal = ecg(NORMAL, AT_70, noise_mv=0.01, wander_mv=0.1)
    signal.setflags(write=False)
    return signal


def assert_globals_close(features, reference, tolerance_ms=8):
    for name in ("pr_ms", "qrs_ms", "qt_ms"):
        ours, expected = getattr(features.global_, name), getattr(reference.global_, name)
        assert ours is not None and abs(ours - expected) <= tolerance_ms, (name, ours, expected, features.notes)
    assert features.global_.hr_bpm == pytest.approx(70, abs=1)


def test_flat_lead_is_not_measured_and_said_so(clean):
    signal = clean.copy()
    signal[LEAD["V3"]] = 0.0
    features = measure(signal, 500)
    assert "V3" not in features.leads_measured and len(features.leads_measured) == 11
    assert "lead V3 is flat: not measured" in features.notes
    assert features.leads["V3"].median.qrs_dur_ms is None and features.leads["V3"].beats == []
    assert "V3" not in features.st_deviation_mv
    assert_globals_close(features, measure(clean, 500))


def test_noisy_lead_is_not_measured_and_said_so(clean):
    signal = clean.copy()
    signal[LEAD["V4"]] += np.random.default_rng(1).normal(0.0, 0.3, signal.shape[1]).astype(np.float32)
    features = measure(signal, 500)
    assert "V4" not in features.leads_measured
    assert "lead V4 is too noisy: not measured" in features.notes
    assert features.leads["V4"].median.r_amp_mv is None
    assert_globals_close(features, measure(clean, 500))


def test_a_lead_wandering_within_each_beat_keeps_its_qrs_and_loses_p_st_and_t(clean):
    # Motion wander, as in precordial leads of real records (ningbo/JS20010 V1-V3): slow swings of a few
    # tenths of a mV that differ from beat to beat, so they hide P, ST and T but not a QRS of mV.
    signal = clean.copy()
    t = np.arange(signal.shape[1]) / 500.0
    rng = np.random.default_rng(3)
    wander = sum(0.12 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in (1.3, 1.9, 2.7, 3.4))
    signal[LEAD["V2"]] += wander.astype(np.float32)
    features, reference = measure(signal, 500), measure(clean, 500)
    assert features.leads_qrs_only == ["V2"] and "V2" not in features.leads_measured, features.notes
    assert any(note.startswith("lead V2 is too noisy for P, ST and T") and note.endswith("its QRS alone is measured")
               for note in features.notes), features.notes
    v2, clean_v2 = features.leads["V2"].median, reference.leads["V2"].median
    for name in ("r_amp_mv", "s_amp_mv", "qrs_amp_mv"):
        assert abs(getattr(v2, name) - getattr(clean_v2, name)) <= 0.1, (name, getattr(v2, name), getattr(clean_v2, name))
    assert v2.t_amp_mv is None and v2.p_amp_mv is None and v2.st_level_mv is None and v2.qt_ms is None
    assert "V2" not in features.st_deviation_mv
    assert all(beat.t_amp_mv is None and beat.r_amp_mv is not None for beat in features.leads["V2"].beats[1:-1])
    assert features.leads["V2"].p_notched is None
    assert_globals_close(features, reference)
    # the same wander three times as large buries the QRS too: not measured at all
    signal[LEAD["V2"]] += 2 * wander.astype(np.float32)
    worse = measure(signal, 500)
    assert "V2" not in worse.leads_qrs_only and "lead V2 is too noisy: not measured" in worse.notes


def test_pure_noise_gives_no_numbers():
    noise = np.random.default_rng(0).normal(0.0, 0.3, (12, 5000)).astype(np.float32)
    features = measure(noise, 500)
    assert features.global_.model_dump() == {name: None for name in features.global_.model_dump()}
    assert features.leads_measured == [] and features.st_deviation_mv == {}
    assert any("nothing measured" in note for note in features.notes)


def test_all_zero_signal():
    features = measure(np.zeros((12, 5000), dtype=np.float32), 500)
    assert features.global_.hr_bpm is None and features.rhythm.beat_count == 0
    assert any("nothing measured" in note for note in features.notes)


def test_zero_padded_tail_is_ignored():
    """A 6 s record padded with zeros to the model's 10 s window measures like the 6 s record."""
    six = ecg(NORMAL, qrs_onsets(70, seconds=6.6), seconds=6.0, noise_mv=0.01, wander_mv=0.1)
    padded = np.zeros((12, 5000), dtype=np.float32)
    padded[:, :six.shape[1]] = six
    features, unpadded = measure(padded, 500), measure(six, 500)
    assert any(note.startswith("trailing zero padding of 4.00 s") for note in features.notes)
    assert features.rhythm.beat_count == unpadded.rhythm.beat_count
    assert features.global_ == unpadded.global_
    assert features.global_.hr_bpm == pytest.approx(70, abs=1)


def test_artefact_burst_does_not_change_the_rate(clean):
    signal = clean.copy()
    signal[:, 2000:2600] += np.random.default_rng(5).normal(0.0, 1.0, (12, 600)).astype(np.float32)
    features = measure(signal, 500)
    assert features.global_.hr_bpm == pytest.approx(70, abs=2)
    assert any("in noise" in note for note in features.notes)
    assert_globals_close(features, measure(clean, 500))


def test_flat_t_wave_in_one_lead_and_in_all():
    """A lead with a clear QRS and no T deflection has a FLAT T: a measured amplitude near 0, no T end.

    (Until the training simulator showed the protocol missing flat T waves, such a T was
    reported as absent, amplitude None, and the flat-T rule could never see it.)
    """
    no_t_v1 = NORMAL.with_leads(V1=replace(NORMAL_LEADS["V1"], t=0.0))
    features = measure(ecg(no_t_v1, AT_70, noise_mv=0.01), 500)
    assert features.leads["V1"].median.qt_ms is None and features.leads["V1"].median.t_dur_ms is None
    assert features.leads["V1"].median.t_amp_mv == pytest.approx(0.0, abs=0.02)
    assert any(note.startswith("flat T") and note.endswith("in V1: T end not measured there")
               for note in features.notes), features.notes
    assert features.global_.qt_ms == pytest.approx(NORMAL.qt_ms, abs=12)

    no_t = NORMAL.with_leads(**{name: replace(lead, t=0.0) for name, lead in NORMAL_LEADS.items()})
    features = measure(ecg(no_t, AT_70, noise_mv=0.01), 500)
    assert features.global_.qt_ms is None and features.global_.qtc_ms is None
    assert features.global_.t_axis_deg is None
    assert any(note.startswith("T end not measured") for note in features.notes)
    assert features.global_.qrs_ms is not None  # the rest is still measured
    assert all(abs(lead.median.t_amp_mv) < 0.03 for lead in features.leads.values())


def test_too_few_leads_with_signal(clean):
    signal = np.zeros_like(clean)
    signal[LEAD["II"]] = clean[LEAD["II"]]
    signal[LEAD["V2"]] = clean[LEAD["V2"]]
    features = measure(signal, 500)
    assert features.global_.qrs_ms is None and features.leads_measured == []
    assert any("nothing measured" in note for note in features.notes)
    # Two leads still show every beat: the rate is known.
    assert features.global_.hr_bpm == pytest.approx(70, abs=1) and features.rhythm.regular is True


def test_limb_lead_reversal_measures_and_moves_the_axis(clean):
    """Left/right arm electrodes swapped: I inverted, II and III, aVR and aVL exchanged."""
    swapped = clean.copy()
    swapped[LEAD["I"]] = -clean[LEAD["I"]]
    swapped[[LEAD["II"], LEAD["III"]]] = clean[[LEAD["III"], LEAD["II"]]]
    swapped[[LEAD["aVR"], LEAD["aVL"]]] = clean[[LEAD["aVL"], LEAD["aVR"]]]
    features, normal = measure(swapped, 500), measure(clean, 500)
    assert 90 < features.global_.qrs_axis_deg <= 180 and -30 < normal.global_.qrs_axis_deg < 90
    assert "I" in features.rhythm.p_negative_in  # the reversal's sign in the P wave
    assert_globals_close(features, normal)


def test_inverted_lead_i_alone_does_not_crash(clean):
    signal = clean.copy()
    signal[LEAD["I"]] *= -1
    features = measure(signal, 500)
    assert features.global_.qrs_axis_deg is not None and features.global_.hr_bpm == pytest.approx(70, abs=1)


def test_non_finite_samples_are_zeros(clean):
    signal = clean.copy()
    signal[LEAD["V5"], 100:110] = np.nan
    features = measure(signal, 500)
    assert features.global_.hr_bpm == pytest.approx(70, abs=1)


@pytest.mark.parametrize("shape", [(12,), (8, 5000), (5000, 12)])
def test_a_signal_that_is_not_twelve_leads_is_an_error(shape):
    with pytest.raises(ValueError, match="12"):
        measure(np.zeros(shape, dtype=np.float32), 500)


def test_invalid_sampling_rate_is_an_error(clean):
    with pytest.raises(ValueError, match="sampling rate"):
        measure(clean, 0)


def test_output_round_trips_through_json(clean):
    """What the worker stores and the protocol reader loads: JSON, with the 'global' alias."""
    from ingest.measure.measured import GroundingFeatures

    features = measure(clean, 500)
    again = GroundingFeatures.model_validate_json(features.model_dump_json(by_alias=True))
    assert again == features



def test_a_beat_detected_at_the_last_sample_stays_inside_the_record(clean) -> None:
    # Found by the training simulator: a QRS detected in the record's last sample aligned
    # (by up to +20 ms) past the end, and cutting the windows raised IndexError.
    x = clean[:, :5000]
    band = qrs_band(x, 500)
    detections = np.append(detect_qrs(qrs_energy(band, 500), 500), [0, x.shape[1] - 1])
    detections.sort()
    beats = classify_and_align(band, detections, 500)
    assert beats.fiducial.min() >= 0 and beats.fiducial.max() <= x.shape[1] - 1
    assert beats.edge[0] and beats.edge[-1] and not beats.dominant[[0, -1]].any()
