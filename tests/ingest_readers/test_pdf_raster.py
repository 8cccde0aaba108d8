"""Digitising scanned pages: the signal from a page image where the scan allows it, image-only where not.

Pages are written by the tests (a real recording, PTB-XL HR00001, drawn by ecg_pages), rendered
at 200 dpi like a scan, degraded and saved as image-only PDFs; and a GE MUSE-style page the tests
write (muse_page.py: footless pulses, 2.476 s panels, /Rotate 90) of a real Chapman-Shaoxing
recording, rendered the same way, compared with the signal its own vector paths give.
SNR as the 2024 PhysioNet Challenge scores it (ecg_pages.snr_db). The bounds here are floors
a regression would cross, a few dB under what `benchmarks/pdf_digitize.py` prints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.readers.read import read_ecg
from ingest.readers.wfdb import read_wfdb
from tests.ingest_readers.builders import write_scan_pdf
from tests.ingest_readers.ecg_pages import degrade, page_image, printed_reference, snr_db, write_ecg_pdf, write_image_pdf
from tests.ingest_readers.muse_page import chapman_record, write_muse_style_pdf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, np.ndarray]:
    """The 200 dpi image of a vector page of PTB-XL HR00001, and the signal it prints."""
    ecg = read_wfdb(REPO / "data" / "real" / "ptbxl" / "HR00001.hea")
    signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]]
    vector = write_ecg_pdf(tmp_path_factory.mktemp("page") / "page.pdf", signal, ecg.sampling_rate_hz)
    return page_image(vector, 200.0), printed_reference(signal, ecg.sampling_rate_hz)


def _digitised(path: Path) -> np.ndarray | None:
    ecg = read_ecg(path)
    if ecg.signal is None:
        return None
    assert ecg.provenance["signal"] == "digitised from the page image"
    out = np.full((12, 5000), np.nan)
    n = min(5000, ecg.signal.shape[1])
    out[:, :n] = ecg.signal[:, :n]
    return out


@pytest.mark.parametrize(("degradation", "floor_db"), [
    ({}, 13.0),
    ({"rotation_deg": 1.5}, 12.0),
    ({"grey": True, "noise_sd": 8.0, "jpeg_quality": 60, "rotation_deg": -1.0, "blur_px": 0.8}, 10.0),
], ids=["clean", "rotated", "scan"])
def test_a_scanned_page_is_digitised(tmp_path: Path, page, degradation: dict, floor_db: float) -> None:
    image, reference = page
    recovered = _digitised(write_image_pdf(tmp_path / "scan.pdf", degrade(image, **degradation)))
    assert recovered is not None
    snr = snr_db(reference, recovered)
    assert snr.mean() >= floor_db and snr.min() >= floor_db - 4.0, np.round(snr, 1)


def test_a_scan_of_a_muse_style_page_reads_like_its_vector_paths(tmp_path: Path) -> None:
    """A MUSE-style page (Chapman-Shaoxing JS00009, without the "ROOM #:" line above the first
    row), scanned: its digitised signal against its own vector traces. `benchmarks/pdf_digitize.py`
    prints this page's figure (section 3b, JS00009, without the ROOM line)."""
    record = chapman_record("JS00009")
    page = write_muse_style_pdf(tmp_path / "muse.pdf", record.signal, record.fs, record.page_text(room_label=False))
    vector = read_ecg(page).signal.astype(np.float64)
    scan = degrade(page_image(page, 200.0), rotation_deg=1.0, noise_sd=6.0, jpeg_quality=70)
    recovered = _digitised(write_image_pdf(tmp_path / "muse-scan.pdf", scan))
    assert recovered is not None
    snr = snr_db(vector, recovered[:, :vector.shape[1]])
    assert snr.mean() >= 8.0, np.round(snr, 1)


def test_a_scan_too_soft_to_digitise_stays_image_only(tmp_path: Path) -> None:
    """Plainly an ECG (grid, rows of traces), but its lines are 1 mm wide: no signal, never a
    guessed one; the study is read from its image and the note says which test failed."""
    ecg = read_ecg(write_scan_pdf(tmp_path / "soft.pdf", blur_px=3.0))
    assert ecg.signal is None and len(ecg.pages) == 1
    assert ecg.provenance["signal"] == "none: image-only interpretation"
    assert "thick, not a line" in ecg.provenance["signal_notes"]


def test_a_page_in_an_unknown_layout_is_not_digitised(tmp_path: Path) -> None:
    """Six rows of 2 panels (6x2): the lead of each row cannot be told from pixels alone."""
    from tests.ingest_readers.builders import synthetic_12lead

    vector = write_ecg_pdf(tmp_path / "6x2.pdf", synthetic_12lead(), 500.0, layout="6x2", header=None)
    ecg = read_ecg(write_image_pdf(tmp_path / "6x2-scan.pdf", page_image(vector, 200.0)))
    assert ecg.signal is None
    assert "image-only" in ecg.provenance["signal_notes"]


def test_a_rendered_report_with_a_text_layer_is_digitised_too(tmp_path: Path) -> None:
    """A PDF whose text is text but whose traces are a picture (samples/demo-report.pdf)."""
    ecg = read_ecg(REPO / "samples" / "demo-report.pdf")
    assert ecg.provenance["signal"] == "digitised from the page image"
    assert ecg.demographics.patient_id == "DEMO-0001"
