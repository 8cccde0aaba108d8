"""The atrial waves between the QRS complexes (`ingest.measure.atrial_waves`): flutter's repeat at one
rate in every atrial lead, fibrillation's and a sinus rhythm's do not; and the reading that follows."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.measure.atrial_waves import ATRIAL_LEADS, atrial_waves
from ingest.measure.features import measure
from ingest.protocol import protocol_read, vocabulary as v
from ingest.protocol.flutter import ORGANISED_FROM, REPEATS_FROM, flutter_waves
from tests.ingest_features.synthetic import (
    FS,
    Beat,
    ecg,
    fibrillation_waves,
    flutter_onsets,
    flutter_waves as flutter_signal,
    irregular_onsets,
    qrs_onsets,
)

FLUTTER_RATE = 300.0  # per minute: 5 Hz
# Beats conducted at 2:1 to 4:1 come every 350-800 ms: a QT that ends before the next QRS.
FAST_BEAT = Beat(qt_ms=300.0, t_ms=130.0)


def _flutter_ecg(fs: float = FS, rate: float = FLUTTER_RATE) -> np.ndarray:
    onsets = flutter_onsets(rate)
    onsets = onsets[onsets < 9.4]
    return ecg(FAST_BEAT, onsets, fs=fs, p_waves=False, noise_mv=0.01) + flutter_signal(rate, fs=fs, first_s=0.5)


@pytest.fixture(scope="module")
def flutter_features():
    return measure(_flutter_ecg(), FS)


def test_flutter_with_variable_conduction_shows_one_organised_rate_in_every_atrial_lead(flutter_features):
    waves = flutter_features.rhythm.atrial_waves
    assert [lead.lead for lead in waves] == list(ATRIAL_LEADS)
    for lead in waves:
        assert lead.frequency_hz == pytest.approx(FLUTTER_RATE / 60.0, abs=0.1), lead
        assert lead.organisation >= ORGANISED_FROM, lead
        assert lead.repeat_correlation >= REPEATS_FROM, lead
    found = flutter_waves(flutter_features)
    assert found is not None and abs(found.rate_per_min - FLUTTER_RATE) <= 6


def test_flutter_is_read_as_flutter_not_fibrillation_nor_premature_beats(flutter_features):
    read = protocol_read(flutter_features)
    assert read.labels[0] == v.ATRIAL_FLUTTER, read.labels
    assert v.ATRIAL_FIBRILLATION not in read.labels and v.ECTOPIC_BEATS not in read.labels
    rhythm = read.steps[1]
    assert "Atrial waves at 30" in rhythm and "alike in II, III, aVF, V1" in rhythm
    assert "irregular RR, variable conduction: atrial flutter." in rhythm
    assert "PR interval not applicable" in read.steps[2]


def test_without_the_flutter_waves_the_same_beats_are_atrial_fibrillation():
    """The control: the variable conduction alone is irregularly irregular without P waves."""
    onsets = flutter_onsets(FLUTTER_RATE)
    features = measure(ecg(FAST_BEAT, onsets[onsets < 9.4], p_waves=False, noise_mv=0.01), FS)
    assert flutter_waves(features) is None
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION


def test_fibrillation_waves_are_not_flutter():
    signal = ecg(Beat(), irregular_onsets(seed=4), p_waves=False, noise_mv=0.01) + fibrillation_waves(seed=4)
    features = measure(signal, FS)
    assert len(features.rhythm.atrial_waves) == 4
    assert flutter_waves(features) is None
    assert protocol_read(features).labels[0] == v.ATRIAL_FIBRILLATION


@pytest.mark.parametrize("hr", [60, 130])
def test_a_sinus_rhythm_shows_no_flutter(hr):
    """At 130 bpm the P waves come every 460 ms: their second harmonic lies in the flutter band."""
    features = measure(ecg(Beat(qt_ms=300.0, t_ms=130.0, pr_ms=140.0), qrs_onsets(hr), noise_mv=0.01), FS)
    assert flutter_waves(features) is None
    read = protocol_read(features)
    assert v.ATRIAL_FLUTTER not in read.labels
    assert read.labels[0] in (v.SINUS_RHYTHM, v.SINUS_TACHYCARDIA)


@pytest.mark.parametrize("noise_mv, wander_mv, seed", [(0.05, 0.0, 1), (0.02, 0.3, 2), (0.08, 0.2, 3)])
def test_noise_and_baseline_wander_on_a_sinus_rhythm_are_not_flutter(noise_mv, wander_mv, seed):
    """Noise spreads its power over the band and does not repeat; wander is slower than any atrial
    wave. Neither is one organised rate in every atrial lead."""
    signal = ecg(Beat(), qrs_onsets(75), noise_mv=noise_mv, wander_mv=wander_mv, seed=seed)
    features = measure(signal, FS)
    assert flutter_waves(features) is None
    assert v.ATRIAL_FLUTTER not in protocol_read(features).labels


def test_the_same_flutter_at_1000_hz_measures_alike(flutter_features):
    """The analysis takes every 4th or 8th sample of the 40 Hz signal: the rate does not change it."""
    at_1000 = measure(_flutter_ecg(fs=1000.0), 1000.0).rhythm.atrial_waves
    for slow, fast in zip(flutter_features.rhythm.atrial_waves, at_1000, strict=True):
        assert fast.frequency_hz == pytest.approx(slow.frequency_hz, abs=0.1)
        assert fast.organisation == pytest.approx(slow.organisation, abs=0.1)
        assert fast.repeat_correlation == pytest.approx(slow.repeat_correlation, abs=0.1)


def test_a_slower_flutter_is_found_at_its_own_rate():
    features = measure(_flutter_ecg(rate=250.0), FS)
    found = flutter_waves(features)
    assert found is not None and abs(found.rate_per_min - 250) <= 6


def test_too_few_beats_or_a_lead_recorded_in_part_measure_no_atrial_waves():
    signal = _flutter_ecg()
    onsets = np.round(flutter_onsets(FLUTTER_RATE)[:3] * FS).astype(int)
    assert atrial_waves(signal, onsets, np.ones(3, dtype=bool), FS) == []
    recorded = np.ones(signal.shape, dtype=bool)
    recorded[2, 2000:] = False  # III recorded for 4 s of 10
    onsets = np.round(flutter_onsets(FLUTTER_RATE) * FS).astype(int)
    onsets = onsets[onsets < signal.shape[1] - FS]
    leads = atrial_waves(signal, onsets, np.ones(onsets.size, dtype=bool), FS, recorded)
    assert [lead.lead for lead in leads] == ["II", "aVF", "V1"]
