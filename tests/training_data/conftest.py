"""Fixtures for the training-data tests: tiny record folders written at test time (never committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from training.synthetic import simulate


def write_wfdb(folder: Path, name: str, signal: np.ndarray, fs: int = 500, comments: list[str] | None = None) -> Path:
    """A 12-lead WFDB record (format 16, 1 uV resolution) of a (12, N) mV signal; returns the .hea path."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T.astype(np.float64),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, comments=comments or [],
                write_dir=str(folder))
    return folder / f"{name}.hea"


def simulated(index: int, seed: int = 7) -> np.ndarray:
    signal, _ = simulate(f"fixture-{index}", seed, index)
    return signal


@pytest.fixture
def wfdb_writer():
    return write_wfdb


@pytest.fixture
def simulated_signal():
    return simulated
