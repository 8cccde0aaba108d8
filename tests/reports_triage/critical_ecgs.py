"""Simulated critical ECGs for the triage tests (labelled simulations, not recordings).

Each beat is a sum of Gaussian waves as in tests/review/synthetic.py, but the P waves and the
QRS complexes are placed independently, so AV dissociation can be drawn, and the QRS width
and the QT are parameters:

    stemi       sinus 70 /min, ST raised 0.3 mV from the J point in II, III, aVF (inferior STEMI)
    vt          a wide QRS (measured 222 ms) at 140 /min without P waves (ventricular tachycardia;
                under the 150 /min extreme-rate limit, so only its width and rate make it critical)
    chb         P waves at 80 /min marching through a regular narrow escape rhythm at 45 /min
                (complete heart block; above the 40 /min extreme-bradycardia limit)
    long_qt     sinus 64 /min with the T wave late: QTc about 560 ms (marked QT prolongation)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ingest.ecg import STANDARD_LEADS
from tests.review.synthetic import AMPLITUDES, FS, SECONDS, _st_plateau

NARROW = {"R": (0.0, 9.0), "S": (24.0, 7.0)}
WIDE = {"R": (0.0, 30.0), "S": (75.0, 25.0)}


def _gauss(t: np.ndarray, centre_s: float, width_ms: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - centre_s) / (width_ms / 1000.0)) ** 2)


def twelve_lead(qrs_s: np.ndarray, p_s: np.ndarray, *, wide: bool = False, t_centre_ms: float = 300.0,
                st_ii_mv: float = 0.0) -> np.ndarray:
    t = np.arange(FS * SECONDS) / FS
    complexes = WIDE if wide else NARROW
    leads = {}
    for name, amplitude in AMPLITUDES.items():
        signal = np.zeros_like(t)
        for beat in p_s:
            signal += amplitude["P"] * _gauss(t, beat, 22.0)
        for beat in qrs_s:
            for wave, (offset_ms, width_ms) in complexes.items():
                signal += amplitude[wave] * _gauss(t, beat + offset_ms / 1000.0, width_ms)
            # A wide ventricular complex repolarises against its QRS (secondary T changes).
            t_amplitude = -0.8 * amplitude["T"] if wide else amplitude["T"]
            signal += t_amplitude * _gauss(t, beat + t_centre_ms / 1000.0, 45.0)
            if name == "II" and st_ii_mv:
                signal += st_ii_mv * _st_plateau((t - beat) * 1000.0)
        leads[name] = signal
    lead_i, lead_ii = leads["I"], leads["II"]
    leads |= {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2, "aVL": lead_i - lead_ii / 2,
              "aVF": lead_ii - lead_i / 2}
    return np.stack([leads[name] for name in STANDARD_LEADS])


def _beats(first_s: float, interval_ms: float) -> np.ndarray:
    return np.arange(first_s, SECONDS - 0.45, interval_ms / 1000.0)


def signals() -> dict[str, np.ndarray]:
    sinus_70 = _beats(0.5, 857)
    return {
        "stemi": twelve_lead(sinus_70, sinus_70 - 0.17, st_ii_mv=0.3),
        "vt": twelve_lead(_beats(0.3, 60000 / 140), np.array([]), wide=True, t_centre_ms=260.0),
        "chb": twelve_lead(_beats(0.6, 60000 / 45), _beats(0.2, 750)),
        "long_qt": twelve_lead(_beats(0.5, 940), _beats(0.5, 940) - 0.17, t_centre_ms=430.0),
    }


def write_all(folder: Path) -> dict[str, Path]:
    """Each simulated ECG as a WFDB record (500 Hz, format 16) with a demographics sidecar."""
    import wfdb

    written = {}
    for number, (name, signal) in enumerate(signals().items(), start=1):
        wfdb.wrsamp(name, fs=FS, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T,
                    fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(folder))
        (folder / f"{name}.json").write_text(json.dumps({
            "patient_id": f"SIM-{number:04d}", "patient_name": f"Simulated^{name}", "sex": "M",
            "accession": f"SIM-ACC-{number}", "acquired_at": "2026-11-20T10:00:00"}))
        written[name] = folder / f"{name}.hea"
    return written
