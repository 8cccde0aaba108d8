"""Heart rate on neurokit2's simulated 12-lead ECGs, whose rate is set by construction.

`ecg_simulate(method="multileads")` draws leads with different morphologies, baseline
wander and amplitudes (some with a QRS smaller than the T wave), a fair test of a
detector that combines leads.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.features import measure


def simulated(heart_rate: int, seed: int) -> np.ndarray:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = nk.ecg_simulate(duration=10, sampling_rate=500, heart_rate=heart_rate, method="multileads",
                                random_state=seed)
    assert list(frame.columns) == list(STANDARD_LEADS)
    return frame.to_numpy().T.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("heart_rate", [45, 60, 75, 100, 130])
def test_heart_rate_within_2_bpm(heart_rate, seed):
    features = measure(simulated(heart_rate, seed), 500)
    assert features.global_.hr_bpm is not None, features.notes
    assert abs(features.global_.hr_bpm - heart_rate) <= 2
    # One beat per RR: the detection neither splits beats (T waves) nor drops them.
    assert abs(features.rhythm.beat_count - heart_rate * 10 / 60) <= 1.5
    assert features.rhythm.regular is True
    assert features.global_.qrs_ms is not None and 60 <= features.global_.qrs_ms <= 160


def test_t_waves_detected_with_every_qrs_are_dropped():
    """An energy curve with a QRS every 480 ms (125 bpm) and, 260 ms after each, a T wave a third
    as large: every T clears the detection threshold, so all intervals alternate 260/220 ms and
    their median is half the RR. The T waves must still be recognised as such."""
    from ingest.measure.beats import detect_qrs

    fs, rr = 500, 240
    t = np.arange(5000)
    energy = np.zeros(5000)
    for start in range(100, 4900, rr):
        energy += np.exp(-0.5 * ((t - start) / 8.0) ** 2)
        energy += 0.35 * np.exp(-0.5 * ((t - start - 130) / 15.0) ** 2)
    peaks = detect_qrs(energy, fs)
    assert np.all(np.abs(np.diff(peaks) - rr) <= 2), np.diff(peaks)
