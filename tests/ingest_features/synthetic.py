"""Constructed 12-lead ECGs whose intervals, amplitudes and ST levels are known exactly.

Each beat is drawn from simple shapes with compact support, so every boundary is a
number, not an opinion:
- P: a raised-cosine (Hann) bump from P onset (QRS onset - PR) lasting `p_ms`;
- QRS: straight lines through q, R, S (and R', S' when given) from the QRS onset to the
  J point `qrs_ms` later, where the signal has reached the ST level;
- ST-T: the ST level held until the T peak and released to zero with the T's falling
  half; the T itself is an asymmetric Hann bump (rising 60 %, falling 40 % of its
  duration) that ends exactly at QRS onset + `qt_ms`.
Limb leads follow Einthoven: waves are given for I and II, the other four are derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ingest.ecg import STANDARD_LEADS

FS = 500
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")


@dataclass(frozen=True)
class Lead:
    """Wave amplitudes (mV) of one independent lead. Q and S are depths (positive)."""

    p: float = 0.1
    q: float = 0.0
    r: float = 1.0
    s: float = 0.2
    r2: float = 0.0  # R' after the S (RBBB-like), 0 for none
    st: float = 0.0  # ST level at the J point and through the ST segment
    t: float = 0.3
    p_terminal: float = 0.0  # depth of a negative second half of the P (V1's left atrial sign)
    p_notch: bool = False  # a P of two humps (P mitrale)


# A plausible normal ECG: QRS axis ~ +60 deg (I = 0.5 * II by the net deflections below).
NORMAL_LEADS: dict[str, Lead] = {
    "I": Lead(p=0.08, q=0.05, r=0.7, s=0.1, t=0.25),
    "II": Lead(p=0.15, q=0.0, r=1.3, s=0.1, t=0.35),
    "V1": Lead(p=0.06, q=0.0, r=0.2, s=1.1, t=-0.1),
    "V2": Lead(p=0.08, q=0.0, r=0.4, s=1.4, t=0.5),
    "V3": Lead(p=0.08, q=0.0, r=0.8, s=0.9, t=0.5),
    "V4": Lead(p=0.1, q=0.0, r=1.3, s=0.5, t=0.45),
    "V5": Lead(p=0.1, q=0.1, r=1.6, s=0.2, t=0.4),
    "V6": Lead(p=0.1, q=0.1, r=1.3, s=0.0, t=0.3),
}


@dataclass(frozen=True)
class Beat:
    """The timing of every beat (ms) and the amplitudes per independent lead."""

    pr_ms: float = 160.0
    p_ms: float = 100.0
    qrs_ms: float = 90.0
    qt_ms: float = 400.0
    t_ms: float = 180.0
    leads: dict[str, Lead] = field(default_factory=lambda: dict(NORMAL_LEADS))

    def with_leads(self, **changes: Lead) -> Beat:
        return replace(self, leads={**self.leads, **changes})


def _hann(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Raised cosine 0 -> 1 -> 0 over [start, start + duration] (s), zero outside."""
    u = (t - start) / duration
    return np.where((u > 0) & (u < 1), 0.5 - 0.5 * np.cos(2 * np.pi * np.clip(u, 0, 1)), 0.0)


def _p_wave(t: np.ndarray, beat: Beat, lead: Lead) -> np.ndarray:
    start, duration = -beat.pr_ms / 1000, beat.p_ms / 1000
    if lead.p_notch:
        third = duration / 1.6
        wave = lead.p * (_hann(t, start, third * 1.0) + _hann(t, start + 0.6 * third, third))
        return wave
    half = duration / 2
    first = lead.p * _hann(t, start, duration if not lead.p_terminal else half)
    second = -lead.p_terminal * _hann(t, start + half, half) if lead.p_terminal else 0.0
    return first + second


def _qrs(t: np.ndarray, beat: Beat, lead: Lead) -> np.ndarray:
    d = beat.qrs_ms / 1000
    if lead.r2:
        times = [0, 0.15 * d, 0.35 * d, 0.55 * d, 0.8 * d, d]
        values = [0, lead.r, -lead.s, lead.r2, lead.r2 * 0.3, lead.st]
    else:
        times = [0, 0.15 * d, 0.45 * d, 0.75 * d, d]
        values = [0, -lead.q, lead.r, -lead.s, lead.st]
    inside = (t >= 0) & (t <= d)
    return np.where(inside, np.interp(t, times, values), 0.0)


def _st_t(t: np.ndarray, beat: Beat, lead: Lead) -> np.ndarray:
    d, qt, t_dur = beat.qrs_ms / 1000, beat.qt_ms / 1000, beat.t_ms / 1000
    t_on = qt - t_dur
    rise, fall = 0.6 * t_dur, 0.4 * t_dur
    peak = t_on + rise
    up = np.where((t >= t_on) & (t <= peak), 0.5 - 0.5 * np.cos(np.pi * (t - t_on) / rise), 0.0)
    down = np.where((t > peak) & (t < qt), 0.5 + 0.5 * np.cos(np.pi * (t - peak) / fall), 0.0)
    t_wave = lead.t * (up + down)
    st_level = lead.st * np.where(t <= peak, 1.0, np.where(t < qt, 0.5 + 0.5 * np.cos(np.pi * (t - peak) / fall), 0))
    return np.where(t > d, t_wave + st_level, 0.0)


def lead_beat(t: np.ndarray, beat: Beat, lead: Lead) -> np.ndarray:
    """One beat of one lead at times t (s) relative to its QRS onset."""
    return _p_wave(t, beat, lead) + _qrs(t, beat, lead) + _st_t(t, beat, lead)


def qrs_onsets(hr_bpm: float | None = None, seconds: float = 10.0, first_s: float = 0.5,
               rr_s: list[float] | None = None) -> np.ndarray:
    """QRS onset times (s): evenly spaced at hr_bpm, or following the given RR intervals."""
    if rr_s is not None:
        return first_s + np.concatenate([[0.0], np.cumsum(rr_s)])
    assert hr_bpm is not None
    return np.arange(first_s, seconds - 0.6, 60.0 / hr_bpm)


def without_p(beat: Beat) -> Beat:
    return beat.with_leads(**{name: replace(lead, p=0.0, p_terminal=0.0) for name, lead in beat.leads.items()})


# A premature ventricular beat: no P, a wide QRS of another shape, a discordant T.
PVC = Beat(qrs_ms=150.0, qt_ms=440.0, t_ms=200.0, leads={
    name: Lead(p=0.0, q=0.0, r=0.3 if name in ("V1", "V2") else 1.6, s=1.5 if name in ("V1", "V2") else 0.2,
               t=0.4 if name in ("V1", "V2") else -0.5)
    for name in NORMAL_LEADS})


def ecg(beat: Beat, onsets: np.ndarray, seconds: float = 10.0, fs: float = FS, noise_mv: float = 0.0,
        wander_mv: float = 0.0, seed: int = 0, p_waves: bool = True,
        others: dict[int, Beat] | None = None) -> np.ndarray:
    """(12, seconds * fs) float32 mV in STANDARD_LEADS order with beats at the given onsets.

    others: beat index -> a different beat drawn there instead (an ectopic beat, a changed PR).
    """
    t = np.arange(round(seconds * fs)) / fs
    shapes = [(others or {}).get(index, beat) for index in range(len(onsets))]
    if not p_waves:
        shapes = [without_p(shape) for shape in shapes]
    independent = {}
    for name in beat.leads:
        trace = np.zeros_like(t)
        for onset, shape in zip(onsets, shapes, strict=True):
            near = (t > onset - 0.45) & (t < onset + 0.8)
            trace[near] += lead_beat(t[near] - onset, shape, shape.leads[name])
        independent[name] = trace
    lead_i, lead_ii = independent["I"], independent["II"]
    limb = {
        "I": lead_i, "II": lead_ii, "III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2,
    }
    signal = np.stack([limb[name] if name in limb else independent[name] for name in STANDARD_LEADS])
    rng = np.random.default_rng(seed)
    if noise_mv:
        signal = signal + rng.normal(0.0, noise_mv, signal.shape)
    if wander_mv:
        phase = rng.uniform(0, 2 * np.pi, (12, 1))
        signal = signal + wander_mv * np.sin(2 * np.pi * 0.25 * t[None, :] + phase)
    return signal.astype(np.float32)


def frontal_axis_deg(beat: Beat) -> float:
    """The QRS axis the constructed limb leads imply (net QRS area of I and II, Einthoven)."""
    t = np.arange(-0.1, 0.3, 1 / 2000)
    area = {name: float(_qrs(t, beat, beat.leads[name]).sum()) for name in ("I", "II")}
    x = area["I"]
    y = (2 * area["II"] - area["I"]) / np.sqrt(3)  # aVF = II - I/2 = (sqrt(3)/2) * y
    return float(np.degrees(np.arctan2(y, x)))


def fibrillation_waves(seconds: float = 10.0, fs: float = FS, seed: int = 0) -> np.ndarray:
    """(12, N) atrial fibrillation f waves: 4.5-7.5 Hz wobbling oscillations, largest in V1 (0.05 mV)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * fs)) / fs
    wave = np.zeros_like(t)
    for k in range(4):
        wave += np.sin(2 * np.pi * rng.uniform(4.5, 7.5) * t + rng.uniform(0, 2 * np.pi)
                       + 0.8 * np.sin(2 * np.pi * 0.3 * t + k))
    scale = np.array([0.015, 0.03, 0.02, 0.02, 0.01, 0.025, 0.05, 0.04, 0.025, 0.02, 0.015, 0.015])
    return (scale[:, None] * wave[None, :]).astype(np.float32)


def irregular_onsets(seed: int = 0, count: int = 20) -> np.ndarray:
    """QRS onsets with RR drawn uniformly from 0.45-1.1 s (an irregularly irregular rhythm)."""
    rng = np.random.default_rng(seed)
    return qrs_onsets(rr_s=list(rng.uniform(0.45, 1.1, count)), first_s=0.4)


def flutter_waves(rate_per_min: float = 300.0, seconds: float = 10.0, fs: float = FS,
                  first_s: float = 0.0) -> np.ndarray:
    """(12, N) typical atrial flutter waves: a saw-tooth at rate_per_min, negative in the inferior leads.

    Each cycle falls slowly for 70 % of it and rises fast for the rest (counter-clockwise flutter
    as II, III and aVF show it: 0.15-0.2 mV); V1 shows it upright and smaller, the other leads less.
    """
    t = np.arange(round(seconds * fs)) / fs
    phase = ((t - first_s) * rate_per_min / 60.0) % 1.0
    saw = np.where(phase < 0.7, -phase / 0.7, -(1.0 - phase) / 0.3) + 0.5
    scale = np.array([0.03, 0.15, 0.2, -0.09, -0.08, 0.17, -0.1, -0.05, 0.03, 0.03, 0.03, 0.03])
    return (scale[:, None] * saw[None, :]).astype(np.float32)


def flutter_onsets(rate_per_min: float = 300.0, ratios: tuple[int, ...] = (2, 4, 3, 2, 2, 4, 3, 3, 2, 4, 2, 3, 4, 2, 3),
                   first_s: float = 0.5, delays_s: tuple[float, ...] = (0.16, 0.2, 0.18, 0.22, 0.17, 0.21)) -> np.ndarray:
    """QRS onsets of flutter with variable conduction: each beat conducted from a flutter wave
    (ratio cycles after the last conducted one: 2:1, 3:1, 4:1) after an AV delay that varies with
    the ratio, as the AV node's does (the delays cycle through delays_s)."""
    cycle = 60.0 / rate_per_min
    waves = np.concatenate([[0], np.cumsum(ratios)])
    delays = np.resize(np.asarray(delays_s), waves.size)
    return first_s + waves * cycle + delays
