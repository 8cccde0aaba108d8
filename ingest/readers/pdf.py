"""PDF ECGs (exported reports and scans) to a canonical `Ecg` with page images and no signal.

Each page is rendered with pypdfium2 (Apache-2.0/BSD; never PyMuPDF, AGPL, nor poppler,
GPL) at a scale that makes it at most `MAX_PAGE_WIDTH_PX` wide, about 200 dpi for a
letter or A4 page in landscape: enough for a person and for the image interpreter,
whose input is capped far below that anyway. Demographics come from the text layer
(`Label: value` fields) when the PDF has one; `ingest.readers.read` fills the gaps from a
JSON sidecar. Recovering the traces as a signal (vector paths or raster digitisation)
is a later step: for now `signal` is None and interpretation is image-only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ingest.ecg import Ecg, SourceFormat
from ingest.errors import IngestError
from ingest.readers.demographics import demographics_from_text
from ingest.readers.limits import DEFAULT_LIMITS, InputLimits, check_page_count, check_page_pixels
from ingest.readers.pdf_streams import check_pdf_streams

MAX_PAGE_WIDTH_PX = 2200
MAX_SCALE = 300 / 72  # never beyond 300 dpi, even for a small page

_PDFIUM_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD


def read_pdf(path: Path, limits: InputLimits = DEFAULT_LIMITS) -> Ecg:
    """Render every page of an ECG PDF and read the demographics of its text layer.

    The page count and each page's pixel size are checked against `limits` before anything
    is rendered, and the file's streams before pdfium opens it (`pdf_streams`).
    """
    import pypdfium2 as pdfium  # here, so that reading other formats does not load pdfium

    check_pdf_streams(path, limits)

    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _PDFIUM_PASSWORD_ERROR:
            raise IngestError(path, "password-protected PDF: cannot be opened without its password") from exc
        # pdfium refuses damaged files and files without pages alike (and its error code
        # for the latter is whatever the previous failure left), so the reason names both.
        raise IngestError(path, f"unreadable PDF, damaged or without pages ({exc})") from exc
    try:
        n_pages = len(document)
        if n_pages == 0:
            raise IngestError(path, "PDF has no pages")
        check_page_count(path, n_pages, limits)
        _check_page_sizes(document, n_pages, path, limits)
        pages, texts = [], []
        pixels = 0
        for index in range(n_pages):
            image, text = _render_page(document[index], index, path, limits, pixels)
            pixels += image.width * image.height
            pages.append(image)
            texts.append(text)
    finally:
        document.close()

    text = "\n".join(texts)
    demographics, notes = demographics_from_text(text)
    provenance = {
        "reader": "pdf",
        "pages": str(len(pages)),
        "text_layer": "yes" if text.strip() else "no",
    }
    if notes:
        provenance["demographics_notes"] = "; ".join(notes)
    return Ecg(
        source_format=SourceFormat.PDF,
        source_path=str(path),
        signal=None,
        pages=pages,
        demographics=demographics,
        provenance=provenance,
    )


def _page_pixels(width_pt: float, height_pt: float) -> tuple[int, int]:
    """The pixel size a page of this size in points is rendered at."""
    scale = min(MAX_PAGE_WIDTH_PX / width_pt, MAX_SCALE)
    return math.ceil(width_pt * scale), math.ceil(height_pt * scale)


def _check_page_sizes(document: Any, n_pages: int, path: Path, limits: InputLimits) -> None:
    """Every page's rendered size, and their total, against the limits before any is rendered
    (from the page boxes alone: no page is loaded or drawn)."""
    total = 0
    for index in range(n_pages):
        width, height = document.get_page_size(index)
        if width <= 0 or height <= 0:
            raise IngestError(path, f"page {index + 1} has no size")
        width_px, height_px = _page_pixels(width, height)
        check_page_pixels(path, index + 1, width_px, height_px, limits, pixels_so_far=total)
        total += width_px * height_px


def _render_page(page: Any, index: int, path: Path, limits: InputLimits, pixels_so_far: int) -> tuple[Any, str]:
    """One page as an RGB PIL image, and its text layer ("" for a scan)."""
    try:
        width, height = page.get_size()
        if width <= 0 or height <= 0:
            raise IngestError(path, f"page {index + 1} has no size")
        scale = min(MAX_PAGE_WIDTH_PX / width, MAX_SCALE)
        check_page_pixels(path, index + 1, *_page_pixels(width, height), limits, pixels_so_far=pixels_so_far)
        image = page.render(scale=scale).to_pil()  # an independent copy of pdfium's bitmap
        if image.mode != "RGB":  # grey or RGBA renderings; RGB is already what we want
            image = image.convert("RGB")
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_range()
        finally:
            textpage.close()
    except IngestError:
        raise
    except Exception as exc:  # pdfium reports damaged page content in several ways
        raise IngestError(path, f"page {index + 1} could not be rendered ({exc})") from exc
    finally:
        page.close()
    return image, text.replace("\r\n", "\n").replace("\r", "\n")
