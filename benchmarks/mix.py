"""Benchmark inputs: real 12-lead recordings written in the formats and rates hospitals send.

    write_mix(folder, count) -> list[MixItem]

Every input is a different real recording from `data/real/` (331 WFDB records from LUDB,
PTB-XL, Georgia, CPSC 2018, Chapman-Shaoxing and Ningbo, all recorded at 500 Hz, plus the
Mortara ELI 250 DICOM that ships with pydicom, recorded at 1000 Hz); past 331 inputs a
record comes back in another slot of the mix, so in another format or rate. The mix, in
slots of ten:

    4  DICOM 12-lead at 1000 Hz   the real Mortara file once; the others are real WFDB records
                                  resampled 500 -> 1000 Hz and written as DICOM waveform files
    1  WFDB at 250 Hz             a real record resampled 500 -> 250 Hz (format 16)
    2  WFDB at 500 Hz             a real record as recorded (format 16)
    1  WFDB at 1000 Hz            a real record resampled 500 -> 1000 Hz (format 16)
    2  PDF page                   a real record printed as a cart's PDF export would: one
                                  letter page, a text layer with the patient fields, the grid
                                  and the 3 x 4 + rhythm strip drawn as vector paths

Resampled inputs are labelled with the rate they were written at and `resampled` in their
label, so nobody mistakes them for a device's own 250 or 1000 Hz recording. The writers
are the reader tests' (`tests/ingest_readers/builders.py`), plus the PDF page below.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ingest.ecg import STANDARD_LEADS  # noqa: E402
from ingest.prepare.signal import resample  # noqa: E402
from ingest.readers.read import read_ecg  # noqa: E402

REAL = REPO / "data" / "real"
SLOTS: tuple[tuple[str, int | None], ...] = (
    ("dicom", 1000), ("wfdb", 500), ("pdf", None), ("dicom", 1000), ("wfdb", 250),
    ("dicom", 1000), ("wfdb", 500), ("pdf", None), ("dicom", 1000), ("wfdb", 1000),
)


@dataclass(frozen=True)
class MixItem:
    path: Path  # the file to read (a WFDB header for WFDB records)
    kind: str  # "dicom-1000", "wfdb-250", "wfdb-500", "wfdb-1000", "pdf"
    label: str  # what it is, honestly: the source record and what was done to it


def real_records() -> list[Path]:
    """The WFDB headers of `data/real/` in references.csv order (the Mortara DICOM excluded)."""
    with (REAL / "references.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [REAL / row["path"] for row in rows if row["source"] != "mortara"]


def _twelve_leads(header: Path) -> np.ndarray:
    """The record's 12 leads in STANDARD_LEADS order, mV, 500 Hz."""
    ecg = read_ecg(header)
    index = [ecg.lead_names.index(lead) for lead in STANDARD_LEADS]
    return np.nan_to_num(np.asarray(ecg.signal, dtype=np.float64)[index])


def _write_dicom(path: Path, signal_mv: np.ndarray, fs: float, patient: str) -> Path:
    from tests.ingest_readers.builders import mdc_sources, waveform_group, write_dicom_ecg

    microvolts = np.clip(signal_mv * 1000.0, -32000, 32000)
    group = waveform_group(microvolts, mdc_sources(STANDARD_LEADS), fs=fs, label="RHYTHM")
    return write_dicom_ecg(path, [group], patient_id=patient, patient_name=f"BENCH^{patient}")


def _write_wfdb(folder: Path, name: str, signal_mv: np.ndarray, fs: float) -> Path:
    from tests.ingest_readers.builders import write_wfdb

    folder.mkdir(parents=True, exist_ok=True)
    return write_wfdb(folder, name, np.clip(signal_mv, -32, 32), STANDARD_LEADS, fs=fs,
                      comments=["Age: 60", "Sex: Female"])


def write_pdf_page(path: Path, signal_mv: np.ndarray, fs: float, patient: str) -> Path:
    """One letter page in landscape: patient fields as text, the mm grid, and the 12 leads
    (3 x 4 panels of 2.5 s and a 10 s lead II strip) at 25 mm/s and 10 mm/mV as vector paths."""
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    width, height = landscape(letter)
    page = canvas.Canvas(str(path), pagesize=(width, height), invariant=True)
    page.setFont("Helvetica", 9)
    for row, text in enumerate((f"Name: BENCH^{patient}", f"Patient ID: {patient}", "Sex: F   Age: 60",
                                "25 mm/s   10 mm/mV")):
        page.drawString(12 * mm, height - (10 + 4.5 * row) * mm, text)
    left, bottom, grid_w, grid_h = 12 * mm, 12 * mm, 250 * mm, 150 * mm
    for step, colour, line in ((1, (1.0, 0.85, 0.85), 0.2), (5, (0.95, 0.55, 0.55), 0.5)):
        page.setStrokeColorRGB(*colour)
        page.setLineWidth(line)
        for x in np.arange(0, 250 + 1e-9, step):
            page.line(left + x * mm, bottom, left + x * mm, bottom + grid_h)
        for y in np.arange(0, 150 + 1e-9, step):
            page.line(left, bottom + y * mm, left + grid_w, bottom + y * mm)
    page.setStrokeColorRGB(0, 0, 0)
    page.setLineWidth(0.6)
    index = {lead: i for i, lead in enumerate(STANDARD_LEADS)}
    rows = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
    per_panel = round(2.5 * fs)

    def trace(samples: np.ndarray, x0_mm: float, baseline_mm: float) -> None:
        xs = left + (x0_mm + np.arange(samples.size) * 25.0 / fs) * mm
        ys = bottom + (baseline_mm + 10.0 * samples) * mm
        drawn = page.beginPath()
        drawn.moveTo(xs[0], ys[0])
        for x, y in zip(xs[1:].tolist(), ys[1:].tolist(), strict=True):
            drawn.lineTo(x, y)
        page.drawPath(drawn, stroke=1, fill=0)

    for row, leads in enumerate(rows):
        baseline = 125 - 35 * row
        for column, lead in enumerate(leads):
            samples = signal_mv[index[lead], column * per_panel:(column + 1) * per_panel]
            trace(samples, 10 + 62.5 * column, baseline)
            page.drawString(left + (11 + 62.5 * column) * mm, bottom + (baseline + 8) * mm, lead)
    trace(signal_mv[index["II"], :round(10 * fs)], 10, 20)
    page.drawString(left + 11 * mm, bottom + 28 * mm, "II")
    page.showPage()
    page.save()
    return path


def write_mix(folder: Path, count: int) -> list[MixItem]:
    """`count` inputs in `folder`, slot by slot (see the module docstring)."""
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    records = real_records()
    items: list[MixItem] = []
    mortara_used = False
    for n in range(count):
        kind, rate = SLOTS[n % len(SLOTS)]
        if kind == "dicom" and not mortara_used:
            mortara_used = True
            items.append(MixItem(Path(get_testdata_file("waveform_ecg.dcm")), "dicom-1000",
                                 "Mortara ELI 250 DICOM, 1000 Hz as recorded"))
            continue
        header = records[n % len(records)]
        record = f"{header.parent.name}/{header.stem}"
        signal = _twelve_leads(header)
        patient = f"B{n:05d}"
        if kind == "pdf":
            path = write_pdf_page(folder / f"{patient}.pdf", signal, 500.0, patient)
            items.append(MixItem(path, "pdf", f"{record} (500 Hz) printed as a vector PDF page"))
            continue
        assert rate is not None
        written = signal if rate == 500 else resample(signal, 500.0, float(rate)).astype(np.float64)
        how = "as recorded" if rate == 500 else f"resampled 500 -> {rate} Hz"
        if kind == "dicom":
            path = _write_dicom(folder / f"{patient}.dcm", written, rate, patient)
        else:
            path = _write_wfdb(folder / patient, patient, written, rate)
        items.append(MixItem(path, f"{kind}-{rate}", f"{record} {how}, written as {kind.upper()} at {rate} Hz"))
    return items


def mix_summary(items: list[MixItem]) -> str:
    """E.g. '40 inputs: 16 dicom-1000, 4 wfdb-250, 8 wfdb-500, 4 wfdb-1000, 8 pdf'."""
    order = ("dicom-1000", "wfdb-250", "wfdb-500", "wfdb-1000", "pdf")
    counts = {kind: sum(1 for item in items if item.kind == kind) for kind in order}
    return f"{len(items)} inputs: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
