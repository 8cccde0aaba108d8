"""The model window: any canonical `Ecg` signal to the (12, 5000) float32 mV, 500 Hz input of ECG-R1.

    Ecg.signal (leads x N at fs, mV) --check the 12 leads, order them--> 12 x N
        --non-finite samples -> 0------------------------------------> 12 x N
        --keep the first 10 s (+ a filter margin)--------------------> 12 x <=N
        --resample once to 500 Hz (polyphase, anti-aliased)---------> 12 x ~5000
        --crop to 5000 or right-pad with zeros----------------------> ModelWindow

The released ECG-R1 takes the WFDB physical signal as is: NaN/Inf set to 0, then
right-padded with zeros or truncated to 5000 samples, with no resampling (it silently
assumes 500 Hz). We keep its padding and truncation so the model sees what it was
trained on, and add the resampling it lacks. `resample` is public for other stages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from ingest.ecg import MODEL_SAMPLING_RATE_HZ, MODEL_WINDOW_SAMPLES, STANDARD_LEADS, Ecg
from ingest.errors import IngestError

WINDOW_S = MODEL_WINDOW_SAMPLES / MODEL_SAMPLING_RATE_HZ  # 10 s
# A shorter record is padded with zeros, but a strip of a few seconds is not a 12-lead ECG:
# below this, rhythm and rate cannot be judged and most of the window would be padding.
MIN_DURATION_S = 5.0
# The largest numerator/denominator of the resampling ratio. It bounds the polyphase
# filter length (~20 * max(up, down) taps) and still represents 257, 360, 1000 Hz... exactly.
_MAX_RATIO_TERM = 1000
# Extra source seconds kept past the 10 s window before resampling, so the filter sees real
# samples (not padding) at the end of the window. The filter reaches ~10/min(fs_in, fs_out) s.
_FILTER_MARGIN_S = 0.1


@dataclass(frozen=True)
class ModelWindow:
    """The model's input for one ECG, and what was done to get it."""

    signal: np.ndarray  # (12, 5000) float32 mV, STANDARD_LEADS order
    sampling_rate_hz: int  # always MODEL_SAMPLING_RATE_HZ
    note: str  # human-readable: resampling, cropping, padding, non-finite samples
    recorded_s: float  # duration of the source signal
    discarded_s: float = 0.0  # source seconds after the 10 s window, not used
    padded_s: float = 0.0  # seconds of zeros appended to reach 10 s
    nonfinite_samples: int = 0  # NaN/Inf samples set to 0


def resampling_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) with up/down ~= fs_out/fs_in, both at most 1000 (exact for integer rates like 257)."""
    if not (fs_in > 0 and fs_out > 0 and math.isfinite(fs_in) and math.isfinite(fs_out)):
        raise ValueError(f"sampling rates must be positive and finite, got {fs_in} and {fs_out}")
    exact = Fraction(fs_out).limit_denominator(10**6) / Fraction(fs_in).limit_denominator(10**6)
    ratio = exact.limit_denominator(_MAX_RATIO_TERM)
    if ratio.numerator > _MAX_RATIO_TERM:  # e.g. upsampling 1.5 Hz: no sane ECG, but stay bounded
        raise ValueError(f"cannot resample {fs_in} Hz to {fs_out} Hz with a bounded filter")
    return ratio.numerator, ratio.denominator


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample along the last axis with an anti-aliased polyphase filter; returns float32.

    Uses `scipy.signal.resample_poly` with a rational approximation of fs_out/fs_in (see
    `resampling_ratio`); its Kaiser-windowed low-pass cuts at the lower Nyquist frequency.
    The ends are padded along the line through the first and last samples (`padtype="line"`),
    so a baseline offset does not ring at the edges. Output length: ceil(N * up / down).
    The input must be finite: a NaN would spread over the filter's length.
    """
    data = np.asarray(signal, dtype=np.float64)
    up, down = resampling_ratio(fs_in, fs_out)
    if up == down:
        return data.astype(np.float32)
    return resample_poly(data, up, down, axis=-1, padtype="line").astype(np.float32)


def _standard_leads(ecg: Ecg) -> np.ndarray:
    """The 12 standard leads as float64 (12, N), in STANDARD_LEADS order; IngestError otherwise."""
    if ecg.signal is None:
        raise IngestError(ecg.source_path, "no signal to prepare (an image-only source)")
    signal = np.asarray(ecg.signal)
    if signal.ndim != 2 or signal.shape[0] != len(ecg.lead_names):
        raise IngestError(ecg.source_path, f"signal shape {signal.shape} does not match "
                                           f"{len(ecg.lead_names)} lead names")
    missing = ecg.missing_leads
    if missing:
        raise IngestError(ecg.source_path, f"not a 12-lead ECG: missing lead(s) {', '.join(missing)}")
    index = [ecg.lead_names.index(lead) for lead in STANDARD_LEADS]
    return signal[index].astype(np.float64)


def to_model_window(ecg: Ecg) -> ModelWindow:
    """The (12, 5000) float32 mV window at 500 Hz that ECG-R1 reads, with a note of what was done.

    Window policy (the same for every source):
    - leads: the 12 standard leads, reordered by name to STANDARD_LEADS; a missing one is an
      `IngestError` (readers derive III/aVR/aVL/aVF, so this means a reader bug or a non-12-lead
      source). Extra channels are ignored.
    - NaN/Inf samples are set to 0, as the ECG-R1 release does, and counted in the note;
      this happens before resampling, so a NaN cannot smear over its neighbours.
    - rate: resampled once to 500 Hz with `resample` (nothing is done at 500 Hz).
    - longer than 10 s: the first 10 s are kept; the note says how much was discarded.
    - shorter than 10 s but at least `MIN_DURATION_S` (5 s): right-padded with zeros to
      5000 samples, as the release does; the note says how much is padding.
    - shorter than 5 s: `IngestError` naming the file and the duration found.
    """
    fs_in = ecg.sampling_rate_hz
    if not fs_in or not math.isfinite(fs_in) or fs_in <= 0:
        raise IngestError(ecg.source_path, f"invalid sampling rate {fs_in!r} Hz")
    signal = _standard_leads(ecg)
    recorded_s = signal.shape[1] / fs_in
    if recorded_s < MIN_DURATION_S:
        raise IngestError(ecg.source_path, f"only {recorded_s:.2f} s of signal; a 12-lead ECG needs "
                                           f"at least {MIN_DURATION_S:g} s (10 s expected)")

    notes: list[str] = []
    nonfinite = ~np.isfinite(signal)
    nonfinite_count = int(nonfinite.sum())
    if nonfinite_count:
        signal[nonfinite] = 0.0
        notes.append(f"{nonfinite_count} non-finite sample(s) set to 0")

    # Resample only what can reach the window: a 24 h Holter is not filtered in full.
    keep = min(signal.shape[1], math.ceil((WINDOW_S + _FILTER_MARGIN_S) * fs_in))
    signal = signal[:, :keep]
    fs_out = MODEL_SAMPLING_RATE_HZ
    up, down = resampling_ratio(fs_in, fs_out)
    if up != down:  # a rate within float noise of 500 Hz is 500 Hz
        signal = resample(signal, fs_in, fs_out)
        notes.insert(0, f"resampled {fs_in:g} Hz -> {fs_out} Hz (polyphase, x{up}/{down})")

    discarded_s = max(0.0, recorded_s - WINDOW_S)
    padded_s = 0.0
    n = signal.shape[1]
    if n >= MODEL_WINDOW_SAMPLES:
        window = signal[:, :MODEL_WINDOW_SAMPLES]
        if discarded_s > 0:
            notes.append(f"first {WINDOW_S:g} s of {recorded_s:.4g} s kept, "
                         f"last {discarded_s:.3g} s discarded")
    else:
        window = np.zeros((len(STANDARD_LEADS), MODEL_WINDOW_SAMPLES), dtype=np.float32)
        window[:, :n] = signal
        padded_s = (MODEL_WINDOW_SAMPLES - n) / fs_out
        notes.append(f"{recorded_s:.4g} s recorded, right-padded with {padded_s:.3g} s of zeros "
                     f"to {WINDOW_S:g} s")

    if not notes:
        notes.append(f"{WINDOW_S:g} s at {fs_out} Hz used as recorded")
    return ModelWindow(signal=np.ascontiguousarray(window, dtype=np.float32), sampling_rate_hz=fs_out,
                       note="; ".join(notes), recorded_s=recorded_s, discarded_s=discarded_s,
                       padded_s=padded_s, nonfinite_samples=nonfinite_count)
