"""Synthetic 12-lead ECGs with exactly known timing, for the review page's tests.

Every beat is the same sum of Gaussian waves (P, R, S, T) placed at exactly `rr_ms`
intervals, so an R-R interval on the page is known to the sample: the calipers' test
measures it. The limb leads obey Einthoven's and Goldberger's relations (III = II - I,
aVR = -(I + II) / 2, ...), so the protocol reader sees a plausible, normal ECG.

`st_mv` adds an injury current: an ST segment raised from the J point (the end of the S wave)
until it falls with the T wave, by the given mV in lead I, II or a chest lead. Raised in II
only, it is an inferior STEMI as a textbook draws it: II, III and aVF up by the same amount,
aVL down by half (the reciprocal depression), I unchanged.
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
# The injury plateau: up within a few ms after the S wave (the J point, about 40 ms after the
# R peak), down with the T wave's end (ms from the R peak, and the edges' time constants).
ST_FROM_MS, ST_TO_MS, ST_RISE_MS, ST_FALL_MS = 40.0, 280.0, 3.0, 20.0


def beat_times_s(rr_ms: float, first_s: float = 0.5, seconds: float = SECONDS) -> np.ndarray:
    return np.arange(first_s, seconds - 0.45, rr_ms / 1000.0)


def _st_plateau(ms: np.ndarray) -> np.ndarray:
    """0 -> 1 -> 0: the injury current's time course (ms from the R peak)."""
    rise = 0.5 * (1.0 + np.tanh((ms - ST_FROM_MS) / (2.0 * ST_RISE_MS)))  # a logistic step, no overflow
    fall = 0.5 * (1.0 - np.tanh((ms - ST_TO_MS) / (2.0 * ST_FALL_MS)))
    return rise * fall


def lead_signal(t_s: np.ndarray, beats_s: np.ndarray, amplitudes: dict[str, float],
                st_mv: float = 0.0) -> np.ndarray:
    """One lead (mV) at times `t_s`, beats with their R peaks at `beats_s`, its ST raised by `st_mv`."""
    total = np.zeros_like(t_s)
    for beat in beats_s:
        for wave, (centre_ms, width_ms) in WAVES.items():
            total += amplitudes[wave] * np.exp(-0.5 * ((t_s - beat - centre_ms / 1000.0) / (width_ms / 1000.0)) ** 2)
        if st_mv:
            total += st_mv * _st_plateau((t_s - beat) * 1000.0)
    return total


def twelve_lead(rr_ms: float, *, fs: int = FS, seconds: float = SECONDS,
                st_mv: dict[str, float] | None = None) -> np.ndarray:
    """(12, fs * seconds) mV in STANDARD_LEADS order, R peaks every `rr_ms` from 0.5 s.

    st_mv: ST elevation (mV) by lead, of I, II and V1-V6 (the other limb leads follow).
    """
    st_mv = st_mv or {}
    t = np.arange(int(fs * seconds)) / fs
    beats = beat_times_s(rr_ms, seconds=seconds)
    leads = {name: lead_signal(t, beats, amplitudes, st_mv.get(name, 0.0)) for name, amplitudes in AMPLITUDES.items()}
    lead_i, lead_ii = leads["I"], leads["II"]
    leads |= {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2,
              "aVF": lead_ii - lead_i / 2}
    return np.stack([leads[name] for name in STANDARD_LEADS])


def write_record(folder: Path, name: str, rr_ms: float, demographics: dict[str, str],
                 st_mv: dict[str, float] | None = None) -> Path:
    """A WFDB record (format 16, 500 Hz) of `twelve_lead(rr_ms, st_mv=st_mv)` with a demographics sidecar."""
    import wfdb

    signal = twelve_lead(rr_ms, st_mv=st_mv)
    wfdb.wrsamp(name, fs=FS, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
    (folder / f"{name}.json").write_text(json.dumps(demographics))
    return folder / f"{name}.hea"
