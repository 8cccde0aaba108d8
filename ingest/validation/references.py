"""The real-data set's references: one row per record, and LUDB's annotated wave boundaries.

`data/real/references.csv` (see `data/real/MANIFEST.md`) holds, per record: its source and
split, the path of its file under `data/real/` (or `pydicom:NAME` for a file that the
pydicom package ships), its original diagnostic codes (namespaced, see `labels`), and the
recording device's global measurements where the source carries them. LUDB's cardiologists
drew P, QRS and T boundaries in every lead, one lead at a time; `ludb_boundaries` turns
them into one boundary per beat: the median of the leads' marks.

Why the median and not the earliest onset and latest offset (the CSE referee's global
points, judged on all leads at once): LUDB's marks for one beat scatter by 20-40 ms across
the leads, so their union is wider than the complex. On this set the union gives a mean QRS
of 125 ms and the median 98 ms; the GE MUSE values of the Chapman-Shaoxing records agree
with a delineator that measures about 98 ms on LUDB to within a few ms.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ingest.ecg import Measurements
from ingest.validation.labels import ReferenceLabels, reference_labels

# The committed set, relative to the repository root.
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "real"
LUDB_FS = 500.0
LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
# Annotated QRS peaks of different leads closer than this belong to one beat.
SAME_BEAT_MS = 150.0
BOUNDARIES: tuple[str, ...] = ("p_on", "p_off", "qrs_on", "qrs_off", "t_end")
DEVICE_FIELDS: tuple[str, ...] = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "p_axis_deg", "qrs_axis_deg",
                                  "t_axis_deg")


class Reference(BaseModel):
    """One record of the set and what is known about it."""

    source: str
    record: str
    split: str  # "dev" (tune and train on it) or "test" (held out for reporting)
    path: str  # under the data directory, or "pydicom:NAME"
    codes: list[str] = Field(default_factory=list)
    age: int | None = None
    sex: str | None = None
    device: Measurements | None = None  # the recording device's own global measurements
    device_name: str | None = None
    annotations: str | None = None  # "ludb": wave boundaries drawn in every lead
    # "normalised": every lead scaled to 1 mV peak to peak (LUDB as published), so labels that
    # rest on amplitudes or on ratios between leads (axes) cannot be judged on this record.
    amplitudes: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}/{self.record}"

    @property
    def labels(self) -> ReferenceLabels:
        return reference_labels(self.codes)

    def file(self, data_dir: Path) -> Path:
        """The record's file (a WFDB header, or a DICOM file)."""
        if self.path.startswith("pydicom:"):
            from pydicom.data import get_testdata_file  # the package's own copy: nothing is downloaded

            return Path(get_testdata_file(self.path.split(":", 1)[1]))
        return data_dir / self.path


class AnnotatedBeat(BaseModel):
    """The global boundaries of one annotated beat, in ms from the record's start (None: not drawn)."""

    p_on: float | None = None
    p_off: float | None = None
    qrs_on: float
    qrs_off: float
    t_end: float | None = None

    def get(self, boundary: str) -> float | None:
        return getattr(self, boundary)


def load_references(data_dir: Path = DEFAULT_DATA_DIR, split: str = "all",
                    sources: list[str] | None = None) -> list[Reference]:
    """The set's references, filtered by split ("dev", "test" or "all") and sources."""
    if split not in ("dev", "test", "all"):
        raise ValueError(f"split must be dev, test or all, not {split!r}")
    path = data_dir / "references.csv"
    references = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            reference = _reference(row)
            if split != "all" and reference.split != split:
                continue
            if sources and reference.source not in sources:
                continue
            references.append(reference)
    return references


def _reference(row: dict[str, str]) -> Reference:
    values = {name: float(row[f"device_{name}"]) for name in DEVICE_FIELDS if row.get(f"device_{name}", "").strip()}
    return Reference(
        source=row["source"], record=row["record"], split=row["split"], path=row["path"],
        codes=[code for code in row["codes"].split(";") if code],
        age=int(row["age"]) if row.get("age", "").strip().isdigit() else None,
        sex=row.get("sex") or None,
        device=Measurements(**values) if values else None,
        device_name=row.get("device_name") or None,
        annotations=row.get("annotations") or None,
        amplitudes=row.get("amplitudes") or None,
    )


def ludb_boundaries(header: Path) -> list[AnnotatedBeat]:
    """The annotated beats of one LUDB record (a `.hea` path), with global boundaries, in time order."""
    from ingest.readers.wfdb import load_wfdb, quiet_wfdb_pandas

    wfdb = load_wfdb()

    marks = []  # (lead, wave symbol, onset ms, peak ms, offset ms)
    for lead in LUDB_LEADS:
        with quiet_wfdb_pandas():
            annotation = wfdb.rdann(str(header.with_suffix("")), lead)
        symbols, positions = list(annotation.symbol), np.asarray(annotation.sample) * 1000.0 / LUDB_FS
        for i, symbol in enumerate(symbols):
            if symbol in ("p", "N", "t") and 0 < i < len(symbols) - 1 \
                    and symbols[i - 1] == "(" and symbols[i + 1] == ")":
                marks.append((lead, symbol, positions[i - 1], positions[i], positions[i + 1]))
    qrs = sorted((m for m in marks if m[1] == "N"), key=lambda m: m[3])
    beats: list[list[tuple]] = []
    for mark in qrs:
        if beats and mark[3] - np.median([m[3] for m in beats[-1]]) <= SAME_BEAT_MS:
            beats[-1].append(mark)
        else:
            beats.append([mark])
    peaks = [float(np.median([m[3] for m in beat])) for beat in beats]
    result = []
    for index, beat in enumerate(beats):
        start = peaks[index - 1] if index > 0 else -np.inf
        stop = peaks[index + 1] if index + 1 < len(peaks) else np.inf
        p = [m for m in marks if m[1] == "p" and start < m[3] < peaks[index]]
        t = [m for m in marks if m[1] == "t" and peaks[index] < m[3] < stop]
        result.append(AnnotatedBeat(
            qrs_on=_median([m[2] for m in beat]), qrs_off=_median([m[4] for m in beat]),
            p_on=_median([m[2] for m in p]) if p else None, p_off=_median([m[4] for m in p]) if p else None,
            t_end=_median([m[4] for m in t]) if t else None,
        ))
    return result


def _median(positions: list[float]) -> float:
    return round(float(np.median(positions)), 1)
