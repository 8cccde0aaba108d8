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
