"""Signal conditioning and lead quality (`ingest.measure.conditioning`, `features._lead_quality`).

Mains interference is notched only where it stands out, and a notched record measures like the
clean one; a lead is judged noisy by its own beats, not by where the neighbouring beats' waves
fall at an irregular rate; P waves too small for one lead alone are found across the leads.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.conditioning import beat_noise, mains_lines, own_beat_mask, remove_mains
from ingest.measure import features as features_module
from ingest.measure.beats import filtfilt
from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.protocol.rhythm import rhythm_class
from tests.ingest_features.synthetic import FS, Beat, ecg, qrs_onsets

AT_75 = qrs_onsets(75, seconds=10.6)


def _with_mains(signal: np.ndarray, hz: float, mv: float, leads: list[str]) -> np.ndarray:
    t = np.arange(signal.shape[1]) / FS
    out = signal.astype(np.float64).copy()
    for lead in leads:
        out[STANDARD_LEADS.index(lead)] += mv * np.sin(2 * np.pi * hz * t + 0.3)
    return out


@pytest.mark.parametrize("hz", [50.0, 60.0])
def test_a_mains_line_is_found_in_the_leads_that_carry_it_and_notched_out(hz):
    clean = ecg(Beat(), AT_75).astype(np.float64)
    noisy = _with_mains(clean, hz, 0.2, ["II", "aVF", "V2"])
    lines = mains_lines(noisy, FS)
    assert list(lines) == [hz]
    assert [lead for lead, flag in zip(STANDARD_LEADS, lines[hz], strict=True) if flag] == ["II", "aVF", "V2"]
    notched, notes = remove_mains(noisy, FS)
    assert notes == [f"{hz:g} Hz mains interference removed in 3 lead(s)"]
    # The line is gone (0.2 mV before), the ECG itself barely touched, the other leads not at all.
    inner = slice(FS, -FS)
    assert np.abs(notched - clean)[:, inner].max() < 0.03
    untouched = [STANDARD_LEADS.index(lead) for lead in STANDARD_LEADS if lead not in ("II", "aVF", "V2")]
    assert np.array_equal(notched[untouched], noisy[untouched])


def test_a_record_without_mains_interference_is_left_as_it_is():
    clean = ecg(Beat(), AT_75, noise_mv=0.01).astype(np.float64)
    notched, notes = remove_mains(clean, FS)
    assert notes == [] and notched is clean


def test_a_record_with_mains_interference_measures_like_the_clean_one():
    clean = ecg(Beat(), AT_75)
    noisy = _with_mains(clean, 50.0, 0.25, list(STANDARD_LEADS))
    reference, features = measure(clean, FS), measure(noisy, FS)
    assert "50 Hz mains interference removed in 12 lead(s)" in features.notes
    assert features.leads_measured == reference.leads_measured == list(STANDARD_LEADS)
    for name in ("pr_ms", "qrs_ms", "qt_ms"):
        assert getattr(features.global_, name) == pytest.approx(getattr(reference.global_, name), abs=4), name
    assert features.rhythm.p_wave_fraction == pytest.approx(1.0)


def test_own_beat_mask_leaves_out_the_neighbouring_beats_waves():
    fiducial = np.array([500, 800, 1400])  # RR 0.6 s then 1.2 s at 500 Hz
    before, after = 200, 300
    mask = own_beat_mask(fiducial, before, after, rr_s=0.9, fs=FS)
    qt = round(0.45 * np.sqrt(0.9) * FS)
    # The first beat: nothing before it, its window ends where the second beat's P may begin.
    assert mask[0, :before].all()
    assert not mask[0, before + 300 - 150:].any()
    # The second beat's window starts after the first beat's T end.
    first_own = np.argmax(mask[1])
    assert fiducial[1] - before + first_own == 500 + qt + 1
    # The last beat is open at its end.
    assert mask[2, before:].all()


def test_beat_noise_is_the_spread_of_the_beats_where_the_mask_allows():
    rng = np.random.default_rng(1)
    beats = rng.normal(0.0, 0.02, (30, 2, 200))
    beats[:, 1, 80:] += rng.uniform(-1.0, 1.0, (30, 1))  # a wave at a different level in every beat
    median = np.median(beats, axis=0)
    everywhere = np.ones((30, 200), dtype=bool)
    own = everywhere.copy()
    own[:, 80:] = False
    assert beat_noise(beats, median, own, step=1) == pytest.approx([0.02, 0.02], rel=0.15)
    assert beat_noise(beats, median, everywhere, step=1)[1] > 0.1


def test_clean_leads_stay_measured_at_an_irregular_rate_with_premature_beats():
    # A premature atrial beat every third beat: the previous T and the next P move in every window.
    rr = [0.75 if i % 3 else 0.45 for i in range(13)]
    onsets = qrs_onsets(rr_s=rr, first_s=0.5)
    tall_t = Beat().with_leads(**{name: replace(lead, t=1.0)
                                  for name, lead in Beat().leads.items() if name.startswith("V")})
    features = measure(ecg(tall_t, onsets, noise_mv=0.01), FS)
    assert features.leads_measured == list(STANDARD_LEADS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_p_waves_lost_in_slow_wander_lead_by_lead_are_found_across_the_leads(seed, monkeypatch):
    # 50 bpm, P waves of 0.04-0.1 mV, and 0.06 mV of irregular 0.7-4 Hz wander that the baseline
    # spline (one knot a beat) cannot follow: a single lead of a single beat shows no P over
    # three times its noise, the twelve leads together do.
    beat = Beat(qt_ms=420.0).with_leads(**{name: replace(lead, p=0.7 * lead.p) for name, lead in Beat().leads.items()})
    signal = ecg(beat, qrs_onsets(50, seconds=10.6), noise_mv=0.005).astype(np.float64)
    wander = filtfilt(np.random.default_rng(seed).normal(0.0, 1.0, signal.shape), "bandpass", (0.7, 4.0), FS)
    signal += 0.06 * wander / wander.std(axis=1, keepdims=True)
    together = measure(signal, FS)
    assert together.rhythm.p_wave_fraction >= 0.6
    assert together.global_.pr_ms == pytest.approx(160, abs=10)
    # At least half the beats timed at the true PR (the others: where wander hid the P, or took its place).
    beats = together.rhythm.beat_pr_ms
    assert sum(pr is not None and abs(pr - 160) <= 25 for pr in beats) >= len(beats) / 2
    monkeypatch.setattr(features_module, "P_TEMPLATE_MIN_LEADS", 99)  # lead by lead only
    assert measure(signal, FS).rhythm.p_wave_fraction <= 0.25


def test_no_p_wave_is_found_across_the_leads_in_atrial_fibrillation():
    from tests.ingest_features.synthetic import fibrillation_waves, irregular_onsets
    signal = ecg(Beat(), irregular_onsets(seed=4), p_waves=False, noise_mv=0.01) + fibrillation_waves(seed=4)
    features = measure(signal, FS)
    assert features.rhythm.p_wave_fraction is not None and features.rhythm.p_wave_fraction < 0.5
    assert rhythm_class(features) == "atrial fibrillation"


def test_a_slow_rhythm_under_a_large_breathing_wander_keeps_its_p_waves_and_st_levels(monkeypatch):
    """45 /min with 1 mV of 0.25 Hz wander in every lead: one PR knot a beat (1.3 s apart) leaves the
    swing under the P waves, which are then lost; the T-P knots between them keep the P waves and the
    ST level of the clean record."""
    clean = measure(ecg(Beat(), qrs_onsets(45), seed=3), FS)
    wandering = ecg(Beat(), qrs_onsets(45), wander_mv=1.0, seed=3)
    found = measure(wandering, FS)
    assert found.rhythm.p_wave_fraction == 1.0
    assert v.SINUS_BRADYCARDIA in protocol_read(found).labels
    for lead in ("II", "V2", "V5"):
        assert found.leads[lead].median.st_level_mv == pytest.approx(clean.leads[lead].median.st_level_mv, abs=0.02)
    monkeypatch.setattr(features_module, "WANDER_STEP_MV", float("inf"))  # PR knots only
    assert measure(wandering, FS).rhythm.p_wave_fraction < 0.5
