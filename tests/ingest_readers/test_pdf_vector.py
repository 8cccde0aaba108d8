"""Vector-trace recovery: PDFs that draw the traces as paths give their signal back.

Round trips on PDFs the tests write (ecg_pages.write_ecg_pdf) from a real recording (PTB-XL
HR00001 in data/real/) and from the simulator, under every way an exporter may draw a page;
a GE MUSE-style page the tests write (muse_page.py) of a real Chapman-Shaoxing recording,
measured against GE MUSE's own measurements of it; and the real cart PDFs in tests/data/pdf/,
whose signal is measured against what the device printed. SNR as the 2024 PhysioNet Challenge
scores it (ecg_pages.snr_db).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.prepare import prepare
from ingest.readers.read import read_ecg
from ingest.readers.wfdb import read_wfdb
from tests.ingest_readers.ecg_pages import printed_reference, snr_db, write_ecg_pdf
from tests.ingest_readers.muse_page import PANEL_S, chapman_record, write_muse_style_pdf

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "data" / "pdf"


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, float]:
    """A real 12-lead (PTB-XL HR00001, 500 Hz, 10 s) in STANDARD_LEADS order."""
    ecg = read_wfdb(REPO / "data" / "real" / "ptbxl" / "HR00001.hea")
    return ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]], float(ecg.sampling_rate_hz)


def _round_trip(tmp_path: Path, signal: np.ndarray, fs: float, layout: str = "3x4", **options: object) -> np.ndarray:
    pdf = write_ecg_pdf(tmp_path / "page.pdf", signal, fs, layout=layout, **options)
    ecg = read_ecg(pdf)
    assert ecg.provenance["signal"] == "vector traces"
    assert ecg.sampling_rate_hz == 500 and ecg.lead_names == list(STANDARD_LEADS)
    reference = printed_reference(signal, fs, layout)
    recovered = np.full_like(reference, np.nan)
    n = min(reference.shape[1], ecg.signal.shape[1])
    recovered[:, :n] = ecg.signal[:, :n]
    # Exactly the printed samples come back: NaN where the page shows no panel of the lead.
    assert np.array_equal(np.isfinite(recovered), np.isfinite(reference))
    return snr_db(reference, recovered)


@pytest.mark.parametrize("options", [
    {},
    {"fit": 0.95},  # printed "fit to page": page millimetres are not the paper's; the grid tells
    {"rotate": 90},  # GE MUSE's landscape page on a portrait /MediaBox
    {"split_every_s": 0.5},  # an exporter that cuts long paths into pieces
    {"labels": False, "header": None, "print_scale": False},  # no text at all: the standard layout
    {"layout": "6x2"},
    {"layout": "12x1"},
], ids=["plain", "fit-95", "rotate-90", "split-paths", "no-text", "6x2", "12x1"])
def test_vector_round_trip_of_a_real_recording_is_above_30_db_per_lead(tmp_path: Path, recording, options) -> None:
    signal, fs = recording
    snr = _round_trip(tmp_path, signal, fs, **options)
    assert snr.min() >= 30.0, np.round(snr, 1)


def test_without_calibration_pulses_the_gain_comes_from_the_printed_scale(tmp_path: Path) -> None:
    """No pulse: 10 mm/mV as printed and 0 mV at the trace's isoelectric level (the synthetic
    leads sit on 0 mV, so shape and scale come back, less exactly for the smallest leads; a
    recording's own offset could not come back at all)."""
    from tests.ingest_readers.builders import synthetic_12lead

    snr = _round_trip(tmp_path, synthetic_12lead(), 500.0, pulses=False)
    assert np.median(snr) >= 30.0 and snr.min() >= 20.0, np.round(snr, 1)


def test_gain_other_than_10_mm_per_mv_is_read_from_the_pulse(tmp_path: Path, recording) -> None:
    signal, fs = recording
    snr = _round_trip(tmp_path, signal, fs, gain=5.0)
    assert snr.min() >= 30.0, np.round(snr, 1)


# --- a GE MUSE-style page (written by the tests) of a real recording -----------------------------

@pytest.fixture(scope="module")
def muse_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    """Chapman-Shaoxing JS00009 (sinus bradycardia; test split) on a MUSE-style page that prints
    GE MUSE's measurements of it, read back."""
    record = chapman_record("JS00009")
    path = tmp_path_factory.mktemp("muse") / "muse.pdf"
    return record, read_ecg(write_muse_style_pdf(path, record.signal, record.fs, record.page_text()))


def test_muse_style_page_gives_its_3x4_panels_and_strip(muse_page) -> None:
    """/Rotate 90, footless pulses, panels of 2.476 s every 2.5 s and a 10 s lead II strip:
    exactly the printed samples come back (NaN in each panel's last 12 samples), above 30 dB."""
    record, ecg = muse_page
    assert ecg.provenance["signal"] == "vector traces"
    assert "0 mV from a calibration pulse for 13 of 13" in ecg.provenance["signal_notes"]
    reference = printed_reference(record.signal, record.fs, panel_s=PANEL_S)
    recovered = np.full_like(reference, np.nan)
    n = min(5000, ecg.signal.shape[1])
    recovered[:, :n] = ecg.signal[:, :n]
    assert np.array_equal(np.isfinite(recovered), np.isfinite(reference))
    assert np.isfinite(recovered).sum(axis=1).tolist() == [1238, 5000] + [1238] * 10
    snr = snr_db(reference, recovered)
    assert snr.min() >= 30.0, np.round(snr, 1)


def test_measurements_of_a_muse_style_page_agree_with_ge_muse(muse_page) -> None:
    """Our measurement of the recovered signal beside GE MUSE's measurement of the recording
    (which the page prints): rate within 5 bpm, QRS within 12 ms, QRS axis within 10 degrees.
    `benchmarks/pdf_digitize.py` prints this for all ten Chapman-Shaoxing records."""
    record, ecg = muse_page
    printed = ecg.device_measurements
    assert (printed.hr_bpm, printed.qrs_ms) == (record.device["hr_bpm"], record.device["qrs_ms"])
    assert printed.pr_ms is None  # the release has none, and the page prints none
    ours = prepare(ecg).features.global_
    assert abs(ours.hr_bpm - record.device["hr_bpm"]) <= 5.0
    assert abs(ours.qrs_ms - record.device["qrs_ms"]) <= 12.0
    assert abs(ours.qrs_axis_deg - record.device["qrs_axis_deg"]) <= 10.0


# --- real cart PDFs -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "seconds"), [
    ("ge_cardiosoft_1.pdf", {"II": 5.0, "V1": 5.0}),  # 5 s at 50 mm/s, limb and chest leads on two pages
    ("schiller_1.pdf", {"II": 10.0, "V1": 10.0}),  # 10 s at 25 mm/s, two pages
])
def test_real_cart_pdfs_give_their_signal(name: str, seconds: dict[str, float]) -> None:
    ecg = read_ecg(REAL / name)
    assert ecg.provenance["signal"] == "vector traces"
    printed = np.isfinite(ecg.signal).sum(axis=1) / 500.0
    for lead, expected in seconds.items():
        assert printed[STANDARD_LEADS.index(lead)] == pytest.approx(expected, abs=0.05)
    assert np.nanmax(np.abs(ecg.signal)) < 5.0  # millivolts, not page millimetres


@pytest.mark.parametrize("name", ["ge_cardiosoft_2.pdf", "schiller_1.pdf"])
def test_measurements_of_the_recovered_signal_agree_with_the_device(name: str) -> None:
    """Our measurement of the recovered signal beside the device's printed values: rate within
    5 bpm, QRS within 12 ms, QRS axis within 10 degrees (the device measured the full-resolution
    recording, we measure what the page shows)."""
    ecg = read_ecg(REAL / name)
    ours = prepare(ecg).features.global_
    device = ecg.device_measurements
    assert abs(ours.hr_bpm - device.hr_bpm) <= 5.0
    assert abs(ours.qrs_ms - device.qrs_ms) <= 12.0
    assert abs(ours.qrs_axis_deg - device.qrs_axis_deg) <= 10.0


def test_a_trace_labelled_with_a_non_standard_lead_is_not_read_as_one() -> None:
    """CardioSoft's third page prints V3r, V4r and V7: no standard lead is taken from it."""
    ecg = read_ecg(REAL / "ge_cardiosoft_2.pdf")
    assert "page 3: 3 drawn trace(s) without lead labels" in ecg.provenance["signal_notes"]


def _path_objects(path: Path) -> tuple[Any, Any, list[Any]]:
    """A one-page PDF with a long two-subpath trace and a rectangle: (document, page, its path objects)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c
    from reportlab.pdfgen import canvas

    page = canvas.Canvas(str(path), pagesize=(300, 200))
    trace = page.beginPath()
    trace.moveTo(10, 10)
    for i in range(1, 120):  # long enough to be copied at once
        trace.lineTo(10 + 2 * i, 10 + (i % 7) * 1.5)
    trace.moveTo(20, 150)  # a second subpath in the same object
    trace.curveTo(40, 180, 60, 120, 80, 150)
    page.drawPath(trace, stroke=1, fill=0)
    page.setStrokeColorRGB(1.0, 0.5, 0.25)  # a colour and a shift of its own, for the per-path answers
    page.translate(7, 3)
    page.rect(100, 100, 50, 40, stroke=1, fill=0)  # a closed subpath
    page.save()
    document_ = pdfium.PdfDocument(path)
    pdf_page = document_[0]
    objects = [pdfium_c.FPDFPage_GetObject(pdf_page.raw, i) for i in range(pdfium_c.FPDFPage_CountObjects(pdf_page.raw))]
    return document_, pdf_page, [obj for obj in objects if pdfium_c.FPDFPageObj_GetType(obj) == pdfium_c.FPDF_PAGEOBJ_PATH]


def _assert_segments_match_bindings(obj: Any, segments: tuple[Any, Any, Any]) -> None:
    """Arrays (a long path copied at once) or plain lists (x and y interleaved: one by one)."""
    import pypdfium2.raw as pdfium_c

    xy, kinds, closing = (np.asarray(part) for part in segments)
    xy = xy.reshape(-1, 2)
    n = pdfium_c.FPDFPath_CountSegments(obj)
    assert xy.shape == (n, 2) and kinds.shape == closing.shape == (n,)
    x, y = ctypes.c_float(), ctypes.c_float()
    for i in range(n):
        segment = pdfium_c.FPDFPath_GetPathSegment(obj, i)
        pdfium_c.FPDFPathSegment_GetPoint(segment, ctypes.byref(x), ctypes.byref(y))
        assert (xy[i, 0], xy[i, 1]) == (x.value, y.value)
        assert kinds[i] == pdfium_c.FPDFPathSegment_GetType(segment)
        assert bool(closing[i]) == bool(pdfium_c.FPDFPathSegment_GetClose(segment))


def test_path_segments_read_through_bare_addresses_match_pypdfium2s_bindings(tmp_path: Path) -> None:
    """`document._segments` reads segments faster than pypdfium2's bindings (bare addresses, and a long
    path copied at once): it must read exactly what the bindings read, segment by segment."""
    import pypdfium2.raw as pdfium_c

    from ingest.readers.pdf import document

    document_, pdf_page, paths = _path_objects(tmp_path / "paths.pdf")
    assert len(paths) == 2
    seen_close, seen_kinds = False, set()
    for obj in paths:
        n = pdfium_c.FPDFPath_CountSegments(obj)
        read = document._segments(_handle(obj), n)
        _assert_segments_match_bindings(obj, read)
        _assert_segments_match_bindings(obj, document._segments_one_by_one(_handle(obj), n))
        seen_close, seen_kinds = seen_close or bool(np.any(read[2])), seen_kinds | set(np.asarray(read[1]).tolist())
    long_trace = max(paths, key=pdfium_c.FPDFPath_CountSegments)
    assert document._segments_in_one_copy(_handle(long_trace),
                                          pdfium_c.FPDFPath_CountSegments(long_trace)) is not None
    assert seen_close  # the rectangle's close flag came through
    assert {pdfium_c.FPDF_SEGMENT_MOVETO, pdfium_c.FPDF_SEGMENT_LINETO, pdfium_c.FPDF_SEGMENT_BEZIERTO} <= seen_kinds
    pdf_page.close()
    document_.close()


def test_path_draw_mode_colour_and_matrix_through_bare_addresses_match_pypdfium2s_bindings(tmp_path: Path) -> None:
    """`document._path_calls` asks each path its draw mode, segment count, colour and matrix through bare
    addresses (a page has hundreds of paths): the answers must be the bindings' own."""
    import pypdfium2.raw as pdfium_c

    from ingest.readers.pdf import document

    document_, pdf_page, paths = _path_objects(tmp_path / "paths.pdf")
    calls, scratch = document._path_calls(), document._PathScratch()
    seen: list[tuple[tuple[int, int, int], tuple[float, ...]]] = []
    for obj in paths:
        handle = _handle(obj)
        fill, stroke = ctypes.c_int(), ctypes.c_int()
        assert pdfium_c.FPDFPath_GetDrawMode(obj, fill, stroke)
        assert calls.draw_mode(handle, scratch.fill_at, scratch.stroke_at)
        assert (scratch.fill.value, scratch.stroke.value) == (fill.value, stroke.value)
        assert calls.count_segments(handle) == pdfium_c.FPDFPath_CountSegments(obj)
        r, g, b, a = (ctypes.c_uint() for _ in range(4))
        assert pdfium_c.FPDFPageObj_GetStrokeColor(obj, r, g, b, a)
        assert document._colour(handle, scratch) == (r.value, g.value, b.value)
        m = pdfium_c.FS_MATRIX()
        assert pdfium_c.FPDFPageObj_GetMatrix(obj, m)
        assert document._affine(obj, handle, None, scratch) == (m.a, m.b, m.c, m.d, m.e, m.f)
        seen.append((document._colour(handle, scratch), document._affine(obj, handle, None, scratch)))
    assert (255, 128, 64) in [colour for colour, _ in seen] or (255, 127, 63) in [colour for colour, _ in seen], seen
    assert len({matrix for _, matrix in seen}) == 2, seen  # the shifted rectangle's matrix is its own
    pdf_page.close()
    document_.close()


def _handle(obj: Any) -> int:
    return ctypes.cast(obj, ctypes.c_void_p).value


def test_a_segment_layout_pdfium_does_not_have_falls_back_to_one_by_one(tmp_path: Path, monkeypatch) -> None:
    """If pdfium kept its segments otherwise (another build), the checked copy is refused and the
    segments are still read right, one by one."""
    import pypdfium2.raw as pdfium_c

    from ingest.readers.pdf import document

    document_, pdf_page, paths = _path_objects(tmp_path / "paths.pdf")
    long_trace = max(paths, key=pdfium_c.FPDFPath_CountSegments)
    n = pdfium_c.FPDFPath_CountSegments(long_trace)
    swapped = np.dtype({"names": ["x", "y", "kind", "close"], "formats": ["<f4", "<f4", "u1", "u1"],
                        "offsets": [4, 0, 8, 9], "itemsize": 12})  # x and y the other way round
    monkeypatch.setattr(document, "_SEGMENT_LAYOUT", swapped)
    assert document._segments_in_one_copy(_handle(long_trace), n) is None
    _assert_segments_match_bindings(long_trace, document._segments(_handle(long_trace), n))
    pdf_page.close()
    document_.close()


@pytest.mark.parametrize("name", ["ge_cardiosoft_1.pdf", "schiller_1.pdf"])
def test_the_boxes_worked_out_for_a_whole_page_are_each_polylines_own(name: str) -> None:
    """`_polylines` works out every subpath's box in one array operation: each must be exactly the
    box of that subpath's own points (what `Polyline` works out when none is given)."""
    from ingest.readers.pdf import document

    pdf = document.open_document(REAL / name)
    page = document.read_page(pdf[0], 0, REAL / name, render=False)
    try:
        assert len(page.paths) >= 20  # traces, frames, and on the Schiller page its grid lines
        for polyline in page.paths:
            own = document.Polyline(points=polyline.points, colour=polyline.colour)
            assert polyline.bounds == own.bounds
            assert (polyline.x_extent, polyline.y_extent) == (np.ptp(polyline.points[:, 0]),
                                                              np.ptp(polyline.points[:, 1]))
    finally:
        page.close()
        pdf.close()


def test_a_path_inside_a_form_is_placed_by_the_forms_matrix(tmp_path: Path) -> None:
    """Paths on the page skip the matrix product; a path inside a form XObject still goes through
    the form's matrix: drawn shifted by (100, 50) pt, it is read there."""
    from reportlab.pdfgen import canvas

    from ingest.readers.pdf import document
    from ingest.readers.pdf.document import MM_PER_PT

    path = tmp_path / "form.pdf"
    page = canvas.Canvas(str(path), pagesize=(300, 200))
    page.beginForm("line")
    page.line(10, 10, 60, 10)
    page.endForm()
    page.line(10, 20, 60, 20)  # on the page itself
    page.saveState()
    page.translate(100, 50)
    page.doForm("line")
    page.restoreState()
    page.save()
    pdf = document.open_document(path)
    content = document.read_page(pdf[0], 0, path, render=False)
    try:
        starts = sorted((round(p.points[0, 0] / MM_PER_PT, 3), round(p.points[0, 1] / MM_PER_PT, 3))
                        for p in content.paths)
    finally:
        content.close()
        pdf.close()
    assert starts == [(10.0, 180.0), (110.0, 140.0)]  # display space: y down from the top of a 200 pt page
