"""Synthetic inputs for the model-window and renderer tests: signals with known shapes, ink masks."""

from __future__ import annotations

import numpy as np

from ingest.ecg import STANDARD_LEADS, Ecg, SourceFormat

FS = 500
N = 5000
# Frequencies (Hz) and amplitudes (mV) of `sines`: all far below 250 Hz, one per lead.
SINE_FREQS_HZ = np.linspace(1.5, 7.0, 12)
SINE_AMPLITUDES_MV = np.linspace(0.5, 1.6, 12)


def make_ecg(signal: np.ndarray | None, fs: float, lead_names: list[str] | None = None,
             path: str = "/inbox/test-ecg.hea") -> Ecg:
    """A canonical Ecg around a given (leads, samples) signal."""
    return Ecg(source_format=SourceFormat.WFDB, source_path=path, signal=signal,
               sampling_rate_hz=fs, lead_names=list(STANDARD_LEADS if lead_names is None else lead_names))


def sine_at(t: np.ndarray) -> np.ndarray:
    """The exact (12, len(t)) values of `sines` at times t (s)."""
    return SINE_AMPLITUDES_MV[:, None] * np.sin(2 * np.pi * SINE_FREQS_HZ[:, None] * t[None, :])


def sines(fs: float, seconds: float) -> np.ndarray:
    """(12, round(fs * seconds)) float32 mV: lead i a sine of its own frequency and amplitude."""
    t = np.arange(round(fs * seconds)) / fs
    return sine_at(t).astype(np.float32)


def ink(image) -> np.ndarray:
    """Boolean (H, W) mask of black ink (traces, pulses, labels): the grid colours are never this dark."""
    return np.asarray(image).max(axis=2) < 100


def runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of the True runs of a 1-D boolean array."""
    padded = np.concatenate([[False], mask_1d, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def centres(mask_1d: np.ndarray) -> list[float]:
    """Centre index of each True run: where a line of some pixels' width lies."""
    return [(start + stop - 1) / 2 for start, stop in runs(mask_1d)]
