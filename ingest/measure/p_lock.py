"""How much of the signal before the QRS repeats at the same place in every beat: P waves locked to it.

    locked_p(smooth, fiducials, dominant, rr_ms, qrs_on, qt_samples, before, fs) -> PLock | None

A sinus P wave comes at the same time before every QRS it conducts (a fixed PR). Averaging the
beats on the QRS keeps it; fibrillatory waves, at random times against the QRS, average away.
The single-beat P search (`ingest.measure.features._per_beat`, `_matched_p`) finds a P wave
beat by beat and fails where P waves are tiny against the noise (a fast or noisy record, a low
P in a sinus rhythm): a reader, looking at many beats together, still sees them. This module
measures what the reader sees, without finding any single P wave:

    share = (N * |mean beat|^2 / mean |beat|^2 - 1) / (N - 1)

over the N dominant beats' stretch before the QRS (each beat's own mean removed). With every
beat the same wave plus independent noise, it estimates the wave's share of the stretch's
power: 1 for a clear P in a clean record, about 0 for fibrillatory waves or noise alone. The
averaged wave's largest deflection from the stretch's end (the PR segment) gives its polarity.

The stretch ends LOCK_END_BEFORE_QRS_MS before the median QRS onset (where the baseline was
pinned and the QRS onset slurs) and reaches back LOCK_SPAN_MS, but never into the previous
beat's T (its end by that beat's own RR and the median QT): a T at a regular rate is locked
to the next QRS too. Beats whose previous T reaches further than most beats' are left out.

This is a measurement; the protocol reader decides what it means
(`ingest.protocol.beat_pattern.atrial_activity`). Leads recorded in part (a printed page) are
not measured here: their few beats are too few to average.
"""

from __future__ import annotations

import numpy as np

from ingest.ecg import STANDARD_LEADS
from ingest.measure.beats import samples
from ingest.measure.measured import PLock

# The leads measured: the inferior leads, where a sinus P is largest and upright.
LOCK_LEADS: tuple[str, ...] = ("II", "aVF")
# The stretch ends this long before the QRS onset (ms) ...
LOCK_END_BEFORE_QRS_MS = 30.0
# ... and reaches back this far (ms), less where the previous beat's T ends later.
LOCK_SPAN_MS = 300.0
# The stretch starts this long after the previous beat's T end (ms): the T's tail is left out.
AFTER_T_MS = 20.0
# A stretch shorter than this (ms) holds no whole P wave: not measured.
MIN_SPAN_MS = 80.0
# Fewer beats than this and the average says little.
MIN_BEATS = 4


def locked_p(smooth: np.ndarray, fiducials: np.ndarray, dominant: np.ndarray, rr_ms: np.ndarray,
             qrs_on: int, qt_samples: int, before: int, fs: float) -> PLock | None:
    """The locked share per lead of LOCK_LEADS; None with too few beats or too short a stretch.

    `smooth` is the (12, N) baseline-corrected 40 Hz signal, `fiducials` the beats' QRS fiducial
    samples, `dominant` which beats have the dominant QRS, `rr_ms` each beat's RR before it (NaN
    where unknown: the median RR is used), `qrs_on` and `qt_samples` the median beat's QRS onset
    (samples from the window start, the fiducial point being at `before`) and QT.
    """
    end = qrs_on - samples(LOCK_END_BEFORE_QRS_MS / 1000.0, fs)
    earliest = end - samples(LOCK_SPAN_MS / 1000.0, fs)
    rr = np.asarray(rr_ms, dtype=np.float64)
    known = np.isfinite(rr)
    if not known.any() or not dominant.any():
        return None
    rr = np.where(known, rr, np.median(rr[known])) * fs / 1000.0
    # Where each beat's stretch may start: after the previous beat's T end, in window samples.
    starts = np.maximum(earliest, np.ceil(qrs_on + qt_samples - rr).astype(int) + samples(AFTER_T_MS / 1000.0, fs))
    start = int(np.median(starts[dominant]))
    use = dominant & (starts <= start) & (fiducials - before + start >= 0)
    if end - start < samples(MIN_SPAN_MS / 1000.0, fs) or use.sum() < MIN_BEATS:
        return None
    rows = [STANDARD_LEADS.index(lead) for lead in LOCK_LEADS]
    # Every stretch lies inside the record (it starts at or after sample 0, `use`, and ends before its
    # beat's fiducial point), so one gather takes them all: (beats, leads, samples).
    # (The signal may be a strided view: only the samples needed are read.)
    first = fiducials[use] - before + start
    stretch = smooth[np.asarray(rows)[None, :, None], (first[:, None] + np.arange(end - start))[:, None, :]]
    # The averaged wave's largest deflection from the PR segment (the stretch's end), for its polarity.
    wave = stretch.mean(axis=0)
    deflection = wave - wave[:, -1:]
    peak = deflection[np.arange(len(rows)), np.argmax(np.abs(deflection), axis=1)]
    stretch = stretch - stretch.mean(axis=2, keepdims=True)
    count = stretch.shape[0]
    locked = (stretch.mean(axis=0) ** 2).sum(axis=1)
    total = (stretch ** 2).sum(axis=2).mean(axis=0)
    ratio = locked / np.maximum(total, 1e-12)
    share = (count * ratio - 1.0) / (count - 1)
    return PLock(span_ms=round((end - start) * 1000.0 / fs, 1), beats=int(count),
                 share_by_lead={lead: round(float(value), 3) for lead, value in zip(LOCK_LEADS, share)},
                 peak_mv_by_lead={lead: round(float(value), 3) for lead, value in zip(LOCK_LEADS, peak)})
