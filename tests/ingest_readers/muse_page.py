"""A GE MUSE-style ECG page, written by the tests, in place of real MUSE PDFs we may not redistribute.

    write_muse_style_pdf(path, signal, fs, text)   the page: MUSE's header, 3x4 panels + lead II
                                                   rhythm strip, footless pulses, /Rotate 90
    MuseStyleText                                  what its header prints (every word chosen by
                                                   the test that writes the page)
    chapman_record(record)                         a real Chapman-Shaoxing recording and the GE
                                                   MUSE measurements of its original release

The reader's MUSE rules were written on two real MUSE 10.1.3 PDFs from a public repository
without a licence (tests/data/pdf/MANIFEST.md says why they are not here). This page copies
their geometry, measured off those files: the first line "NAME  ID:500  2020/02/11 11:31:29
<site>" in separate text objects, the measurement block ("Vent. rate", "PR interval", "QRS
duration", "QT/QTcB", "P-R-T axes" with values and units as their own words), the statements
column right of it, a 1 mm pink grid with 5 mm lines, a 1 mV pulse per row drawn as one
polyline that stands on the baseline with no foot line of its own, panels of 2.476 s (1238
samples at 500 Hz) every 2.5 s starting 0.4 mm right of the pulse, a 10 s lead II strip,
labels under the baseline, and a portrait /MediaBox displayed landscape by /Rotate 90. It is a
page in MUSE's layout, not a MUSE export: nothing in it comes from GE.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.ecg import STANDARD_LEADS
from tests.ingest_readers.ecg_pages import LAYOUTS, draw_text, landscape_canvas

REPO = Path(__file__).resolve().parents[2]

PANEL_S = 2.476  # MUSE draws 1238 of a column's 1250 samples (500 Hz)
TRACE_LEFT_MM = 10.8  # 0 s: 0.4 mm right of the pulses
BASELINES_MM = (73.46, 110.44, 147.41, 184.40)  # rows I.., II.., III.., then the lead II strip
GRID_MM = (4.5, 58.4, 272.5, 199.4)  # left, top, right, bottom
GRID_MINOR, GRID_MAJOR = (1.0, 0.835, 0.835), (1.0, 0.635, 0.635)
PULSE_LEFT_MM, PULSE_WIDTH_MM = 4.5, 5.9
SPEED_MM_S, GAIN_MM_MV = 25.0, 10.0
LATIN, CJK = "Helvetica-Bold", "MSung-Light"  # MSung-Light: reportlab's built-in Traditional Chinese font
STATEMENT_BLUE = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class MuseStyleText:
    """The header of the page. A measurement left None is printed as its label and unit only."""

    name: str = "DOE, JANE"
    patient_id: str = "500"
    acquired: str = "2020/02/11 11:31:29"
    site: str = "Demo Hospital - Cardiology 心臟內科 例行檢查"
    birth: str = "1997/09/08 (23 歲)"
    rate_bpm: int | None = 80
    pr_ms: int | None = 146
    qrs_ms: int | None = 84
    qt_ms: int | None = 362
    qtc_ms: int | None = 417
    axes_deg: tuple[int | None, int | None, int | None] = (-5, 34, 11)
    statements: tuple[str, ...] = ("Normal sinus rhythm, 正常竇性心律", "Normal 12-lead electrocardiogram, 正常心電圖")
    # The bug this guards against: an exporter that writes the whole first line as one text
    # object, so that everything after "ID:" would be taken for the identifier.
    first_line_as_one_object: bool = False
    # "ROOM #:" just above the grid's top left: one real page printed it, the other did not.
    room_label: bool = True


def _font(value: str) -> str:
    return CJK if any(ord(ch) > 0x2E7F for ch in value) else LATIN


def _header(doc: object, text: MuseStyleText) -> None:
    def word(x: float, y: float, value: str, *, right: bool = False, size: float = 3.2) -> None:
        draw_text(doc, x, y, value, size, font=_font(value), right_aligned=right)

    first = ((4.5, text.name), (77.8, f"ID:{text.patient_id}"), (115.7, text.acquired), (170.7, text.site))
    if text.first_line_as_one_object:
        word(4.5, 11.6, "  ".join(value for _, value in first))
    else:
        for x, value in first:
            word(x, 11.6, value)
    word(4.8, 18.5, text.birth)
    qt = f"{text.qt_ms}/{text.qtc_ms}" if text.qt_ms is not None and text.qtc_ms is not None else None
    block = (("Vent. rate", text.rate_bpm, "BPM"), ("PR interval", text.pr_ms, "ms"),
             ("QRS duration", text.qrs_ms, "ms"), ("QT/QTcB", qt, "ms"))
    for row, (label, value, unit) in enumerate(block):
        y = 18.0 + 3.2 * row
        word(54.7, y, label)
        if value is not None:
            word(99.2, y, str(value), right=True)
        word(104.0 if unit == "BPM" else 105.9, y, unit)
    word(54.7, 30.8, "P-R-T axes")
    p, r, t = text.axes_deg  # two right-aligned, the third left-aligned in the unit column, as MUSE sets them
    for x, value, right in ((92.4, p, True), (99.2, r, True), (105.9, t, False)):
        if value is not None:
            word(x, 30.8, str(value), right=right)
    doc.setFillColorRGB(*STATEMENT_BLUE)  # the statements in larger blue letters
    for row, statement in enumerate(text.statements):
        word(119.9, 19.3 + 4.0 * row, statement, size=3.6)
    doc.setFillColorRGB(0, 0, 0)
    word(4.5, 30.8, "位置:23")
    if text.room_label:
        word(4.8, 56.4, "ROOM #:")
    for x, value in ((4.7, "25mm/s"), (21.3, "10mm/mV"), (39.7, "150Hz"), (70.9, "12SL")):
        word(x, 204.4, value)
    word(240.7, 209.3, "第 1頁, 共 1 頁")


def _grid(doc: object) -> None:
    left, top, right, bottom = GRID_MM
    for step, colour, width in ((1.0, GRID_MINOR, 0.01), (5.0, GRID_MAJOR, 0.25)):
        doc.setStrokeColorRGB(*colour)
        doc.setLineWidth(width)
        for x in np.arange(left, right + 1e-6, step):
            doc.line(x, top, x, bottom)
        for y in np.arange(top, bottom + 1e-6, step):
            doc.line(left, y, right, y)
    doc.setLineWidth(0.3)
    doc.rect(left, top, right - left, bottom - top, stroke=1, fill=0)


def _polyline(doc: object, xs: np.ndarray, ys: np.ndarray) -> None:
    path = doc.beginPath()
    path.moveTo(xs[0], ys[0])
    for x, y in zip(xs[1:], ys[1:], strict=True):
        path.lineTo(x, y)
    doc.drawPath(path, stroke=1, fill=0)


def _pulse(doc: object, base: float) -> None:
    """MUSE's pulse: one polyline of 0.1 mm steps, 0.5 mm on the baseline, 5 mm at 1 mV,
    0.5 mm on the baseline; its sides are the steps between, no separate foot line."""
    xs = PULSE_LEFT_MM + 0.1 * np.arange(60)
    ys = np.where((xs > PULSE_LEFT_MM + 0.45) & (xs < PULSE_LEFT_MM + PULSE_WIDTH_MM - 0.45), base - GAIN_MM_MV, base)
    _polyline(doc, xs, ys)


def write_muse_style_pdf(path: Path, signal: np.ndarray, fs: float, text: MuseStyleText | None = None) -> Path:
    """One MUSE-style page of `signal` (12 x N mV, at least 10 s, at fs Hz; leads in
    STANDARD_LEADS order), its header `text`."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont(CJK))
    data = np.asarray(signal, dtype=np.float64)
    # The title is how the reader names the system ("MUSE" in the document information).
    doc = landscape_canvas(path, rotate=90, title="MUSE(R)-style report written by the ecg-worklist tests")
    _header(doc, text or MuseStyleText())
    _grid(doc)
    doc.setStrokeColorRGB(0, 0, 0)
    doc.setLineWidth(0.3)
    mm_per_sample = SPEED_MM_S / fs
    for row, base in enumerate(BASELINES_MM):
        _pulse(doc, base)
        panels = ((lead, column * 2.5, PANEL_S) for column, lead in enumerate(LAYOUTS["3x4"][row])) if row < 3 \
            else (("II", 0.0, 10.0),)
        for lead, start_s, seconds in panels:
            first, count = round(start_s * fs), round(seconds * fs)
            values = data[STANDARD_LEADS.index(lead), first:first + count]
            _polyline(doc, TRACE_LEFT_MM + (first + np.arange(values.size)) * mm_per_sample, base - values * GAIN_MM_MV)
            draw_text(doc, TRACE_LEFT_MM + start_s * SPEED_MM_S + 0.3, base + 6.1, lead, 3.2, font=LATIN)
    doc.showPage()
    doc.save()
    return path


@dataclass(frozen=True)
class ChapmanRecord:
    """A real recording and what GE MUSE measured on it (the Chapman-Shaoxing release has no
    PR or P axis)."""

    name: str
    signal: np.ndarray  # (12, N) mV, STANDARD_LEADS order
    fs: float
    device: dict[str, float]  # hr_bpm, qrs_ms, qt_ms, qtc_ms, qrs_axis_deg, t_axis_deg

    def page_text(self, **changes: object) -> MuseStyleText:
        """The header printing GE MUSE's own values for this recording (PR and P axis empty)."""
        d = self.device
        values = dict(name="CHAPMAN-SHAOXING, RECORD", patient_id=self.name, rate_bpm=round(d["hr_bpm"]),
                      pr_ms=None, qrs_ms=round(d["qrs_ms"]), qt_ms=round(d["qt_ms"]), qtc_ms=round(d["qtc_ms"]),
                      axes_deg=(None, round(d["qrs_axis_deg"]), round(d["t_axis_deg"])), statements=())
        return MuseStyleText(**{**values, **changes})


def chapman_records() -> list[str]:
    """The Chapman-Shaoxing records of data/real (each with GE MUSE's measurements)."""
    with (REPO / "data" / "real" / "references.csv").open() as handle:
        return [row["record"] for row in csv.DictReader(handle) if row["source"] == "chapman_shaoxing"]


def chapman_record(record: str) -> ChapmanRecord:
    from ingest.readers.wfdb import read_wfdb

    with (REPO / "data" / "real" / "references.csv").open() as handle:
        row = next(row for row in csv.DictReader(handle)
                   if row["source"] == "chapman_shaoxing" and row["record"] == record)
    ecg = read_wfdb(REPO / "data" / "real" / row["path"])
    signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]].astype(np.float64)
    fields = ("hr_bpm", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg", "t_axis_deg")
    return ChapmanRecord(name=record, signal=signal, fs=float(ecg.sampling_rate_hz),
                         device={name: float(row[f"device_{name}"]) for name in fields})
