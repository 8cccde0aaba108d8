"""ECG pages we write ourselves, to test and benchmark the PDF reader against a known signal.

    write_ecg_pdf(path, signal, fs, ...)   a vector PDF like a cart's export (reportlab): header
                                           text with device measurements, 1/5 mm grid, a 1 mV
                                           calibration pulse per row, lead labels, the traces as
                                           paths in a 3x4 + rhythm (or 6x2, 12x1) layout
    landscape_canvas(path, rotate, fit)    a reportlab page drawn in display millimetres (y down),
    draw_text(doc, x, y, value)            one text object there (tests/ingest_readers/muse_page.py
                                           lays out its GE MUSE-style page with these two)
    printed_reference(signal, fs, layout)  the (12, N) 500 Hz signal as the page prints it:
                                           each lead where its panel shows it, NaN elsewhere
    page_image(pdf, dpi)                   a page rendered to an RGB image (pypdfium2)
    degrade(image, ...)                    what scanning does: rotation, blur, noise, JPEG, greying
    write_image_pdf(path, image)           an image-only PDF, as a scanner writes one

Every option of the layout is explicit, so a test can say exactly what the reader must cope
with (a page scaled to fit, /Rotate 90, no labels, no pulses, traces split in pieces).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from ingest.ecg import STANDARD_LEADS

MM = 72.0 / 25.4  # points per millimetre

LAYOUTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "3x4": (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6")),
    "6x2": (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6")),
    "12x1": tuple((lead,) for lead in STANDARD_LEADS),
}
RHYTHM = {"3x4": ("II",), "6x2": (), "12x1": ()}
GRID_COLOURS = {"red": ((1.0, 0.80, 0.80), (0.93, 0.47, 0.47)), "green": ((0.80, 0.95, 0.80), (0.45, 0.80, 0.45)),
                "blue": ((0.80, 0.87, 1.0), (0.45, 0.60, 0.95)), "grey": ((0.85, 0.85, 0.85), (0.6, 0.6, 0.6))}
DEFAULT_HEADER = (
    "Name: DEMO^PATIENT   ID: DEMO-1   DOB: 1960-01-02   Sex: F",
    "Acquired: 2024-05-06 07:08:09",
    "Vent. rate 72 BPM   PR interval 160 ms   QRS duration 90 ms   QT/QTcB 380/416 ms   P-R-T axes 50 40 30",
)


def _panel_span(layout: str, column: int, columns: int) -> tuple[float, float]:
    """(start s, stop s) a panel of this column shows: the columns split the 10 s page."""
    width = 10.0 / columns
    return column * width, (column + 1) * width


def printed_reference(signal: np.ndarray, fs: float, layout: str = "3x4",
                      panel_s: float | None = None) -> np.ndarray:
    """The signal at 500 Hz as the page prints it: each lead in its panels, NaN elsewhere.
    panel_s: a panel shows only its column's first panel_s seconds (GE MUSE: 2.476 of 2.5 s)."""
    from ingest.prepare.signal import resample

    data = resample(np.asarray(signal, dtype=np.float64), fs, 500.0).astype(np.float64)[:, :5000]
    reference = np.full((12, 5000), np.nan)
    rows = LAYOUTS[layout]
    columns = len(rows[0])
    for row in rows:
        for column, lead in enumerate(row):
            start, stop = _panel_span(layout, column, columns)
            stop = stop if panel_s is None else start + panel_s
            i = STANDARD_LEADS.index(lead)
            reference[i, round(start * 500):round(stop * 500)] = data[i, round(start * 500):round(stop * 500)]
    for lead in RHYTHM[layout]:
        i = STANDARD_LEADS.index(lead)
        reference[i] = data[i]
    return reference


def landscape_canvas(path: Path, *, rotate: int = 0, fit: float = 1.0, title: str = "ECG test page") -> Any:
    """A reportlab canvas for one landscape letter page, set up to draw in millimetres from the
    displayed top-left corner (y down), whatever the page's /Rotate.

    fit scales the whole drawing (0.95: a page printed "fit to page", so its millimetres are
    not the paper's); rotate sets the page's /Rotate, the drawing laid out so that the
    displayed page is landscape (as GE MUSE does).
    """
    from reportlab.pdfgen import canvas

    page_w, page_h = 279.4 * MM, 215.9 * MM  # displayed size
    doc = canvas.Canvas(str(path), pagesize=(page_w, page_h))
    if rotate in (90, 270):
        # reportlab writes a /Rotate 90 page's MediaBox with the sides swapped: asking for a
        # landscape size gives a portrait MediaBox that displays as landscape (as GE MUSE does).
        doc.setPageRotation(rotate)
        # Draw in displayed coordinates: map them into the unrotated page.
        if rotate == 90:
            doc.transform(0, 1, -1, 0, page_h, 0)
        else:
            doc.transform(0, -1, 1, 0, 0, page_w)
    doc.setTitle(title)
    doc.translate(0, page_h)
    doc.scale(MM * fit, -MM * fit)
    return doc


def draw_text(doc: Any, x_mm: float, y_mm: float, value: str, size: float = 3.0, *, font: str = "Helvetica",
              right_aligned: bool = False) -> None:
    """One text object: `value` with its baseline at y_mm, starting (or ending) at x_mm."""
    doc.saveState()
    doc.translate(x_mm, y_mm)
    doc.scale(1, -1)
    doc.setFont(font, size)
    if right_aligned:
        doc.drawRightString(0, 0, value)
    else:
        doc.drawString(0, 0, value)
    doc.restoreState()


def write_ecg_pdf(path: Path, signal: np.ndarray, fs: float, *, layout: str = "3x4",
                  header: Sequence[str] | None = DEFAULT_HEADER, labels: bool = True, pulses: bool = True,
                  grid: str | None = "red", fit: float = 1.0, rotate: int = 0, split_every_s: float | None = None,
                  speed: float = 25.0, gain: float = 10.0, print_scale: bool = True) -> Path:
    """A one-page vector ECG report (landscape letter) of `signal` (12 x N mV at fs Hz).

    fit scales the whole drawing (0.95: a page printed "fit to page", so its millimetres are
    not the paper's); rotate sets the page's /Rotate (the drawing is laid out so that the
    displayed page is landscape, as GE MUSE does); split_every_s draws each trace in pieces.
    """
    data = np.asarray(signal, dtype=np.float64)
    doc = landscape_canvas(path, rotate=rotate, fit=fit)

    def text(x_mm: float, y_mm: float, value: str, size: float = 3.0) -> None:
        draw_text(doc, x_mm, y_mm, value, size)

    rows = LAYOUTS[layout]
    strips = RHYTHM[layout]
    n_rows = len(rows) + len(strips)
    top, left, width = 45.0, 15.0, 250.0
    spacing = min(40.0, (200.0 - top) / n_rows)
    if header:
        for i, line in enumerate(header):
            text(10.0, 10.0 + 5.0 * i, line)
    if print_scale:
        text(10.0, 205.0, f"{speed:g} mm/s   {gain:g} mm/mV   150 Hz")
    if grid:
        minor, major = GRID_COLOURS[grid]
        grid_top, grid_bottom = top - 10.0, top + spacing * n_rows
        for step, colour, line_width in ((1.0, minor, 0.1), (5.0, major, 0.2)):
            doc.setStrokeColorRGB(*colour)
            doc.setLineWidth(line_width)
            for x in np.arange(left - 10.0, left + width + 1e-6, step):
                doc.line(x, grid_top, x, grid_bottom)
            for y in np.arange(grid_top, grid_bottom + 1e-6, step):
                doc.line(left - 10.0, y, left + width, y)
    doc.setStrokeColorRGB(0, 0, 0)
    doc.setLineWidth(0.25)
    samples_per_mm = fs / speed
    all_rows = [(row, False) for row in rows] + [((lead,), True) for lead in strips]
    for r, (leads, is_strip) in enumerate(all_rows):
        base = top + spacing * r + spacing * 0.6
        if pulses:
            pulse = doc.beginPath()
            pulse.moveTo(left - 9.0, base)
            for x, y in ((left - 7.0, base), (left - 7.0, base - gain), (left - 2.0, base - gain),
                         (left - 2.0, base), (left - 0.5, base)):
                pulse.lineTo(x, y)
            doc.drawPath(pulse, stroke=1, fill=0)
        columns = 1 if is_strip else len(leads)
        for column, lead in enumerate(leads):
            start_s, stop_s = (0.0, 10.0) if is_strip else _panel_span(layout, column, columns)
            i = STANDARD_LEADS.index(lead)
            first, last = round(start_s * fs), min(data.shape[1], round(stop_s * fs))
            values = data[i, first:last]
            xs = left + (np.arange(first, last) / samples_per_mm)
            ys = base - values * gain
            pieces = [(0, values.size)]
            if split_every_s:
                step = max(2, round(split_every_s * fs))
                pieces = [(k, min(values.size, k + step + 1)) for k in range(0, values.size - 1, step)]
            for a, b in pieces:
                path_obj = doc.beginPath()
                path_obj.moveTo(xs[a], ys[a])
                for x, y in zip(xs[a + 1:b], ys[a + 1:b], strict=True):
                    path_obj.lineTo(x, y)
                doc.drawPath(path_obj, stroke=1, fill=0)
            if labels:
                text(left + (start_s * speed) + 1.0, base - min(8.0, 0.3 * spacing), lead)
            if column > 0:
                doc.line(left + start_s * speed, base - 2.0, left + start_s * speed, base + 2.0)
    doc.showPage()
    doc.save()
    return path


def page_image(pdf: Path, dpi: float = 200.0) -> Image.Image:
    """The first page of a PDF rendered at `dpi` (RGB)."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        return document[0].render(scale=dpi / 72.0).to_pil().convert("RGB")
    finally:
        document.close()


def degrade(image: Image.Image, *, rotation_deg: float = 0.0, blur_px: float = 0.0, noise_sd: float = 0.0,
            jpeg_quality: int | None = None, grey: bool = False, seed: int = 0) -> Image.Image:
    """A page as a scanner or copier leaves it: tilted, soft, noisy, compressed, maybe grey."""
    out = image.convert("L").convert("RGB") if grey else image
    if rotation_deg:
        out = out.rotate(rotation_deg, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    if blur_px:
        out = out.filter(ImageFilter.GaussianBlur(blur_px))
    if noise_sd:
        rng = np.random.default_rng(seed)
        pixels = np.asarray(out, dtype=np.float64)
        pixels = pixels + rng.normal(0.0, noise_sd, size=pixels.shape[:2])[:, :, None]
        out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if jpeg_quality is not None:
        buffer = io.BytesIO()
        out.save(buffer, format="JPEG", quality=jpeg_quality)
        buffer.seek(0)
        out = Image.open(buffer).convert("RGB")
    return out


def write_image_pdf(path: Path, image: Image.Image, *, dpi: float = 200.0) -> Path:
    """An image-only PDF whose page is the image at `dpi` (no text layer), as a scanner writes."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    width, height = image.width * 72.0 / dpi, image.height * 72.0 / dpi
    doc = canvas.Canvas(str(path), pagesize=(width, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    buffer.seek(0)
    doc.drawImage(ImageReader(buffer), 0, 0, width, height)
    doc.showPage()
    doc.save()
    return path


def snr_db(reference: np.ndarray, recovered: np.ndarray) -> np.ndarray:
    """Per-lead SNR as the 2024 PhysioNet Challenge scores it: over the samples the reference
    has (the printed ones), recovered NaN read as 0, no time or offset alignment."""
    values = []
    for truth, found in zip(reference, recovered, strict=True):
        keep = np.isfinite(truth)
        truth, found = truth[keep], np.nan_to_num(found[keep])
        noise = float(np.sum((found - truth) ** 2))
        power = float(np.sum(truth ** 2))
        values.append(10 * np.log10(power / noise) if noise > 0 and power > 0 else (np.inf if power > 0 else np.nan))
    return np.array(values)
