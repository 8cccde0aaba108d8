"""Fixtures of the reader tests: one simulated 12-lead signal per session (neurokit2 takes ~0.7 s)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ingest_readers.builders import simulated_12lead


@pytest.fixture(scope="session")
def ecg12() -> np.ndarray:
    """(12, 5000) mV, 10 s at 500 Hz, leads in STANDARD_LEADS order. Do not modify: copy."""
    signal = simulated_12lead()
    signal.setflags(write=False)
    return signal
