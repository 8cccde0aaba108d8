"""Signal conditioning before measurement: mains interference, and how noisy each lead is.

    remove_mains(signal, fs)        a 50 or 60 Hz line that stands out of the spectrum, notched
    beat_noise(...)                 per lead, how far single beats stray from the median beat,
                                    judged only where the beat's window holds this beat's own waves

Mains interference. Electrocardiographs filter the mains frequency at acquisition, but many
recordings (the Ningbo set of the PhysioNet/CinC 2021 challenge, for one) keep a 50 Hz line of
0.1-0.3 mV. The 40 Hz smoothing the boundaries are found on lets a third of it through, which
is the size of a P wave: P waves were missed and leads set aside as noisy. A lead's line is
removed when its power within 0.5 Hz of 50 (or 60) Hz is MAINS_RATIO times the power next to it
(2-6 Hz away); a zero-phase notch (Q = 30, 1.7 Hz wide) then takes it out and leaves the ECG's
own spectrum, which is smooth there, as it was.

Noise per lead. A lead's noise is the robust spread of its beats around its median beat. At an
irregular rate (premature beats, atrial fibrillation) the previous beat's T wave and the next
beat's P wave fall into a beat's window at a different place in every beat: counted as noise,
they set clean leads aside and raise the threshold P waves must clear. So each beat's samples
count only between the previous beat's end (its fiducial point plus a QT at that rate, by
Bazett at 0.45 s) and the next beat's beginning (its fiducial point less 300 ms: its P wave).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.signal import iirnotch, sosfiltfilt, tf2sos

from ingest.measure.beats import samples

MAINS_HZ = (50.0, 60.0)
# A mains line is removed when it carries this many times the power of the spectrum beside it.
MAINS_RATIO = 4.0
MAINS_Q = 30.0
# Where the neighbouring beats' waves may reach into a beat's window (see the module docstring).
QT_AT_1_S = 0.45
NEXT_BEAT_REACH_S = 0.3
ROBUST_SD = 1.4826  # median absolute deviation to SD, for Gaussian noise


def mains_lines(signal: np.ndarray, fs: float) -> dict[float, np.ndarray]:
    """{mains frequency: bool per lead} for the lines that stand out (see the module docstring)."""
    n = signal.shape[-1]
    if n < samples(1.0, fs):
        return {}
    spectrum = np.abs(np.fft.rfft(signal - signal.mean(axis=-1, keepdims=True), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / fs)
    found = {}
    for hz in MAINS_HZ:
        if hz + 6.0 >= fs / 2:
            continue
        line = np.abs(freqs - hz) <= 0.5
        beside = (np.abs(freqs - hz) >= 2.0) & (np.abs(freqs - hz) <= 6.0)
        ratio = spectrum[:, line].mean(axis=-1) / np.maximum(spectrum[:, beside].mean(axis=-1), 1e-18)
        leads = ratio >= MAINS_RATIO
        if leads.any():
            found[hz] = leads
    return found


def remove_mains(signal: np.ndarray, fs: float) -> tuple[np.ndarray, list[str]]:
    """(signal with each lead's mains line notched where one stands out, notes saying where)."""
    lines = mains_lines(signal, fs)
    if not lines:
        return signal, []
    out = signal.copy()
    notes = []
    for hz, leads in lines.items():
        b, a = iirnotch(hz, MAINS_Q, fs)
        padlen = min(out.shape[-1] - 1, samples(0.5, fs))
        out[leads] = sosfiltfilt(tf2sos(b, a), out[leads], axis=-1, padlen=padlen)
        notes.append(f"{hz:g} Hz mains interference removed in {int(leads.sum())} lead(s)")
    return out, notes


def own_beat_mask(fiducial: np.ndarray, before: int, after: int, rr_s: float, fs: float) -> np.ndarray:
    """(beats, before + after) bool: the window samples that belong to this beat alone.

    Samples after the previous beat's T end (its fiducial + QT at the mean RR) and before the
    next beat's P wave (its fiducial - NEXT_BEAT_REACH_S); the first and last beats are bounded
    on their open side by their window only.
    """
    qt = samples(QT_AT_1_S * np.sqrt(max(rr_s, 0.2)), fs)
    reach = samples(NEXT_BEAT_REACH_S, fs)
    position = fiducial[:, None] - before + np.arange(before + after)[None, :]  # record samples
    previous = np.concatenate([[-np.inf], fiducial[:-1] + qt])
    following = np.concatenate([fiducial[1:] - reach, [np.inf]])
    return (position > previous[:, None]) & (position < following[:, None])


def beat_noise(beat_windows: np.ndarray, median: np.ndarray, mask: np.ndarray, step: int = 3) -> np.ndarray:
    """Per lead, the robust SD (mV) of the beats around the median beat over the masked samples.

    beat_windows: (beats, leads, L), NaN where a lead was not recorded; median: (leads, L);
    mask: (beats, L), the same for every lead. Every `step`-th sample is plenty. NaN for a lead
    with no sample to judge.
    """
    chosen = mask[:, ::step].ravel()
    leads = median.shape[0]
    if not chosen.any():
        return np.full(leads, np.nan)
    deviation = np.abs(beat_windows[:, :, ::step] - median[None, :, ::step])
    flat = deviation.transpose(1, 0, 2).reshape(leads, -1)[:, chosen]
    if not np.isnan(flat).any():
        return ROBUST_SD * np.median(flat, axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a lead with no recorded sample: NaN
        return ROBUST_SD * np.nanmedian(flat, axis=1)
