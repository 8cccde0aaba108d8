"""From traces located on a page to the canonical 12-lead signal, shared by the vector and raster paths.

    PanelTrace   one drawn trace: its lead, its start time on the page, its samples in mV
    PageScale    paper speed, gain and how page millimetres relate to paper millimetres
    paper_scale(words, ...)   the speed and gain the page prints ("25mm/s 10mm/mV")
    assemble(traces, path)    -> (signal 12 x N at 500 Hz with NaN where no panel printed the
                                 lead, notes), or None with the reason when the required leads
                                 are not all printed

Time on a page. A printed 12-lead lays panels side by side in time: a 3x4 page shows I, II,
III for 0-2.5 s, aVR, aVL, aVF for 2.5-5 s and so on, and a rhythm strip for 0-10 s. So a
trace's start time is its distance from the leftmost trace start on its page, at the paper
speed. Traces on different pages (a 6-lead-per-page report) are taken as simultaneous: each
page starts at 0 s. Where two traces print the same lead at the same time (lead II in a panel
and in the rhythm strip), the longer one is kept and the other fills only what it lacks; if
they disagree, the note says so.

A lead the page does not print at a given time is NaN there ("not printed"), never zero nor
copied from elsewhere: preparation reads NaN as 0 for the model (as ECG-R1's release does)
and measurement leaves those samples out. The eight independent leads (I, II, V1-V6) must be
printed; a missing III, aVR, aVL or aVF is derived from I and II where both are printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.ecg import STANDARD_LEADS
from ingest.readers.pdf.document import Word

SAMPLING_RATE_HZ = 500.0
DEFAULT_SPEED_MM_S = 25.0
DEFAULT_GAIN_MM_MV = 10.0
REQUIRED_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
MAX_DURATION_S = 60.0  # a page of several minutes of rhythm is no 12-lead
# Two traces of one lead at the same time disagree when their RMS difference exceeds this.
_DISAGREEMENT_MV = 0.1

_SPEEDS = (5.0, 6.25, 10.0, 12.5, 25.0, 50.0, 100.0)
_GAINS = (2.5, 5.0, 10.0, 20.0, 40.0)
_SPEED = re.compile(r"(\d+(?:[.,]\d+)?)\s*mm\s*/\s*s(?:ec)?\b", re.IGNORECASE)
_GAIN = re.compile(r"(\d+(?:[.,]\d+)?)\s*mm\s*/\s*mV\b", re.IGNORECASE)


@dataclass(frozen=True)
class PageScale:
    """How to read one page: paper mm per second and per millivolt, and paper mm per page mm."""

    speed_mm_s: float
    gain_mm_mv: float
    mm_per_page_mm: float = 1.0
    speed_source: str = "default"
    gain_source: str = "default"


@dataclass(frozen=True)
class PanelTrace:
    """One printed trace of one lead: mV samples at SAMPLING_RATE_HZ from `start_s` on."""

    lead: str
    start_s: float
    samples: np.ndarray
    page: int

    @property
    def stop_s(self) -> float:
        return self.start_s + self.samples.size / SAMPLING_RATE_HZ


def paper_scale(words: Sequence[Word]) -> tuple[float | None, float | None]:
    """(speed mm/s, gain mm/mV) the page prints, each None unless one standard value is printed."""
    text = " ".join(word.text for word in words)
    speeds = {float(m[1].replace(",", ".")) for m in _SPEED.finditer(text)} & set(_SPEEDS)
    gains = {float(m[1].replace(",", ".")) for m in _GAIN.finditer(text)} & set(_GAINS)
    return (speeds.pop() if len(speeds) == 1 else None), (gains.pop() if len(gains) == 1 else None)


def sample_polyline(x_s: np.ndarray, y_mv: np.ndarray) -> tuple[float, np.ndarray]:
    """A drawn polyline (time in s along the page, mV) as (start time, samples at 500 Hz).

    The polyline is a function of time drawn left to right; points sharing a time (the
    vertical stroke of a steep QRS) are kept in drawing order by a tiny increasing offset,
    so interpolation follows the stroke rather than averaging it away.
    """
    order = np.argsort(x_s, kind="stable")
    t = x_s[order]
    y = y_mv[order]
    t = np.maximum.accumulate(t + np.arange(t.size) * 1e-9)
    # A panel drawn from exactly 2.5 s may read back as 2.4999999 s or 2.5000001 s: within a
    # tenth of a sample of a sample instant counts as on it.
    first = np.ceil(t[0] * SAMPLING_RATE_HZ - 0.1)
    last = np.floor(t[-1] * SAMPLING_RATE_HZ + 0.1)
    grid = np.arange(first, last + 1) / SAMPLING_RATE_HZ
    return float(first / SAMPLING_RATE_HZ), np.interp(grid, t, y)


def assemble(traces: Sequence[PanelTrace]) -> tuple[np.ndarray | None, list[str]]:
    """The (12, N) mV signal at 500 Hz with NaN where no trace printed the lead, and notes.

    Returns (None, [reason]) when a required lead is not printed at all.
    """
    notes: list[str] = []
    printed = {trace.lead for trace in traces}
    missing = [lead for lead in REQUIRED_LEADS if lead not in printed]
    if missing:
        return None, [f"lead(s) {', '.join(missing)} not found on the page(s); "
                      f"a 12-lead needs {', '.join(REQUIRED_LEADS)}"]
    duration = min(MAX_DURATION_S, max(trace.stop_s for trace in traces))
    n = int(round(duration * SAMPLING_RATE_HZ))
    signal = np.full((len(STANDARD_LEADS), n), np.nan)
    # Longest first: a rhythm strip wins over a panel of the same lead, which fills only gaps.
    for trace in sorted(traces, key=lambda trace: -trace.samples.size):
        row = STANDARD_LEADS.index(trace.lead)
        start = int(round(trace.start_s * SAMPLING_RATE_HZ))
        stop = min(n, start + trace.samples.size)
        if stop <= start:
            continue
        piece = trace.samples[: stop - start]
        existing = signal[row, start:stop]
        both = np.isfinite(existing)
        if both.sum() > 0.2 * SAMPLING_RATE_HZ:
            rms = float(np.sqrt(np.mean((existing[both] - piece[both]) ** 2)))
            if rms > _DISAGREEMENT_MV:
                notes.append(f"lead {trace.lead} is printed twice for the same time and the two differ "
                             f"(RMS {rms:.2f} mV); the longer trace is used")
        signal[row, start:stop] = np.where(both, existing, piece)
    derived = _derive_limb_leads(signal, printed)
    if derived:
        notes.append(f"lead(s) {', '.join(derived)} not printed: derived from I and II where both are printed")
    return signal.astype(np.float32), notes


def _derive_limb_leads(signal: np.ndarray, printed: set[str]) -> list[str]:
    index = {lead: i for i, lead in enumerate(STANDARD_LEADS)}
    lead_i, lead_ii = signal[index["I"]], signal[index["II"]]
    formulas = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
                "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    derived = []
    for lead, values in formulas.items():
        if lead not in printed:
            signal[index[lead]] = values  # NaN wherever I or II is not printed
            derived.append(lead)
    return derived


def coverage(signal: np.ndarray) -> dict[str, float]:
    """Seconds printed per lead."""
    return {lead: float(np.isfinite(row).sum() / SAMPLING_RATE_HZ) for lead, row in zip(STANDARD_LEADS, signal,
                                                                                         strict=True)}
