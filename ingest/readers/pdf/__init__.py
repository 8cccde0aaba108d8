"""PDF ECGs (cart exports and scans) to a canonical `Ecg`: pages, the device's text, and the signal.

    read_pdf(path) -> Ecg

    document.py   open, render each page (at most 2200 px wide, ~200 dpi), read its words and paths
    text.py       the text layer: device measurements, statements, demographics, by layout
    vector.py     traces drawn as paths -> leads in mV (labels, grid, calibration pulse)
    raster.py     traces in a page image (scans) -> leads in mV, kept only when confident
    layout.py     lead panels on the page's time axis -> one 12 x N signal at 500 Hz
    evidence.py   does any page show an ECG? If none does, the file is refused with the reason

The signal comes from the vector traces when the PDF draws them (exact up to the drawing);
else from the page images when the digitiser is confident (`raster`); else there is none
and interpretation is image-only, as before. A lead is NaN wherever the page does not print
it (a 3x4 page shows each lead for 2.5 s). Demographics come from the text layer; the JSON
sidecar (`ingest.readers.read`) fills gaps, and the sanity check there runs on everything.

pypdfium2 only (Apache-2.0/BSD): never PyMuPDF (AGPL) nor poppler (GPL).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ingest.ecg import STANDARD_LEADS, Ecg, SourceFormat
from ingest.errors import IngestError
from ingest.readers.limits import DEFAULT_LIMITS, InputLimits, check_page_count
from ingest.readers.pdf.document import (
    MAX_PAGE_WIDTH_PX,
    PageContent,
    check_page_sizes,
    open_document,
    page_pixels,
    read_page,
    render_scale,
)
from ingest.readers.pdf.evidence import PageEvidence, no_ecg_reason
from ingest.readers.pdf.layout import SAMPLING_RATE_HZ, assemble, coverage
from ingest.readers.pdf.text import lead_label, read_text_layer
from ingest.readers.pdf.vector import VectorPage, recover_vector_page

if TYPE_CHECKING:  # raster pulls in scipy.ndimage: loaded only when a page must be digitised
    from ingest.readers.pdf.raster import RasterPage

__all__ = ["MAX_PAGE_WIDTH_PX", "read_page_image", "read_pdf"]


def read_pdf(path: Path, limits: InputLimits = DEFAULT_LIMITS, *, page_images: bool = True) -> Ecg:
    """Read an ECG PDF: its pages, the device's text, and the signal where it can be recovered.

    The file's streams are checked against `limits` before pdfium opens it (`pdf_streams`),
    the page count and each page's pixel size before anything is rendered. A page is drawn
    only when something needs its pixels: the digitiser (a scan), or the caller, who gets
    every page image in `Ecg.pages` unless `page_images` is False (the pipeline's prepare
    stage: what it keeps is the signal and the text; whoever needs a page later renders it
    from the kept file).
    """
    from ingest.readers.pdf_streams import check_pdf_streams

    check_pdf_streams(path, limits)
    document = open_document(path)
    pages: list[PageContent] = []
    try:
        n_pages = len(document)
        if n_pages == 0:
            raise IngestError(path, "PDF has no pages")
        check_page_count(path, n_pages, limits)
        check_page_sizes(document, n_pages, path, limits)
        pixels = 0
        for index in range(n_pages):
            page = document[index]
            width_px, height_px = page_pixels(page)
            pages.append(read_page(page, index, path, limits, pixels, render=False))
            pixels += width_px * height_px
        metadata = " ".join(str(value) for value in document.get_metadata_dict().values())
        vector = [recover_vector_page(page) for page in pages]
        signal, source, notes, raster = _recover_signal(pages, vector, path)
        images = [_rendered(page, path) for page in pages] if page_images else []
    finally:
        for page in pages:
            page.close()
        document.close()

    evidence = [_evidence(page, found, scan) for page, found, scan in zip(pages, vector, raster, strict=True)]
    if not any(item.shows_ecg for item in evidence):
        raise IngestError(path, no_ecg_reason(len(pages), any(page.text.strip() for page in pages)))

    trace_tops = [found.trace_top if found.trace_top is not None else (scan.trace_top if scan else None)
                  for found, scan in zip(vector, raster, strict=True)]
    findings = read_text_layer(pages, trace_tops, metadata)
    provenance = {
        "reader": "pdf",
        "pages": str(len(pages)),
        "text_layer": "yes" if any(page.text.strip() for page in pages) else "no",
        "signal": source or "none: image-only interpretation",
    }
    if not page_images:
        provenance["page_images"] = "not kept (asked for the signal and text only)"
    if signal is not None:
        printed = coverage(signal)
        provenance["printed_seconds"] = ", ".join(f"{lead} {seconds:.1f}" for lead, seconds in printed.items())
    if notes:
        provenance["signal_notes"] = "; ".join(notes)
    if findings.notes:
        provenance["text_notes"] = "; ".join(findings.notes)
    if findings.demographics_notes:
        provenance["demographics_notes"] = "; ".join(findings.demographics_notes)
    return Ecg(
        source_format=SourceFormat.PDF,
        source_path=str(path),
        signal=signal,
        sampling_rate_hz=SAMPLING_RATE_HZ if signal is not None else None,
        lead_names=list(STANDARD_LEADS) if signal is not None else [],
        pages=images,
        demographics=findings.demographics,
        device_measurements=findings.measurements,
        device_statements=findings.statements,
        device_name=findings.device,
        provenance=provenance,
    )


def read_page_image(path: Path, index: int = 0, limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """Page `index` of the PDF drawn as an RGB image, and nothing else read: for a stage that
    needs what the device printed after preparation kept only the signal and the text."""
    from ingest.readers.pdf_streams import check_pdf_streams

    check_pdf_streams(path, limits)
    document = open_document(path)
    try:
        check_page_count(path, len(document), limits)
        check_page_sizes(document, len(document), path, limits)
        if not 0 <= index < len(document):
            raise IngestError(path, f"PDF has no page {index + 1}")
        page = document[index]
        content = PageContent(index=index, width_mm=0.0, height_mm=0.0, image=None, text="", pdfium_page=page,
                              scale=render_scale(page))
        try:
            return _rendered(content, path)
        finally:
            content.close()
    finally:
        document.close()


def _rendered(page: PageContent, path: Path) -> Any:
    """The page's image; IngestError naming the file and the page when pdfium cannot draw it."""
    try:
        return page.render()
    except Exception as exc:  # pdfium reports damaged page content in several ways
        raise IngestError(path, f"page {page.index + 1} could not be rendered ({exc})") from exc


def _recover_signal(pages: list[PageContent], vector: list[VectorPage], path: Path) -> tuple[
        np.ndarray | None, str | None, list[str], list[RasterPage | None]]:
    """The signal from the vector traces, else from the page images when the digitiser is
    confident: (signal or None, where it came from, notes, each page's digitisation or None)."""
    from ingest.readers.pdf.raster import digitise_page

    notes = [note for page in vector for note in page.notes]
    traces = [trace for page in vector for trace in page.traces]
    raster: list[RasterPage | None] = [None] * len(pages)
    if traces:
        signal, assembly_notes = assemble(traces)
        notes += assembly_notes
        if signal is not None:
            return signal, "vector traces", notes, raster
    for index, (page, found) in enumerate(zip(pages, vector, strict=True)):
        if not found.traces and _worth_digitising(page, found):
            _rendered(page, path)  # the digitiser reads pixels: drawn here, where a failure names the file
            raster[index] = digitise_page(page)
    notes += [note for page in raster if page is not None for note in page.notes]
    traces = [trace for page in raster if page is not None and page.confident for trace in page.traces]
    if not traces:
        return None, None, notes, raster
    signal, assembly_notes = assemble(traces)
    return signal, "digitised from the page image" if signal is not None else None, notes + assembly_notes, raster


def _worth_digitising(page: PageContent, found: VectorPage) -> bool:
    """A page with a raster image (a scan, an embedded rendering) and no traces drawn as lines."""
    return page.images > 0 and found.candidate_traces < 3


def _evidence(page: PageContent, found: VectorPage, scan: object) -> PageEvidence:
    labels = {lead for word in page.words if (lead := lead_label(word.text)) is not None}
    return PageEvidence(vector_leads=len(found.traces), vector_traces=found.candidate_traces,
                        vector_rows=found.trace_rows,
                        vector_grid=found.grid_pitch_mm is not None, lead_labels=len(labels),
                        raster_ecg=bool(scan is not None and getattr(scan, "looks_like_ecg", False)))
