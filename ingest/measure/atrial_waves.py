"""Atrial waves between the QRS complexes: how fast they come and how alike they repeat.

    atrial_waves(x, fiducials, dominant, fs, recorded) -> list[AtrialWaveLead]   one per lead of ATRIAL_LEADS

Atrial flutter is one macro-re-entrant circuit: the same saw-tooth wave, 240-340 times a minute,
in every lead that shows the atria (II, III, aVF, V1). Atrial fibrillation is many wavelets: the
fibrillatory waves' rate and shape change from moment to moment and from lead to lead. A reader
tells them apart by looking between the QRS complexes; so does this module, in three steps:

1. The ventricles' part is cancelled (QRST cancellation): the mean dominant beat around each QRS
   fiducial point is subtracted from every beat, and what is left near the QRS (where any
   change of the QRS leaves a residue far larger than atrial waves) is blanked. Atrial waves
   not locked to the QRS (flutter with variable conduction, fibrillation) are left; those locked
   to it (sinus P waves, 2:1 or 4:1 flutter) go with the mean beat.
2. Per lead, the spectrum of what is left: its dominant frequency between 3 and 12 Hz (180-720
   per minute) and its organisation, the share of that band's power within 0.4 Hz of the
   dominant frequency and of its second harmonic (Everett et al.'s organisation index; a flutter
   wave repeats, so its power sits on one line and its harmonic; fibrillatory waves spread it).
3. Per lead, how alike the waves repeat: the residual's autocorrelation at its best lag of 150-330
   ms (one atrial cycle at 180-400 per minute).

These are measurements; the protocol reader decides what they mean (`ingest.protocol.flutter`).
Leads recorded for part of the record only (a printed page) are not measured: 2.5 s hold too few
atrial cycles and no ventricular beats to cancel. The cost, at 125 samples a second: about 0.5 ms
per ECG (median over 42 data/real records).
"""

from __future__ import annotations

import numpy as np

from ingest.ecg import STANDARD_LEADS
from ingest.measure.measured import AtrialWaveLead

# The leads that show the atria: the inferior leads and V1 (where a reader looks for flutter waves).
ATRIAL_LEADS: tuple[str, ...] = ("II", "III", "aVF", "V1")
# The rate the atrial waves are analysed at (samples per second; the signal is taken every
# round(fs / ANALYSIS_HZ)-th sample, after its 40 Hz low-pass: no aliasing into the atrial band).
ANALYSIS_HZ = 125.0
# The band the repeat (autocorrelation) is measured in (Hz): baseline wander and QRS edges left out.
FILTER_BAND_HZ = (2.0, 20.0)
# The spectrum's atrial band (Hz): 180-720 per minute, flutter and fibrillation both.
ATRIAL_BAND_HZ = (3.0, 12.0)
# A spectral line: the dominant frequency +- this (Hz); a 10 s record resolves 0.1 Hz.
LINE_HALF_WIDTH_HZ = 0.4
# The beat cancelled around each QRS fiducial point (ms): from before the QRS to past the T.
TEMPLATE_MS = (-100.0, 450.0)
# Blanked around each fiducial point after cancelling (ms): the QRS, whose smallest change between
# beats leaves a residue larger than any atrial wave.
BLANK_MS = (-60.0, 80.0)
# One atrial cycle (ms) at 400 to 180 per minute: where the autocorrelation is searched.
CYCLE_MS = (150.0, 330.0)
# Fewer whole dominant beats than this and their mean is no template.
MIN_BEATS = 4


def atrial_waves(x: np.ndarray, fiducials: np.ndarray, dominant: np.ndarray, fs: float,
                 recorded: np.ndarray | None = None) -> list[AtrialWaveLead]:
    """The atrial activity of each lead of ATRIAL_LEADS recorded throughout; [] with too few beats.

    x: (12, N) mV, baseline-corrected and low-passed at 40 Hz (the measurer's smooth signal);
    fiducials: the beats' QRS fiducial samples, ascending; dominant: per beat, its QRS is the
    dominant one (the template is their mean, so a premature beat does not shape it).
    """
    rows = [STANDARD_LEADS.index(lead) for lead in ATRIAL_LEADS
            if recorded is None or bool(recorded[STANDARD_LEADS.index(lead)].all())]
    # Nothing atrial lies above 20 Hz and the signal holds nothing above 40: ANALYSIS_HZ samples
    # a second are enough, and make the work a quarter of it at 500 Hz.
    step = max(1, int(round(fs / ANALYSIS_HZ)))
    x, fiducials, fs = x[rows, ::step], np.asarray(fiducials, dtype=int) // step, fs / step
    n = x.shape[1]
    before, after = (int(round(ms * fs / 1000.0)) for ms in TEMPLATE_MS)
    whole = (fiducials + before >= 0) & (fiducials + after <= n)
    use = whole & np.asarray(dominant, dtype=bool)
    if not rows or int(use.sum()) < MIN_BEATS or n < 4 * int(fs * CYCLE_MS[1] / 1000.0):
        return []
    template = _template(x, fiducials, use, before, after)
    residual, kept = _cancel_ventricles(x, template, fiducials, before, after, fs)
    return _measure_waves([STANDARD_LEADS[row] for row in rows], residual, kept, fs)


def _template(x: np.ndarray, fiducials: np.ndarray, use: np.ndarray, before: int, after: int) -> np.ndarray:
    """The mean beat of the beats in use, each only up to where the next beat's window begins.

    At a fast or varying rate a window of TEMPLATE_MS reaches into the next beat: averaged in,
    that beat's QRS would be cancelled where no QRS is.
    """
    length = after - before
    windows = np.full((int(use.sum()), x.shape[0], length), np.nan)
    for row, index in enumerate(np.flatnonzero(use)):
        t = int(fiducials[index])
        stop = length if index + 1 == len(fiducials) else min(length, int(fiducials[index + 1]) - t)
        windows[row, :, :stop] = x[:, t + before:t + before + stop]
    counted = np.isfinite(windows).sum(axis=0)
    return np.where(counted > 0, np.nansum(windows, axis=0) / np.maximum(counted, 1), 0.0)


def _cancel_ventricles(x: np.ndarray, template: np.ndarray, fiducials: np.ndarray, before: int, after: int,
                       fs: float) -> tuple[np.ndarray, np.ndarray]:
    """x less the template at every fiducial point, centred, with the QRS blanked; and the samples kept."""
    n = x.shape[1]
    residual = x.copy()
    kept = np.ones(n, dtype=bool)
    blank_from, blank_to = (int(round(ms * fs / 1000.0)) for ms in BLANK_MS)
    for index, t in enumerate(fiducials):
        # A beat's template ends where the next beat's begins: at a fast rate they would overlap.
        end = t + after if index + 1 == len(fiducials) else min(t + after, int(fiducials[index + 1]) + before)
        start, stop = max(t + before, 0), min(end, n)
        if stop > start:
            residual[:, start:stop] -= template[:, start - (t + before):stop - (t + before)]
        kept[max(t + blank_from, 0):min(t + blank_to, n)] = False
    residual -= residual[:, kept].mean(axis=1, keepdims=True)
    residual[:, ~kept] = 0.0
    return residual, kept


def _measure_waves(leads: list[str], residual: np.ndarray, kept: np.ndarray, fs: float) -> list[AtrialWaveLead]:
    """Per lead: the dominant atrial frequency, its organisation, and how alike its waves repeat.

    One FFT per lead, zero-padded to twice the length, serves both: its power is the spectrum
    (on a grid twice as fine), and, kept to FILTER_BAND_HZ, the linear autocorrelation (the
    baseline's slow remainder and the 40 Hz signal's edge left out, as a band-pass would).
    """
    size = 2 * residual.shape[1]
    power = np.abs(np.fft.rfft(residual, size, axis=1)) ** 2
    frequencies = np.fft.rfftfreq(size, 1.0 / fs)
    in_band = (frequencies >= ATRIAL_BAND_HZ[0]) & (frequencies <= ATRIAL_BAND_HZ[1])
    band_f = frequencies[in_band]
    autocorrelation = np.fft.irfft(np.where((frequencies >= FILTER_BAND_HZ[0]) & (frequencies <= FILTER_BAND_HZ[1]),
                                            power, 0.0), size, axis=1)
    first, last = (int(round(ms * fs / 1000.0)) for ms in CYCLE_MS)
    amplitude = np.sqrt(np.mean(residual[:, kept] ** 2, axis=1))
    band_power = power[:, in_band]
    total = band_power.sum(axis=1)
    dominant = band_f[np.argmax(band_power, axis=1)]
    on_lines = sum((band_power * (np.abs(band_f[None, :] - line[:, None]) <= LINE_HALF_WIDTH_HZ)).sum(axis=1)
                   for line in (dominant, 2.0 * dominant))
    organisation = np.divide(on_lines, total, out=np.zeros_like(total), where=total > 0)
    zero_lag = autocorrelation[:, 0]
    repeat = np.divide(autocorrelation[:, first:last].max(axis=1), zero_lag, out=np.zeros_like(zero_lag),
                       where=zero_lag > 0)
    return [AtrialWaveLead(lead=lead, frequency_hz=round(float(dominant[i]), 2),
                           organisation=round(float(organisation[i]), 3),
                           repeat_correlation=round(float(repeat[i]), 3), amplitude_mv=round(float(amplitude[i]), 4))
            for i, lead in enumerate(leads)]
