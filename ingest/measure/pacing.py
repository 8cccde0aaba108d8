"""Pacemaker spikes: finding the ventricular pacing stimulus before each QRS, and taking it out.

    find_pacing(x, fiducials, fs) -> Pacing     which beats a pacing spike precedes, and where
    remove_spikes(x, spikes, fs)  -> signal     the spikes bridged by straight lines in every lead

A pacing stimulus lasts 0.5-1 ms; recorded at 500 Hz through a cart's filters it is a deflection
one or two samples wide that jumps and comes straight back, in many leads at once (unipolar
pacing: large; bipolar: often too small to see at 500 Hz, and then nothing is found). A QRS
never does that: even a narrow r takes several samples to rise and fall, so at its apex the
sample-to-sample change is small on one side. So a sample's *rebound* is the smaller of the
two changes into and out of it when they have opposite signs (zero otherwise), taken as a share
of the lead's peak-to-peak size. A beat is paced when, within PACED_WINDOW_MS before its QRS
fiducial point (where a ventricular stimulus lies: just before the QRS it starts), at least
MIN_LEADS leads rebound by SPIKE_SHARE or more; a record is paced when more than half of its
beats are. A stray artefact does not lock onto the beats like that.

SPIKE_SHARE was set on data/real's dev split only: its paced LUDB records (45, 72, 74, 8, 93)
score 0.137-0.48 (median over beats), its other records at most 0.089; on the test split, looked
at after: paced 0.140 and 0.567, others at most 0.090. Bipolar pacing (ludb/90 0.052, ludb/111
0.022) is not found.

A record made at 300 Hz or less (older carts' 250 Hz archives, INCART's 257 Hz) reaches the 500 Hz
window through its recorder's anti-aliasing filter, which cuts near half its rate: the stimulus is
spread over three or four samples, and its rebound is a third to a half of what it is at 500 Hz. So
such a record is judged against LOW_RATE_SPIKE_SHARE, set the same way on data/real's dev split
resampled to 250 Hz: the paced records detectable at 500 Hz score 0.045-0.093 there (ludb/8 0.020,
under it), the others at most 0.038; on the test split, looked at after, paced 0.060 and 0.128,
others at most 0.038. Between 300 and 500 Hz the 500 Hz share is kept: resampled to 360 Hz the
unpaced records reach 0.076, which no lower limit separates (`find_pacing`'s recorded_rate_hz).

The spikes are bridged before the waves are delineated: a QRS onset at the stimulus would
count the pacemaker's latency as depolarisation (LUDB's cardiologists mark the onset after
the spike, as a reader does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The stimulus of a ventricular-paced beat lies within this window before the QRS fiducial point.
PACED_WINDOW_MS = (-150.0, 10.0)
# A spike rebounds by at least this share of its lead's peak-to-peak size...
SPIKE_SHARE = 0.11
# A record made at LOW_RATE_UP_TO_HZ or less: its spikes are spread by its recorder's filter (see above).
LOW_RATE_UP_TO_HZ = 300.0
LOW_RATE_SPIKE_SHARE = 0.042
# ...in at least this many leads at once.
MIN_LEADS = 3
# A spike is bridged from this long before its peak to this long after it: the cart's filters spread
# the stimulus over the next few samples, and the paced QRS starts after it. Chosen on the dev split's
# paced records (LUDB 45, 74, 72, 93, 8: QRS onset against LUDB's, mean |error| 8 ms; 2/10 ms: 13,
# 4/20 ms: 11; bridging only the samples still decaying: 15).
BRIDGE_BEFORE_MS = 2.0
BRIDGE_AFTER_MS = 16.0


@dataclass(frozen=True)
class Pacing:
    """Pacing spikes before the beats of one record."""

    beats: int  # beats assessed (their window lies inside the record)
    spikes: list[int]  # sample of each paced beat's spike
    paced: bool  # more than half of the assessed beats are paced

    @property
    def paced_beats(self) -> int:
        return len(self.spikes)


def rebound(x: np.ndarray) -> np.ndarray:
    """Per sample (last axis), the smaller of the changes into and out of it when they have opposite
    signs, else 0; the first and last samples, which lack a neighbour, are 0."""
    into, out = np.diff(x[..., :-1], axis=-1), np.diff(x[..., 1:], axis=-1)
    values = np.where(into * out < 0, np.minimum(np.abs(into), np.abs(out)), 0.0)
    pad = [(0, 0)] * (x.ndim - 1) + [(1, 1)]
    return np.pad(values, pad)


def spike_share(recorded_rate_hz: float | None) -> float:
    """The rebound share that makes a spike, for a record made at this rate (None: at the rate measured)."""
    low = recorded_rate_hz is not None and recorded_rate_hz <= LOW_RATE_UP_TO_HZ
    return LOW_RATE_SPIKE_SHARE if low else SPIKE_SHARE


def find_pacing(x: np.ndarray, fiducials: np.ndarray, fs: float, recorded_rate_hz: float | None = None) -> Pacing:
    """Which beats (QRS fiducial samples) a pacing spike precedes (see the module's docstring).

    recorded_rate_hz: the rate the record was made at, when x was resampled from it (None: fs)."""
    start, stop = (int(round(ms * fs / 1000.0)) for ms in PACED_WINDOW_MS)
    fiducials = np.asarray(fiducials, dtype=int)
    # Each beat's window, one sample wider on each side so that its edge samples have neighbours.
    inside = fiducials[(fiducials + start - 1 >= 0) & (fiducials + stop + 1 <= x.shape[1])]
    if inside.size == 0:
        return Pacing(beats=0, spikes=[], paced=False)
    columns = inside[:, None] + np.arange(start - 1, stop + 1)[None, :]  # (beats, L + 2)
    windows = np.transpose(x[:, columns], (1, 0, 2))  # (beats, leads, L + 2)
    size = np.ptp(x, axis=1)
    share = rebound(windows)[:, :, 1:-1] / np.where(size > 0, size, np.inf)[None, :, None]
    # The MIN_LEADS-th strongest lead at each sample: a spike must show in that many leads together.
    together = np.sort(share, axis=1)[:, -MIN_LEADS, :]  # (beats, L)
    peaks = np.argmax(together, axis=1)
    found = together[np.arange(inside.size), peaks] >= spike_share(recorded_rate_hz)
    spikes = (inside + start + peaks)[found].tolist()
    return Pacing(beats=int(inside.size), spikes=spikes, paced=len(spikes) > inside.size / 2)


def remove_spikes(x: np.ndarray, spikes: list[int], fs: float) -> np.ndarray:
    """A copy of x with each spike (BRIDGE_BEFORE_MS to BRIDGE_AFTER_MS around its peak) replaced by a
    straight line, in every lead."""
    out = np.array(x, dtype=np.float64, copy=True)
    before = max(1, int(round(BRIDGE_BEFORE_MS * fs / 1000.0)))
    after = max(1, int(round(BRIDGE_AFTER_MS * fs / 1000.0)))
    for spike in spikes:
        left, right = max(spike - before, 0), min(spike + after, x.shape[1] - 1)
        steps = np.linspace(0.0, 1.0, right - left + 1)
        out[:, left:right + 1] = out[:, [left]] + (out[:, [right]] - out[:, [left]]) * steps
    return out


__all__ = ["Pacing", "find_pacing", "rebound", "remove_spikes", "spike_share"]
