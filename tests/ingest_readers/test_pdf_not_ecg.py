"""A PDF with no ECG in it is refused with the reason, so the watcher quarantines it.

The corpus is written here, at test time, with reportlab and Pillow: what lands in a hospital
inbox by mistake. None may become an ECG study, including the ones made to look close: a
letter full of ECG words and numbers, a line chart on a grid, a ruled table, graph paper.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ingest.errors import IngestError
from ingest.readers.read import read_ecg
from tests.ingest_readers.ecg_pages import write_image_pdf


def _canvas(path: Path):
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    return canvas.Canvas(str(path), pagesize=A4)


def invoice(path: Path) -> Path:
    doc = _canvas(path)
    doc.setFont("Helvetica-Bold", 16)
    doc.drawString(60, 780, "INVOICE 2024-0117")
    doc.setFont("Helvetica", 10)
    y = 720
    doc.line(60, y + 14, 540, y + 14)
    for item, price in (("12-lead ECG cart, service", "1,200.00"), ("Electrodes (500)", "85.00"),
                        ("Thermal paper, 25 mm/s grid, 10 rolls", "42.50"), ("Shipping", "15.00")):
        doc.drawString(60, y, item)
        doc.drawRightString(540, y, price)
        doc.line(60, y - 6, 540, y - 6)
        y -= 20
    doc.drawRightString(540, y - 10, "Total EUR 1,342.50")
    doc.showPage()
    doc.save()
    return path


def discharge_letter(path: Path) -> Path:
    """A letter that speaks ECG: words, numbers, even lead names, but shows none."""
    doc = _canvas(path)
    doc.setFont("Helvetica", 11)
    lines = ["Dear colleague,", "",
             "Name: DOE^JOHN   Patient ID: 4711   DOB: 1950-02-03",
             "ECG on admission: sinus rhythm, Vent. rate 72 BPM, PR interval 160 ms,",
             "QRS duration 96 ms, QT/QTc 380/416 ms, P-R-T axes 50 40 30.",
             "ST elevation in II, III and aVF; reciprocal changes in I and aVL; V1 V2 V3 V4 V5 V6 normal.",
             "Recorded at 25 mm/s, 10 mm/mV. Follow-up ECG in six weeks.", "", "Kind regards"]
    for i, line in enumerate(lines):
        doc.drawString(60, 760 - 16 * i, line)
    doc.showPage()
    doc.save()
    return path


def blank_page(path: Path) -> Path:
    doc = _canvas(path)
    doc.showPage()
    doc.save()
    return path


def line_chart(path: Path) -> Path:
    """Three series on a 5 mm grid, like a lab trend chart: drawn lines, but not ECG rows."""
    from reportlab.lib.units import mm

    doc = _canvas(path)
    doc.setStrokeColorRGB(0.8, 0.8, 0.8)
    for x in np.arange(30, 180.1, 5):
        doc.line(x * mm, 100 * mm, x * mm, 200 * mm)
    for y in np.arange(100, 200.1, 5):
        doc.line(30 * mm, y * mm, 180 * mm, y * mm)
    rng = np.random.default_rng(3)
    doc.setStrokeColorRGB(0, 0, 0)
    for level in (130, 150, 170):
        values = level + np.cumsum(rng.normal(0, 1.5, 300))
        path_obj = doc.beginPath()
        xs = np.linspace(30, 180, values.size)
        path_obj.moveTo(xs[0] * mm, values[0] * mm)
        for x, y in zip(xs[1:], values[1:], strict=True):
            path_obj.lineTo(x * mm, float(np.clip(y, 100, 200)) * mm)
        doc.drawPath(path_obj, stroke=1, fill=0)
    doc.showPage()
    doc.save()
    return path


def graph_paper(path: Path) -> Path:
    """An empty ECG-style 1/5 mm grid, as a scan: the grid of an ECG, but no traces."""
    image = Image.new("RGB", (2200, 1700), "white")
    draw = ImageDraw.Draw(image)
    for step, colour in ((7.874, (250, 205, 205)), (39.37, (230, 130, 130))):
        for x in np.arange(0, 2200, step):
            draw.line([(x, 0), (x, 1700)], fill=colour)
        for y in np.arange(0, 1700, step):
            draw.line([(0, y), (2200, y)], fill=colour)
    return write_image_pdf(path, image)


def photo(path: Path) -> Path:
    """A photograph-like scan: smooth gradients, blobs and noise."""
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:1200, 0:1600]
    red = 128 + 80 * np.sin(x / 97.0) * np.cos(y / 53.0)
    green = 110 + 70 * np.cos((x + y) / 131.0)
    blue = 150 + 60 * np.sin(np.hypot(x - 800, y - 600) / 40.0)
    pixels = np.stack([red, green, blue], axis=2) + rng.normal(0, 12, (1200, 1600, 1))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        cx, cy, r = rng.integers(0, 1600), rng.integers(0, 1200), rng.integers(20, 150)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return write_image_pdf(path, image, dpi=150)


def scanned_text(path: Path) -> Path:
    """A scanned typed letter: lines of text in an image, no text layer."""
    image = Image.new("RGB", (1700, 2200), "white")
    draw = ImageDraw.Draw(image)
    for row in range(60):
        draw.text((150, 150 + 30 * row), "Lorem ipsum dolor sit amet, ECG 12-lead QRS 96 ms " * 2, fill=(20, 20, 20))
    return write_image_pdf(path, image)


CORPUS: dict[str, Callable[[Path], Path]] = {
    "invoice": invoice, "discharge-letter": discharge_letter, "blank-page": blank_page, "line-chart": line_chart,
    "graph-paper": graph_paper, "photo": photo, "scanned-text": scanned_text,
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_pdf_with_no_ecg_is_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    pdf = CORPUS[name](tmp_path / f"{name}.pdf")
    with pytest.raises(IngestError) as refused:
        read_ecg(pdf)
    assert refused.value.path == str(pdf)
    assert refused.value.reason.startswith("no ECG found in this PDF")
