"""P waves locked to the QRS, seen over all beats together (`ingest.measure.p_lock`): a low sinus P that
the single-beat search misses still repeats before every QRS; fibrillatory waves and noise do not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.features import measure
from ingest.measure.p_lock import LOCK_LEADS, locked_p
from ingest.protocol import protocol_read, vocabulary as v
from ingest.protocol.beat_pattern import LOCKED_FROM, atrial_activity
from tests.ingest_features.synthetic import (
    FS,
    NORMAL_LEADS,
    Beat,
    ecg,
    fibrillation_waves,
    irregular_onsets,
    qrs_onsets,
)

# A P wave of 0.02 mV in II (0.15 of the usual) in 0.01 mV of noise at 100 bpm: too low for the
# single-beat search, plain over 15 beats.
LOW_P = Beat().with_leads(**{name: replace(lead, p=lead.p * 0.15) for name, lead in NORMAL_LEADS.items()})
INVERTED_P = Beat().with_leads(**{name: replace(lead, p=-lead.p) for name, lead in NORMAL_LEADS.items()})


def test_the_share_estimates_the_repeating_waves_share_of_the_power():
    """Ten beats of one wave plus independent noise: the share is the wave's part of the stretch's
    power (1 without noise, 1/2 with noise of the wave's power, about 0 for noise alone)."""
    fs, before, count = 500.0, 300, 10
    qrs_on = before - 25  # the median QRS onset, 50 ms before the fiducial point: the stretch is 85..235
    fiducials = np.arange(count) * 500 + 400
    beat = np.zeros(before)
    beat[110:160] = 0.1 * np.sin(np.linspace(0.0, np.pi, 50))  # a 100 ms P wave inside the stretch
    stretch_power = float(np.var(beat[qrs_on - 15 - 150:qrs_on - 15]))
    rows = [STANDARD_LEADS.index(lead) for lead in LOCK_LEADS]
    for wave, noise_power, expected in ((1.0, 0.0, 1.0), (1.0, stretch_power, 0.5), (0.0, stretch_power, 0.0)):
        signal = np.zeros((12, int(fiducials[-1]) + 600))
        for fiducial in fiducials:
            signal[rows, fiducial - before:fiducial] += wave * beat
        signal[rows] += np.random.default_rng(0).normal(0.0, np.sqrt(noise_power), (len(rows), signal.shape[1]))
        lock = locked_p(signal, fiducials, np.ones(count, bool), np.full(count, 1000.0), qrs_on=qrs_on,
                        qt_samples=200, before=before, fs=fs)
        assert lock is not None and lock.beats == count and lock.span_ms == 300.0
        for lead in LOCK_LEADS:
            assert lock.share_by_lead[lead] == pytest.approx(expected, abs=0.06), (wave, noise_power, lock)
            if wave:
                assert lock.peak_mv_by_lead[lead] == pytest.approx(0.1, abs=0.03)


def test_a_low_p_wave_that_single_beats_miss_is_locked_and_read_as_sinus():
    features = measure(ecg(LOW_P, qrs_onsets(100), noise_mv=0.01, seed=1), FS)
    lock = features.rhythm.p_lock
    assert lock is not None and lock.beats >= 12
    assert all(lock.share_by_lead[lead] >= LOCKED_FROM + 0.1 for lead in LOCK_LEADS), lock
    assert lock.peak_mv_by_lead["II"] > 0
    activity = atrial_activity(features)
    assert activity.share is not None and activity.share < 0.3  # the single-beat search finds few
    assert activity.organised is True
    read = protocol_read(features)
    assert read.labels[0] == v.SINUS_RHYTHM, read.labels
    assert "an upright P wave in II stands at the same place before every QRS" in read.steps[1]


def test_the_same_rhythm_without_p_waves_is_not_locked():
    features = measure(ecg(LOW_P, qrs_onsets(100), noise_mv=0.01, seed=1, p_waves=False), FS)
    lock = features.rhythm.p_lock
    assert lock is not None and all(abs(share) < 0.2 for share in lock.share_by_lead.values()), lock
    assert protocol_read(features).labels[0] == v.UNDETERMINED_RHYTHM


def test_fibrillatory_waves_are_not_locked():
    features = measure(ecg(Beat(), irregular_onsets(), p_waves=False, noise_mv=0.03) + fibrillation_waves(), FS)
    lock = features.rhythm.p_lock
    assert lock is not None and all(share < 0.3 for share in lock.share_by_lead.values()), lock
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION


def test_an_inverted_locked_p_wave_is_not_taken_for_a_sinus_p():
    features = measure(ecg(INVERTED_P, qrs_onsets(100), noise_mv=0.005, seed=1), FS)
    lock = features.rhythm.p_lock
    assert lock is not None and lock.share_by_lead["II"] >= LOCKED_FROM and lock.peak_mv_by_lead["II"] < 0
    assert atrial_activity(features).locked == {}
    assert v.SINUS_RHYTHM not in protocol_read(features).labels
