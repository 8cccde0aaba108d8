"""Measuring leads recorded for part of the record: a printed 3x4 page read back as a signal.

Each lead is NaN outside its 2.5 s panel, lead II is whole (the rhythm strip). The measurement
must come from each lead's own beats and agree with the measurement of the full recording,
and must not mistake the unrecorded stretches for signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.measure.features import measure
from ingest.readers.wfdb import read_wfdb

PANEL = {"I": 0, "II": 0, "III": 0, "aVR": 1, "aVL": 1, "aVF": 1, "V1": 2, "V2": 2, "V3": 2, "V4": 3, "V5": 3, "V6": 3}
REAL = Path(__file__).resolve().parents[2] / "data" / "real"


def as_printed(signal: np.ndarray, fs: float) -> np.ndarray:
    """The signal as a 3x4 + II page prints it: NaN where a lead's panel does not show it."""
    printed = np.full_like(signal, np.nan)
    width = int(2.5 * fs)
    for row, lead in enumerate(STANDARD_LEADS):
        start = PANEL[lead] * width
        printed[row, start:start + width] = signal[row, start:start + width]
    printed[STANDARD_LEADS.index("II")] = signal[STANDARD_LEADS.index("II")]
    return printed


@pytest.mark.parametrize("record", ["ludb/1", "ptbxl/HR00001", "georgia/E00001"])
def test_a_printed_page_measures_like_the_full_recording(record: str) -> None:
    ecg = read_wfdb(REAL / f"{record}.hea")
    signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]][:, :5000].astype(np.float64)
    full = measure(signal, ecg.sampling_rate_hz)
    printed = measure(as_printed(signal, ecg.sampling_rate_hz), ecg.sampling_rate_hz)
    assert printed.global_.hr_bpm == pytest.approx(full.global_.hr_bpm, abs=2.0)
    assert "leads recorded in part: beats found on II" in " ".join(printed.notes)
    for name, tolerance in (("qrs_ms", 12.0), ("qt_ms", 30.0), ("qrs_axis_deg", 15.0)):
        ours, reference = getattr(printed.global_, name), getattr(full.global_, name)
        if reference is not None:
            assert ours is not None and abs(ours - reference) <= tolerance, (name, ours, reference)


def test_zeros_in_place_of_the_unprinted_stretches_would_measure_nothing() -> None:
    """Why NaN matters: the same page with 0 mV where nothing was printed loses its beats."""
    ecg = read_wfdb(REAL / "ptbxl" / "HR00001.hea")
    signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]][:, :5000].astype(np.float64)
    zeros = np.nan_to_num(as_printed(signal, ecg.sampling_rate_hz))
    assert measure(zeros, ecg.sampling_rate_hz).global_.qrs_ms is None
