"""Synthetic 12-lead ECGs with exactly known timing, for the review page's tests.

Every beat is the same sum of Gaussian waves (P, Q, R, S, T) placed at exactly `rr_ms`
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
R_AMPLITUDE_MV = 1.0  # of the template; lead II carries it unscaled
# (centre ms from the R peak, amplitude mV, width ms) of each wave of the template beat.
WAVES = ((-170.0, 0.15, 22.0), (-22.0, -0.08, 6.0), (0.0, R_AMPLITUDE_MV, 9.0), (24.0, -0.25, 7.0),
         (300.0, 0.30, 45.0))
# Precordial leads as multiples of the template (an rS in V1 growing to a tall R in V4-V5).
PRECORDIAL = {"V1": -0.45, "V2": -0.2, "V3": 0.5, "V4": 1.2, "V5": 1.1, "V6": 0.9}


def beat_times_s(rr_ms: float, first_s: float = 0.5, seconds: float = SECONDS) -> np.ndarray:
    return np.arange(first_s, seconds - 0.45, rr_ms / 1000.0)


def template(t_s: np.ndarray, beats_s: np.ndarray) -> np.ndarray:
    """The template's value (mV) at times `t_s`, beats with their R peaks at `beats_s`."""
    total = np.zeros_like(t_s)
    for beat in beats_s:
        for centre_ms, amplitude, width_ms in WAVES:
            total += amplitude * np.exp(-0.5 * ((t_s - beat - centre_ms / 1000.0) / (width_ms / 1000.0)) ** 2)
    return total


def twelve_lead(rr_ms: float, *, fs: int = FS, seconds: float = SECONDS) -> np.ndarray:
    """(12, fs * seconds) mV in STANDARD_LEADS order, R peaks every `rr_ms` from 0.5 s."""
    t = np.arange(int(fs * seconds)) / fs
    beat = template(t, beat_times_s(rr_ms, seconds=seconds))
    lead_i, lead_ii = 0.6 * beat, 1.0 * beat
    leads = {"I": lead_i, "II": lead_ii, "III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
             "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    leads |= {name: factor * beat for name, factor in PRECORDIAL.items()}
    return np.stack([leads[name] for name in STANDARD_LEADS])


def write_record(folder: Path, name: str, rr_ms: float, demographics: dict[str, str]) -> Path:
    """A WFDB record (format 16, 500 Hz) of `twelve_lead(rr_ms)` with a demographics sidecar."""
    import wfdb

    signal = twelve_lead(rr_ms)
    wfdb.wrsamp(name, fs=FS, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
    (folder / f"{name}.json").write_text(json.dumps(demographics))
    return folder / f"{name}.hea"
