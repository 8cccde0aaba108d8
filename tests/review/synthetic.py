"""Synthetic 12-lead ECGs with exactly known timing, for the review page's tests.

Every beat is the same sum of Gaussian waves (P, R, S, T) placed at exactly `rr_ms`
intervals, so an R-R interval on the page is known to the sample: the calipers' test
measures it. The limb leads obey Einthoven's and Goldberger's relations (III = II - I,
aVR = -(I + II) / 2, ...), so the protocol reader sees a plausible, normal ECG.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ingest.ecg import STANDARD_LEADS

FS = 500
SECONDS = 10
# Where each wave sits (ms from the R peak) and how wide it is (ms).
WAVES = {"P": (-170.0, 22.0), "R": (0.0, 9.0), "S": (24.0, 7.0), "T": (300.0, 45.0)}
# Each wave's amplitude (mV) in I, II and the chest leads: an rS in V1 growing to a tall R in
# V4-V5, no Q wave anywhere. The other limb leads follow from I and II.
AMPLITUDES = {
    "I": {"P": 0.10, "R": 0.6, "S": -0.10, "T": 0.20}, "II": {"P": 0.15, "R": 1.0, "S": -0.25, "T": 0.30},
    "V1": {"P": 0.08, "R": 0.2, "S": -0.9, "T": 0.10}, "V2": {"P": 0.08, "R": 0.35, "S": -1.2, "T": 0.35},
    "V3": {"P": 0.08, "R": 0.7, "S": -0.7, "T": 0.40}, "V4": {"P": 0.08, "R": 1.2, "S": -0.4, "T": 0.40},
    "V5": {"P": 0.08, "R": 1.1, "S": -0.2, "T": 0.35}, "V6": {"P": 0.08, "R": 0.9, "S": -0.1, "T": 0.30},
}
R_AMPLITUDE_MV = AMPLITUDES["II"]["R"]  # lead II, the rhythm strip


def beat_times_s(rr_ms: float, first_s: float = 0.5, seconds: float = SECONDS) -> np.ndarray:
    return np.arange(first_s, seconds - 0.45, rr_ms / 1000.0)


def lead_signal(t_s: np.ndarray, beats_s: np.ndarray, amplitudes: dict[str, float]) -> np.ndarray:
    """One lead (mV) at times `t_s`, beats with their R peaks at `beats_s`."""
    total = np.zeros_like(t_s)
    for beat in beats_s:
        for wave, (centre_ms, width_ms) in WAVES.items():
            total += amplitudes[wave] * np.exp(-0.5 * ((t_s - beat - centre_ms / 1000.0) / (width_ms / 1000.0)) ** 2)
    return total


def twelve_lead(rr_ms: float, *, fs: int = FS, seconds: float = SECONDS) -> np.ndarray:
    """(12, fs * seconds) mV in STANDARD_LEADS order, R peaks every `rr_ms` from 0.5 s."""
    t = np.arange(int(fs * seconds)) / fs
    beats = beat_times_s(rr_ms, seconds=seconds)
    leads = {name: lead_signal(t, beats, amplitudes) for name, amplitudes in AMPLITUDES.items()}
    lead_i, lead_ii = leads["I"], leads["II"]
    leads |= {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2,
              "aVF": lead_ii - lead_i / 2}
    return np.stack([leads[name] for name in STANDARD_LEADS])


def write_record(folder: Path, name: str, rr_ms: float, demographics: dict[str, str]) -> Path:
    """A WFDB record (format 16, 500 Hz) of `twelve_lead(rr_ms)` with a demographics sidecar."""
    import wfdb

    signal = twelve_lead(rr_ms)
    wfdb.wrsamp(name, fs=FS, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
    (folder / f"{name}.json").write_text(json.dumps(demographics))
    return folder / f"{name}.hea"
