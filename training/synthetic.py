"""The bundled synthetic ECG set: a parametric 12-lead simulator with known ground truth.

    simulate(record_id, seed, index) -> (signal (12, 5000) float32 mV at 500 Hz, SimulatedTruth)
    generate_synthetic_corpus(out_dir, count, seed) -> Path   (the corpus JSONL; training.build)

The model. The heart is one 3-D dipole d(t) = (x: left, y: inferior, z: anterior), the sum
of "lobes": each wave (P, the QRS's septal / main / terminal parts, an R' or a second LBBB
hump, the ST injury plateau, T) is a scalar time course times a fixed 3-D vector. Leads I and
II read the frontal components (I = x, II = x/2 + y*sqrt(3)/2) and III, aVR, aVL, aVF are
DERIVED from them (Einthoven and Goldberger hold exactly, noise included: the noise is put
on the electrodes RA, LA, LL, V1-V6, and the Wilson terminal is their mean). V1-V6 read the
dipole along six horizontal-plane directions from right-anterior (V1) to left (V6) with
their own gains, so R waves grow from V1 to V5 when the main QRS vector points left and
posterior, as in a normal heart.

Time courses have compact support, so every boundary is a number: QRS lobes are triangles
(straight limbs, like a real QRS's steep edges) from the QRS onset to the QRS offset; the P
wave is two raised-cosine lobes from the P onset (QRS onset - PR); the T wave rises and falls
as half-Hann curves and ends at QRS onset + QT; the ST injury current ramps up over the last
20 ms of the QRS, holds, and falls with the T. The truth intervals are construction
parameters, not measurements. (A measurer's onsets and ends on such shapes are expected
within about 10 ms: the repository's own constructed-ECG tests use the same conventions.)

Ground truth. A record's labels come from its parameters by the protocol's thresholds
(`ingest.protocol` classifier functions and vocabulary constants): rate and rhythm from the
beat times; PR, QRS and QT/QTc from construction; the bundle branch side from the
morphology the record was built with; axis, voltages, ST levels at J + 60 ms, Q waves, T
and P amplitudes from the noise-free beat template (the dipole projected, evaluated at the
known fiducial points). Nothing comes from `ingest.measure.features`. A sampled record whose truth
quantity lies within a guard band of a threshold (e.g. heart rate within 3 bpm of 60) is
drawn again, so every label is unambiguous at measurement precision; see
training/README.md "Data" for what these labels can and cannot mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from ingest.ecg import STANDARD_LEADS
from ingest.measure.beat_measures import LABEL_MIN_MV as QRS_LABEL_MIN_MV
from ingest.protocol import vocabulary as v
from ingest.protocol.conduction import IVCD_ABOVE_MS, axis_class, pr_class, qrs_class
from ingest.protocol.findings import hundredths, whole
from ingest.protocol.ischemia import (
    QS_R_BELOW_MV,
    depressed_leads,
    elevated_leads,
    q_wave_territories,
    territories_with,
)
from ingest.protocol.repolarisation import (
    FLAT_T_MIN_LEADS,
    PEAKED_T_MIN_LEADS,
    T_UPRIGHT_LEADS,
    deciding_qtc_ms,
    flat_t,
    peaked_t,
    qtc_class,
)
from ingest.protocol.rhythm import rate_class
from ingest.protocol.voltage import (
    LAA_V1_TERMINAL_P_FROM_MS,
    LAA_V1_TERMINAL_P_FROM_MV,
    RAA_P_II_ABOVE_MV,
    low_voltage,
    lvh_criteria,
    poor_r_progression,
    sokolow_lyon_mv,
)
from training.build import CORPUS_FILE, REJECTED_FILE, RowInput, build_row, split_for, summarise, write_summary
from training.rows import TrainingRow, write_rows

if TYPE_CHECKING:
    from training.corpus import Rewriter

FS = 500
SECONDS = 10
SAMPLES = FS * SECONDS
LEADS = STANDARD_LEADS
SQRT3_2 = math.sqrt(3.0) / 2.0

Rhythm = Literal["sinus", "atrial fibrillation"]
Conduction = Literal["normal", "incomplete", "rbbb", "lbbb"]
AxisMode = Literal["normal", "left", "right"]
VoltageMode = Literal["normal", "lvh", "low"]
Territory = Literal["inferior", "lateral", "septal-anterior"]
TMode = Literal["normal", "peaked", "flat", "inverted"]
NoiseLevel = Literal["clean", "typical", "noisy"]

# Horizontal-plane angle (degrees from the left, towards anterior) and gain of V1-V6.
PRECORDIAL_ANGLE_DEG = (115.0, 92.0, 68.0, 48.0, 25.0, 2.0)
PRECORDIAL_GAIN = (1.6, 2.4, 2.4, 2.1, 1.7, 1.3)
PRECORDIAL_VECTORS = np.array([[math.cos(math.radians(a)) * g, 0.12 * g, math.sin(math.radians(a)) * g]
                               for a, g in zip(PRECORDIAL_ANGLE_DEG, PRECORDIAL_GAIN, strict=True)])
# Injury (ST) vectors per territory: towards the injured wall.
INJURY_DIRECTION: dict[str, tuple[float, float, float]] = {
    "inferior": (0.05, 1.0, -0.1),
    "lateral": (1.0, 0.0, -0.45),
    "septal-anterior": (-0.1, 0.1, 1.0),
}
# Guard bands: a truth quantity this close to a protocol threshold makes the record ambiguous.
GUARD = {"hr": 3.0, "pr": 10.0, "qrs": 8.0, "qtc": 15.0, "axis": 10.0, "volt_rel": 0.10, "st": 0.04,
         "q_amp": 0.03, "q_dur": 6.0, "t_rel": 0.15, "t_abs": 0.02, "p": 0.04}
MAX_DRAWS = 300


# --- the truth -------------------------------------------------------------------------------

class LeadTruth(BaseModel):
    """Noise-free template values of one lead (mV, ms), what the protocol's thresholds see."""

    r_mv: float
    s_mv: float
    q_mv: float
    q_ms: float
    qrs_pp_mv: float
    net_mv: float
    st_j60_mv: float
    st_j_mv: float = 0.0  # at the J point (the end of the QRS)
    t_mv: float


class SimulatedTruth(BaseModel):
    """The parameters a record was simulated with, the template values, and its labels."""

    id: str
    seed: list[int]
    rhythm: Rhythm
    hr_bpm: float  # 60000 / mean RR of the beats in the record
    rr_cv: float
    beat_count: int
    pr_ms: float | None  # None in atrial fibrillation (no P waves)
    p_ms: float | None
    qrs_ms: float
    qt_ms: float
    qtc_ms: float  # Bazett with the mean RR
    axis_deg: float  # from the net QRS areas in I and aVF of the template (as the protocol defines it)
    conduction: Conduction
    axis_mode: AxisMode
    voltage_mode: VoltageMode
    st_territory: Territory | None
    st_injury_mv: float
    t_mode: TMode
    p_ii_mv: float | None
    p_v1_terminal_mv: float | None
    noise: NoiseLevel
    noise_mv: dict[str, float]  # baseline wander amplitude, muscle noise SD, mains hum amplitude
    leads: dict[str, LeadTruth]
    labels: list[str]
    draws: int = 1  # how many parameter draws it took to be clear of every guard band
    notes: list[str] = Field(default_factory=list)


# --- shapes ----------------------------------------------------------------------------------

def triangle(t: np.ndarray, start: float, width: float) -> np.ndarray:
    """A QRS lobe: linear rise to 1 at mid-width and linear fall to 0 (t, start, width in ms).

    Straight limbs give the QRS the steep, corner-started edges of a real QRS, so its onset
    and offset are points, not a matter of threshold.
    """
    phase = (t - start) / width
    return np.where((phase >= 0) & (phase <= 1), 1.0 - np.abs(2.0 * np.clip(phase, 0, 1) - 1.0), 0.0)


def hann(t: np.ndarray, start: float, width: float) -> np.ndarray:
    """A P lobe: raised cosine 0 -> 1 -> 0 over [start, start + width] (ms)."""
    phase = (t - start) / width
    return np.where((phase >= 0) & (phase <= 1), 0.5 - 0.5 * np.cos(2 * np.pi * np.clip(phase, 0, 1)), 0.0)


def t_shape(t: np.ndarray, start: float, peak: float, end: float) -> np.ndarray:
    """A T wave: half-Hann rise start -> peak, half-Hann fall peak -> end (the T end, QT)."""
    rise = 0.5 * (1 - np.cos(np.pi * np.clip((t - start) / (peak - start), 0, 1)))
    fall = 0.5 * (1 + np.cos(np.pi * np.clip((t - peak) / (end - peak), 0, 1)))
    return np.where(t < start, 0.0, np.where(t <= peak, rise, np.where(t <= end, fall, 0.0)))


def plateau(t: np.ndarray, start: float, ramp: float, fall_from: float, end: float) -> np.ndarray:
    """The ST injury current: ramps up over `ramp` ms from start, holds, falls with the T."""
    up = np.clip((t - start) / ramp, 0, 1)
    down = 0.5 * (1 + np.cos(np.pi * np.clip((t - fall_from) / (end - fall_from), 0, 1)))
    return np.where(t < start, 0.0, np.where(t <= fall_from, up, np.where(t <= end, up * down, 0.0)))


def unit(vector: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=float)
    return array / np.linalg.norm(array)


def frontal(angle_deg: float, z: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([math.cos(a), math.sin(a), z])


# --- the parameters ----------------------------------------------------------------------------

@dataclass
class Lobe:
    """One wave part: vector (3,) times a time course, in template time (ms from QRS onset)."""

    vector: np.ndarray
    kind: Literal["triangle", "hann", "t", "plateau"]
    args: tuple[float, ...]

    def course(self, t: np.ndarray) -> np.ndarray:
        if self.kind == "triangle":
            return triangle(t, *self.args)
        if self.kind == "hann":
            return hann(t, *self.args)
        if self.kind == "t":
            return t_shape(t, *self.args)
        return plateau(t, *self.args)


@dataclass
class Params:
    """One draw of a record's parameters (before the guard-band check)."""

    rhythm: Rhythm
    rr_ms: np.ndarray  # RR intervals of the beats, in order
    first_onset_ms: float  # QRS onset of the first beat (may be negative: a beat cut at the start)
    pr_ms: float | None
    p_ms: float | None
    qrs_ms: float
    qt_ms: float
    conduction: Conduction
    axis_mode: AxisMode
    voltage_mode: VoltageMode
    st_territory: Territory | None
    st_injury_mv: float
    t_mode: TMode
    raa: bool
    lobes: list[Lobe] = field(default_factory=list)
    p_lobes: list[Lobe] = field(default_factory=list)
    noise: NoiseLevel = "typical"


def _choice(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    weights = np.array([options[name] for name in names], dtype=float)
    return str(rng.choice(names, p=weights / weights.sum()))


def _rr_series(rng: np.random.Generator, rhythm: Rhythm, hr: float) -> tuple[np.ndarray, float]:
    """RR intervals (ms) covering 10 s plus one beat before, and the first QRS onset (ms)."""
    mean_rr = 60000.0 / hr
    count = int(SECONDS * 1000 / mean_rr) + 4
    if rhythm == "sinus":
        # Respiratory sinus arrhythmia: a few per cent, so the rhythm stays regular (RR CV < 0.10).
        phase = rng.uniform(0, 2 * np.pi)
        depth = rng.uniform(0.0, 0.035)
        beats = np.arange(count)
        rr = mean_rr * (1 + depth * np.sin(2 * np.pi * beats * mean_rr / 4000.0 + phase)
                        + rng.normal(0, 0.006, count))
    else:
        # AF: independent RR intervals, coefficient of variation 0.15-0.30, none under 300 ms.
        cv = rng.uniform(0.15, 0.30)
        rr = np.clip(mean_rr * (1 + cv * rng.standard_normal(count)), 300.0, 2000.0)
    first = rng.uniform(-0.8, 0.2) * mean_rr
    return rr, first


def beat_onsets(params: Params) -> np.ndarray:
    """QRS onsets (ms) of every beat that touches the 10 s window (one before it included)."""
    onsets = params.first_onset_ms + np.concatenate([[0.0], np.cumsum(params.rr_ms)])
    return onsets[onsets < SECONDS * 1000 + 50]


def _draw(rng: np.random.Generator, force_normal: bool) -> Params:
    """Sample one set of parameters; the guard-band check happens afterwards."""
    rhythm: Rhythm = "sinus" if force_normal or rng.random() < 0.78 else "atrial fibrillation"
    if force_normal:
        hr = rng.uniform(63, 97)
    elif rhythm == "sinus":
        band = _choice(rng, {"brady": 0.22, "normal": 0.50, "tachy": 0.28})
        hr = {"brady": rng.uniform(38, 57), "normal": rng.uniform(63, 97), "tachy": rng.uniform(103, 140)}[band]
    else:
        hr = rng.uniform(55, 140)
    rr, first = _rr_series(rng, rhythm, hr)
    mean_rr = float(rr.mean())

    conduction: Conduction = "normal" if force_normal else _choice(  # type: ignore[assignment]
        rng, {"normal": 0.66, "incomplete": 0.09, "rbbb": 0.13, "lbbb": 0.12})
    qrs = {"normal": rng.uniform(68, 88), "incomplete": rng.uniform(102, 110),
           "rbbb": rng.uniform(128, 158), "lbbb": rng.uniform(130, 166)}[conduction]
    axis_mode: AxisMode = "normal" if force_normal else _choice(  # type: ignore[assignment]
        rng, {"normal": 0.70, "left": 0.18, "right": 0.12})
    voltage_mode: VoltageMode = "normal" if force_normal else _choice(  # type: ignore[assignment]
        rng, {"normal": 0.76, "lvh": 0.14, "low": 0.10})
    territory: Territory | None = None
    if not force_normal and rng.random() < 0.27:
        territory = _choice(rng, {"inferior": 1, "lateral": 1, "septal-anterior": 1})  # type: ignore[assignment]
    t_mode: TMode = "normal" if force_normal else _choice(  # type: ignore[assignment]
        rng, {"normal": 0.70, "peaked": 0.10, "flat": 0.10, "inverted": 0.10})
    qtc_band = "normal" if force_normal else _choice(rng, {"normal": 0.70, "prolonged": 0.20, "marked": 0.10})
    qtc = {"normal": rng.uniform(365, 425), "prolonged": rng.uniform(455, 490),
           "marked": rng.uniform(515, 570)}[qtc_band]
    qt = qtc * math.sqrt(mean_rr / 1000.0)

    pr = p_ms = None
    raa = False
    if rhythm == "sinus":
        pr_band = "normal" if force_normal else _choice(rng, {"normal": 0.80, "first": 0.15, "short": 0.05})
        pr = {"normal": rng.uniform(130, 190), "first": rng.uniform(212, 300), "short": rng.uniform(96, 110)}[pr_band]
        p_ms = min(rng.uniform(80, 110), pr - 10)
        raa = not force_normal and rng.random() < 0.08

    params = Params(rhythm=rhythm, rr_ms=rr, first_onset_ms=first, pr_ms=pr, p_ms=p_ms, qrs_ms=qrs, qt_ms=qt,
                    conduction=conduction, axis_mode=axis_mode, voltage_mode=voltage_mode, st_territory=territory,
                    st_injury_mv=0.0, t_mode=t_mode, raa=raa)
    params.noise = "typical" if force_normal else _choice(  # type: ignore[assignment]
        rng, {"clean": 0.2, "typical": 0.65, "noisy": 0.15})
    _build_lobes(rng, params)
    return params


def _build_lobes(rng: np.random.Generator, p: Params) -> None:
    """The QRS, ST and T lobes (and the P lobes) of the record's beat template."""
    d = p.qrs_ms
    axis = {"normal": rng.uniform(-12, 78), "left": rng.uniform(-75, -42), "right": rng.uniform(102, 150)}[p.axis_mode]
    magnitude = {"normal": rng.uniform(0.75, 1.6), "lvh": rng.uniform(2.3, 3.3), "low": rng.uniform(0.24, 0.36)}[
        p.voltage_mode]
    posterior = -rng.uniform(0.0, 0.3)
    main = frontal(axis, posterior) * magnitude
    lobes: list[Lobe] = []
    if p.conduction == "lbbb":
        # No septal q (septum activated right to left): every force leftward and posterior;
        # a broad, notched R in I/V6, QS in V1; repolarisation discordant to the QRS.
        lobes.append(Lobe(unit((0.7, 0.25, -0.55)) * 0.25 * magnitude, "triangle", (0.0, 0.3 * d)))
        lobes.append(Lobe(frontal(axis, -0.8) * magnitude, "triangle", (0.12 * d, 0.55 * d)))
        lobes.append(Lobe(frontal(axis - 20, -0.7) * 0.85 * magnitude, "triangle", (0.5 * d, 0.5 * d)))
    else:
        # Septal depolarisation: rightward-anterior, tilted by the fascicle the axis implies
        # (LAFB-like left axis: initial forces inferior; LPFB-like right axis: superior-left).
        septal = {"normal": (-0.35, 0.2, 0.9), "left": (-0.35, 0.85, 0.4), "right": (0.45, -0.8, 0.4)}[p.axis_mode]
        # In RBBB the left ventricle activates normally (about 90 ms); the right one late.
        width = min(d, 90.0) if p.conduction == "rbbb" else d
        lobes.append(Lobe(unit(septal) * rng.uniform(0.09, 0.15), "triangle", (0.0, 0.3 * width)))
        lobes.append(Lobe(main, "triangle", (0.16 * width, 0.56 * width)))
        terminal = unit((-0.5, -0.45, -0.6)) * rng.uniform(0.15, 0.4) * min(magnitude, 1.6)
        lobes.append(Lobe(terminal, "triangle", (0.55 * width, 0.45 * width)))
        if p.conduction == "rbbb":
            # Late right-ventricular activation: a terminal force to the right and front (R' in
            # V1, broad S in I and V6), starting while left-ventricular activation ends.
            start = 0.75 * width
            lobes.append(Lobe(unit((-0.6, 0.05, 0.8)) * rng.uniform(0.8, 1.2), "triangle", (start, d - start)))
        if p.conduction == "incomplete":
            start = 0.6 * d
            lobes.append(Lobe(unit((-0.6, 0.05, 0.8)) * rng.uniform(0.15, 0.3), "triangle", (start, d - start)))

    qt = p.qt_ms
    t_dur = min(rng.uniform(150, 210), qt - d - 50)
    t_start, t_end = qt - t_dur, qt
    t_peak = t_start + rng.uniform(0.6, 0.7) * t_dur
    t_angle = axis + rng.normal(0, 12) if p.axis_mode == "normal" else rng.uniform(20, 60)
    t_amp = {"normal": rng.uniform(0.15, 0.32), "peaked": rng.uniform(0.65, 0.95), "flat": rng.uniform(0.05, 0.062),
             "inverted": rng.uniform(0.15, 0.3)}[p.t_mode]
    if p.t_mode == "peaked":
        # Tall, but not taller than the QRS can carry: a T towering over a small QRS is taken for a beat.
        t_amp = min(t_amp, 0.55 * magnitude + 0.2)
    # Low voltage (effusion, obesity, emphysema) attenuates every wave, not only the QRS.
    attenuation = magnitude / 1.1 if p.voltage_mode == "low" else 1.0
    t_amp *= attenuation
    t_vec = frontal(t_angle, 0.35)
    if p.t_mode == "peaked":
        t_peak = t_start + 0.5 * t_dur  # tall, narrow-based and symmetric
    if p.conduction in ("lbbb", "rbbb"):
        # Secondary repolarisation: opposite the late QRS forces.
        late = lobes[-1].vector
        t_vec = -unit(late) * np.linalg.norm(t_vec)
        if p.t_mode == "flat":
            t_vec = t_vec * 0.6
    if p.t_mode == "inverted":
        t_vec = -t_vec
    lobes.append(Lobe(unit(t_vec) * t_amp, "t", (t_start, t_peak, t_end)))
    if p.conduction == "lbbb":
        secondary = -unit(frontal(axis, -0.8)) * rng.uniform(0.05, 0.12) * attenuation  # discordant ST
        lobes.append(Lobe(secondary, "plateau", (d - 20.0, 20.0, t_peak, t_end)))
    if p.st_territory is not None:
        p.st_injury_mv = float(rng.uniform(0.16, 0.4) * attenuation)
        # The injury current flows from the late QRS on: the ST is at its level by the J point.
        lobes.append(Lobe(unit(INJURY_DIRECTION[p.st_territory]) * p.st_injury_mv, "plateau",
                          (d - 20.0, 20.0, t_peak, t_end)))
    p.lobes = lobes

    if p.rhythm == "sinus" and p.pr_ms is not None and p.p_ms is not None:
        pd, start = p.p_ms, -p.pr_ms
        ra = (rng.uniform(0.1, 0.16) if not p.raa else rng.uniform(0.27, 0.36)) * max(attenuation, 0.5)
        la = rng.uniform(0.07, 0.11) * max(attenuation, 0.5)
        p.p_lobes = [Lobe(unit((0.25, 0.9, 0.35)) * ra, "hann", (start, 0.62 * pd)),
                     Lobe(unit((0.85, 0.5, 0.0)) * la, "hann", (start + 0.38 * pd, 0.62 * pd))]


# --- the template and its truth ----------------------------------------------------------------

def project(dipole: np.ndarray) -> np.ndarray:
    """(3, N) dipole -> (12, N) leads, limb leads derived by Einthoven/Goldberger."""
    lead_i = dipole[0]
    lead_ii = 0.5 * dipole[0] + SQRT3_2 * dipole[1]
    return np.vstack([*limb_leads(lead_i, lead_ii), PRECORDIAL_VECTORS @ dipole])


def limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> tuple[np.ndarray, ...]:
    """I, II, III, aVR, aVL, aVF from I and II (the same dtype in, the same out)."""
    return (lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2)


def template(lobes: list[Lobe], t: np.ndarray) -> np.ndarray:
    dipole = np.zeros((3, t.size))
    for lobe in lobes:
        dipole += np.outer(lobe.vector, lobe.course(t))
    return dipole


def _q_wave(y: np.ndarray, dt_ms: float) -> tuple[float, float]:
    """(depth mV, duration ms) of the initial negative deflection of a QRS: the Q wave.

    The clinical definition: the negative deflection BEFORE THE FIRST R (the first upstroke
    above 0.03 mV), not before the tallest one, so the S of an rSR' is not a Q. A complex
    with no R (never above 0.03 mV) is QS: its whole negative part is the Q.
    """
    rising = np.flatnonzero(y >= 0.03)
    if rising.size == 0:
        negative = y < 0
        return float(max(0.0, -y.min())), float(negative.sum() * dt_ms)
    r_at = int(rising[0])
    before = y[: r_at + 1]
    depth = float(max(0.0, -before.min()))
    if depth < 0.03:
        return 0.0, 0.0
    deepest = int(np.argmin(before))
    left = np.flatnonzero(-before[: deepest + 1] >= 0.1 * depth)
    start = int(left[0]) if left.size else 0
    climbed = np.flatnonzero(before[deepest:] >= 0)
    end = deepest + (int(climbed[0]) if climbed.size else len(before) - deepest)
    return depth, float((end - start) * dt_ms)


def lead_truth(params: Params) -> tuple[dict[str, LeadTruth], float, float | None, float | None]:
    """Per-lead template values, the QRS axis, P in II and V1's terminal negative P."""
    dt = 0.5  # ms: a fine grid for the template values
    d, qt = params.qrs_ms, params.qt_ms
    qrs_t = np.arange(0.0, d + dt / 2, dt)
    qrs = project(template(params.lobes, qrs_t))
    j60 = project(template(params.lobes, np.array([d + 60.0])))[:, 0]
    j0 = project(template(params.lobes, np.array([d])))[:, 0]
    t_grid = np.arange(d, qt + dt / 2, dt)
    t_leads = project(template(params.lobes, t_grid))
    t_lobe = next(lobe for lobe in params.lobes if lobe.kind == "t")
    t_peak_at = int(np.argmin(np.abs(t_grid - t_lobe.args[1])))
    leads: dict[str, LeadTruth] = {}
    for index, lead in enumerate(LEADS):
        y = qrs[index]
        r = float(max(0.0, y.max()))
        r_at = int(np.argmax(y))
        s = float(max(0.0, -y[r_at:].min()))
        q_mv, q_ms = _q_wave(y, dt)
        if r < 0.03:
            s = q_mv
        leads[lead] = LeadTruth(r_mv=r, s_mv=s, q_mv=q_mv, q_ms=q_ms, qrs_pp_mv=float(y.max() - min(0.0, y.min())),
                                net_mv=r - max(q_mv, s), st_j60_mv=float(j60[index]), st_j_mv=float(j0[index]),
                                t_mv=float(t_leads[index, t_peak_at]))
    # The axis as the protocol measures it: net areas in I and aVF over the QRS, aVF scaled by 2/sqrt(3).
    area_i, area_avf = qrs[0].sum() * dt, qrs[5].sum() * dt
    axis = math.degrees(math.atan2(area_avf / SQRT3_2, area_i))
    p_ii = p_term = None
    if params.p_lobes and params.pr_ms is not None and params.p_ms is not None:
        p_t = np.arange(-params.pr_ms, -params.pr_ms + params.p_ms + dt / 2, dt)
        p_leads = project(template(params.p_lobes, p_t))
        ii = p_leads[1]
        p_ii = float(ii[np.argmax(np.abs(ii))])
        v1 = p_leads[6]
        half = v1.size // 2
        p_term = float(max(0.0, -v1[half:].min())) if v1[:half].max() >= 0.03 else 0.0
        # A P negative throughout V1 and >= 80 ms wide counts by its depth (ingest.protocol.voltage).
        if params.p_ms >= 2 * LAA_V1_TERMINAL_P_FROM_MS:
            p_term = max(p_term, float(max(0.0, -v1[np.argmax(np.abs(v1))])))
    return leads, axis, p_ii, p_term


# --- labels by the protocol's thresholds --------------------------------------------------------

@dataclass
class Quantities:
    """The truth values the thresholds see; `shifted` perturbs one kind for the guard-band check."""

    hr: float
    rhythm: Rhythm
    pr: float | None
    qrs: float
    side: Literal["right", "left"] | None
    qtc: float
    axis: float
    leads: dict[str, LeadTruth]
    p_ii: float | None
    p_term: float | None
    shift: dict[str, float] = field(default_factory=dict)

    def s(self, kind: str, value: float, relative: bool = False) -> float:
        delta = self.shift.get(kind, 0.0)
        return value * (1 + delta) if relative else value + delta


def _qs_complex(lead: LeadTruth) -> bool:
    """A QS complex as the measurement labels it: no R wave of note, only a negative deflection."""
    return (lead.r_mv < min(QS_R_BELOW_MV, max(QRS_LABEL_MIN_MV, 0.05 * lead.qrs_pp_mv))
            and lead.qrs_pp_mv >= QRS_LABEL_MIN_MV)


def truth_labels(q: Quantities) -> list[str]:
    """The protocol's labels for these truth values, in the order the protocol reader writes them."""
    labels: list[str] = []
    hr = whole(q.s("hr", q.hr))
    assert hr is not None
    if q.rhythm == "atrial fibrillation":
        labels.append(v.ATRIAL_FIBRILLATION)
    else:
        labels.append({"bradycardia": v.SINUS_BRADYCARDIA, "tachycardia": v.SINUS_TACHYCARDIA,
                       "normal": v.SINUS_RHYTHM}[rate_class(hr)])
    if q.pr is not None:
        kind = pr_class(whole(q.s("pr", q.pr)) or 0)
        if kind == "short":
            labels.append(v.SHORT_PR)
        elif kind == "long":
            labels.append(v.FIRST_DEGREE_AV_BLOCK)
    qrs_ms = whole(q.s("qrs", q.qrs)) or 0
    qrs_kind = qrs_class(qrs_ms)
    if qrs_kind == "incomplete" and (q.side or qrs_ms > IVCD_ABOVE_MS):
        # 110-119 ms: incomplete with a bundle branch pattern, else non-specific (over 110 ms)
        labels.append(v.INCOMPLETE_BBB if q.side else v.IVCD)
    elif qrs_kind == "complete":
        labels.append({"right": v.RBBB, "left": v.LBBB, None: v.IVCD}[q.side])
    axis_kind = axis_class(whole(q.s("axis", q.axis)) or 0)
    if axis_kind != "normal":
        labels.append({"left": v.LEFT_AXIS_DEVIATION, "right": v.RIGHT_AXIS_DEVIATION,
                       "extreme": v.EXTREME_AXIS_DEVIATION}[axis_kind])
    leads = q.leads

    def volt(value: float) -> float:
        return hundredths(q.s("volt", value, relative=True)) or 0.0

    sokolow = sokolow_lyon_mv(volt(leads["V1"].s_mv), volt(leads["V5"].r_mv), volt(leads["V6"].r_mv))
    if lvh_criteria(sokolow, volt(leads["I"].r_mv), volt(leads["aVL"].r_mv)):
        labels.append(v.LVH)
    limb = max(volt(leads[lead].qrs_pp_mv) for lead in LEADS[:6])
    precordial = max(volt(leads[lead].qrs_pp_mv) for lead in LEADS[6:])
    if low_voltage(limb, precordial):
        labels.append(v.LOW_QRS_VOLTAGE)
    if poor_r_progression(volt(leads["V2"].r_mv), volt(leads["V3"].r_mv), volt(leads["V4"].r_mv)):
        labels.append(v.POOR_R_PROGRESSION)
    if q.p_ii is not None and hundredths(q.s("p", q.p_ii)) > RAA_P_II_ABOVE_MV:  # type: ignore[operator]
        labels.append(v.RIGHT_ATRIAL_ABNORMALITY)
    if q.p_term is not None and hundredths(q.s("p", q.p_term)) >= LAA_V1_TERMINAL_P_FROM_MV:  # type: ignore[operator]
        labels.append(v.LEFT_ATRIAL_ABNORMALITY)
    # Step 4 as the protocol reads it (ingest.protocol.ischemia): elevation at J and J + 60 ms (the
    # lower), depression at J + 60 ms, only deviation concordant with a wide QRS, and Q waves read
    # unless the wide QRS is not a right bundle branch block. The simulated ST is horizontal.
    st = {lead: hundredths(q.s("st", leads[lead].st_j60_mv)) or 0.0 for lead in LEADS}
    st_at_j = {lead: hundredths(q.s("st", leads[lead].st_j_mv)) or 0.0 for lead in LEADS}
    elevation = {lead: min(st[lead], st_at_j[lead]) for lead in LEADS}
    net = {lead: leads[lead].net_mv for lead in LEADS}
    wide = qrs_kind == "complete"
    for territory in territories_with(elevated_leads(elevation, net, wide)[0]):
        labels.append(v.territory_label(v.ST_ELEVATION, territory))
    for territory in territories_with(depressed_leads(st, {}, net, wide)):
        labels.append(v.territory_label(v.ST_DEPRESSION, territory))
    if not wide or q.side == "right":
        q_by_lead = {}
        for lead in LEADS:
            qs = _qs_complex(leads[lead])
            depth = max(leads[lead].q_mv, leads[lead].s_mv, leads[lead].qrs_pp_mv - leads[lead].r_mv) if qs \
                else leads[lead].q_mv
            q_by_lead[lead] = (whole(q.s("q_dur", leads[lead].q_ms)),
                               hundredths(q.s("q_amp", depth)) if depth > 0 else 0.0, qs)
        if q_wave_territories(q_by_lead):
            labels.append(v.PATHOLOGICAL_Q_WAVES)
    # The protocol decides with Framingham's correction of the QT (adjusted for a wide QRS).
    rr_ms = 60000.0 / q.s("hr", q.hr)
    qt = q.s("qtc", q.qtc) * math.sqrt(rr_ms / 1000.0)
    qtc_kind = qtc_class(whole(deciding_qtc_ms(qt, rr_ms, whole(q.s("qrs", q.qrs)))) or 0, None)
    if qtc_kind == "marked":
        labels.append(v.MARKED_QT_PROLONGATION)
    elif qtc_kind == "prolonged":
        labels.append(v.PROLONGED_QT)
    def t_amp(value: float) -> float:  # relative and absolute shifts of the T size, sign kept
        scaled = q.s("t", value, relative=True)
        return hundredths(math.copysign(max(0.0, q.s("t_abs", abs(scaled))), scaled)) or 0.0

    t_amps = {lead: t_amp(leads[lead].t_mv) for lead in LEADS}
    if len([lead for lead in LEADS if peaked_t(lead, t_amps[lead])]) >= PEAKED_T_MIN_LEADS:
        labels.append(v.PEAKED_T_WAVES)
    if len([lead for lead in T_UPRIGHT_LEADS if flat_t(t_amps[lead])]) >= FLAT_T_MIN_LEADS:
        labels.append(v.FLAT_T_WAVES)
    if not [label for label in labels if label not in v.NORMAL_LABELS]:
        labels.append(v.NORMAL_ECG)
    return labels


def _shifts() -> list[dict[str, float]]:
    """Every single-kind perturbation the guard-band check applies, both directions."""
    kinds = {"hr": GUARD["hr"], "pr": GUARD["pr"], "qrs": GUARD["qrs"], "qtc": GUARD["qtc"], "axis": GUARD["axis"],
             "volt": GUARD["volt_rel"], "st": GUARD["st"], "q_amp": GUARD["q_amp"], "q_dur": GUARD["q_dur"],
             "t": GUARD["t_rel"], "t_abs": GUARD["t_abs"], "p": GUARD["p"]}
    return [{kind: sign * size} for kind, size in kinds.items() for sign in (1.0, -1.0)]


# The next P starts at least this long after the T ends (P waves on the T are not simulated).
MIN_T_TO_P_MS = 50.0


def separated(params: Params) -> bool:
    """True when every beat's T ends well before the next P (or QRS, in AF) begins."""
    shortest = float(params.rr_ms.min())
    return shortest - (params.pr_ms or 0.0) - params.qt_ms >= MIN_T_TO_P_MS


def quantities(params: Params) -> Quantities:
    onsets = beat_onsets(params)
    inside = onsets[(onsets >= 0) & (onsets < SECONDS * 1000)]
    rr = np.diff(inside)
    hr = 60000.0 / float(rr.mean())
    leads, axis, p_ii, p_term = lead_truth(params)
    side = {"rbbb": "right", "incomplete": "right", "lbbb": "left"}.get(params.conduction)
    qtc = params.qt_ms / math.sqrt(float(rr.mean()) / 1000.0)
    return Quantities(hr=hr, rhythm=params.rhythm, pr=params.pr_ms, qrs=params.qrs_ms,
                      side=side,  # type: ignore[arg-type]
                      qtc=qtc, axis=axis, leads=leads, p_ii=p_ii, p_term=p_term)


def unambiguous(q: Quantities) -> bool:
    """True when no truth value sits within its guard band of a protocol threshold."""
    labels = truth_labels(q)
    for shift in _shifts():
        q.shift = shift
        if truth_labels(q) != labels:
            q.shift = {}
            return False
    q.shift = {}
    return abs(whole(q.axis) or 0) < 178


# --- the signal ------------------------------------------------------------------------------------

def _noise(rng: np.random.Generator, level: NoiseLevel, t_s: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Electrode noise (9, N): RA, LA, LL, V1..V6 (baseline wander, muscle noise, mains hum)."""
    scale = {"clean": 0.0, "typical": 1.0, "noisy": 1.6}[level]
    wander = rng.uniform(0.03, 0.15) * scale
    muscle = rng.uniform(0.003, 0.012) * scale
    hum = rng.uniform(0.0, 0.015) * scale
    mains = float(rng.choice([50.0, 60.0]))
    electrodes = np.zeros((9, t_s.size))
    for row in range(9):
        for _ in range(2):
            electrodes[row] += wander / 2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.45) * t_s + rng.uniform(0, 6.3))
        # Muscle noise: white noise smoothed to ~40 Hz bandwidth.
        white = rng.standard_normal(t_s.size + 8)
        electrodes[row] += muscle * np.convolve(white, np.ones(8) / math.sqrt(8), mode="valid")[: t_s.size] * 1.2
        electrodes[row] += hum * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * mains * t_s + rng.uniform(0, 6.3))
    return electrodes, {"baseline_wander_mv": round(wander, 4), "muscle_sd_mv": round(muscle, 4),
                        "mains_hum_mv": round(hum, 4), "mains_hz": mains}


def _fibrillation(rng: np.random.Generator, t_s: np.ndarray) -> np.ndarray:
    """AF's fibrillatory baseline: a (3, N) dipole of 4-9 Hz waves with wandering phase."""
    direction = unit((-0.2, 0.6, 0.8))
    amplitude = rng.uniform(0.03, 0.08)
    wave = np.zeros(t_s.size)
    for _ in range(3):
        freq = rng.uniform(4.0, 9.0)
        drift = np.cumsum(rng.normal(0, 0.08, t_s.size))
        wave += np.sin(2 * np.pi * freq * t_s + drift + rng.uniform(0, 6.3)) / 3
    return np.outer(direction, amplitude * wave / max(1e-9, np.abs(wave).max()) * 1.6)


def compose(params: Params, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
    """The (12, 5000) float32 mV record: beats placed at their onsets, modulation, noise."""
    t_ms = np.arange(SAMPLES) * 1000.0 / FS
    t_s = t_ms / 1000.0
    dipole = np.zeros((3, SAMPLES))
    # Respiration changes the heart's position: the beat amplitude breathes by a few per cent.
    resp = 1 + rng.uniform(0.0, 0.05) * np.sin(2 * np.pi * rng.uniform(0.2, 0.33) * t_s + rng.uniform(0, 6.3))
    lo = -(params.pr_ms or 0.0) - 5.0
    hi = params.qt_ms + 5.0
    local = np.arange(math.floor(lo * FS / 1000), math.ceil(hi * FS / 1000) + 1)
    beat = template(params.lobes + params.p_lobes, local * 1000.0 / FS)
    for onset in beat_onsets(params):
        at = int(round(onset * FS / 1000.0))
        index = local + at
        keep = (index >= 0) & (index < SAMPLES)
        if keep.any():
            dipole[:, index[keep]] += beat[:, keep] * rng.uniform(0.98, 1.02)
    dipole *= resp
    if params.rhythm == "atrial fibrillation":
        dipole += _fibrillation(rng, t_s)
    noise, levels = _noise(rng, params.noise, t_s)
    ra, la, ll, chest = noise[0], noise[1], noise[2], noise[3:]
    wilson = (ra + la + ll) / 3
    lead_i = (dipole[0] + la - ra).astype(np.float32)
    lead_ii = (0.5 * dipole[0] + SQRT3_2 * dipole[1] + ll - ra).astype(np.float32)
    precordial = (PRECORDIAL_VECTORS @ dipole + chest - wilson).astype(np.float32)
    signal = np.vstack([*limb_leads(lead_i, lead_ii), precordial]).astype(np.float32)
    return signal, levels


def simulate(record_id: str, seed: int, index: int = 0, force_normal: bool | None = None) -> tuple[np.ndarray,
                                                                                                   SimulatedTruth]:
    """Simulate one record; the same (seed, index) always gives the same signal and truth."""
    rng = np.random.default_rng([seed, index])
    if force_normal is None:
        force_normal = bool(rng.random() < 0.18)
    for draw in range(1, MAX_DRAWS + 1):
        params = _draw(rng, force_normal)
        if not separated(params):
            continue
        q = quantities(params)
        if unambiguous(q):
            break
    else:  # pragma: no cover - the guard bands are narrow; 60 misses in a row would be a bug
        raise RuntimeError(f"{record_id}: no unambiguous parameter draw in {MAX_DRAWS} tries")
    signal, levels = compose(params, rng)
    onsets = beat_onsets(params)
    inside = onsets[(onsets >= 0) & (onsets < SECONDS * 1000)]
    rr = np.diff(inside)
    truth = SimulatedTruth(
        id=record_id, seed=[seed, index], rhythm=params.rhythm, hr_bpm=round(q.hr, 2),
        rr_cv=round(float(rr.std(ddof=1) / rr.mean()), 4), beat_count=int(inside.size),
        pr_ms=None if params.pr_ms is None else round(params.pr_ms, 1),
        p_ms=None if params.p_ms is None else round(params.p_ms, 1),
        qrs_ms=round(params.qrs_ms, 1), qt_ms=round(params.qt_ms, 1), qtc_ms=round(q.qtc, 1),
        axis_deg=round(q.axis, 1), conduction=params.conduction, axis_mode=params.axis_mode,
        voltage_mode=params.voltage_mode, st_territory=params.st_territory,
        st_injury_mv=round(params.st_injury_mv, 3), t_mode=params.t_mode,
        p_ii_mv=None if q.p_ii is None else round(q.p_ii, 3),
        p_v1_terminal_mv=None if q.p_term is None else round(q.p_term, 3),
        noise=params.noise, noise_mv=levels,
        leads={lead: LeadTruth(**{name: round(value, 3) for name, value in lt.model_dump().items()})
               for lead, lt in q.leads.items()},
        labels=truth_labels(q), draws=draw,
    )
    return signal, truth


# --- the corpus ----------------------------------------------------------------------------------

def synthetic_row(index: int, seed: int, out_dir: Path) -> TrainingRow:
    """Simulate, measure, render and read record `index`; write its files; return its row."""
    from ingest.measure.features import measure
    from ingest.prepare.render import render_12lead

    record_id = f"synthetic-{index:05d}"
    signal, truth = simulate(record_id, seed, index)
    features = measure(signal, FS)
    image = render_12lead(signal, FS, pixels_per_mm=4)
    return build_row(RowInput(id=record_id, source="synthetic", signal=signal, image=image, features=features,
                              reference_labels=truth.labels, label_origin="simulated", split=split_for(record_id),
                              meta={"simulated": truth.model_dump()}), out_dir)


def hr_errors(rows: list[TrainingRow]) -> list[float]:
    """|measured - simulated| heart rate (bpm) over the regular (sinus) rows where HR was measured."""
    errors = []
    for row in rows:
        truth = row.meta.get("simulated", {})
        measured = row.meta.get("measured", {})
        if isinstance(truth, dict) and isinstance(measured, dict) and truth.get("rhythm") == "sinus":
            hr = measured.get("hr_bpm")
            if hr is not None:
                errors.append(abs(float(hr) - float(truth["hr_bpm"])))
    return errors


def _try_synthetic(index: int, seed: int, out_dir: Path) -> TrainingRow | tuple[int, str]:
    """Record `index`'s row, or (index, why) when it failed (run in worker processes too)."""
    try:
        return synthetic_row(index, seed, out_dir)
    except Exception as error:  # a measuring or rendering failure is listed, never silent
        return index, f"{type(error).__name__}: {error}"


def generate_synthetic_corpus(out_dir: Path, count: int, seed: int = 0, progress: bool = True,
                              rewriter: Rewriter | None = None, workers: int = 1) -> Path:
    """Write `count` simulated rows to out_dir/corpus.jsonl (+ signals/, images/, summary.json).

    Record i depends only on (seed, i): a corpus of 600 starts with the corpus of 100, and
    `workers` (processes) changes nothing but the time. `rewriter` (default: the protocol
    reader's own wording) may vary the assistant text (training.corpus.apply_rewriter
    checks it). A record that fails is listed in rejected.csv. Returns the JSONL's path.
    """
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from tqdm import tqdm

    from training.corpus import ProtocolWording, Rejected, apply_rewriter, write_rejected

    rewriter = rewriter or ProtocolWording()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[TrainingRow] = []
    rejected: list[Rejected] = []
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        make = partial(_try_synthetic, seed=seed, out_dir=out_dir)
        outcomes = pool.map(make, range(count), chunksize=8) if pool else map(make, range(count))
        for outcome in tqdm(outcomes, total=count, desc="synthetic ECGs", unit="ecg", disable=not progress):
            if isinstance(outcome, TrainingRow):
                rows.append(apply_rewriter(rewriter, outcome))
            else:
                index, reason = outcome
                rejected.append(Rejected(id=f"synthetic-{index:05d}", path=f"simulate(seed={seed}, index={index})",
                                         reason=reason))
    finally:
        if pool is not None:
            pool.shutdown()
    write_rows(out_dir / CORPUS_FILE, rows)
    write_rejected(out_dir / REJECTED_FILE, rejected)
    errors = hr_errors(rows)
    extra: dict[str, object] = {"seed": seed, "workers": workers, "hr_error_bpm": {
        "rows": len(errors), "mean": round(float(np.mean(errors)), 2) if errors else None,
        "max": round(float(np.max(errors)), 2) if errors else None,
        "within_2_bpm": sum(error <= 2.0 for error in errors)}}
    write_summary(out_dir, summarise(rows, rejected=len(rejected), seconds=time.perf_counter() - started, extra=extra))
    return out_dir / CORPUS_FILE


__all__ = ["FS", "LeadTruth", "SAMPLES", "SimulatedTruth", "generate_synthetic_corpus", "hr_errors", "limb_leads",
           "project", "simulate", "synthetic_row", "truth_labels"]
