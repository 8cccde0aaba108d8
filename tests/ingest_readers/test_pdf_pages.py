"""A PDF's pages are drawn only when something needs their pixels: the pipeline's prepare stage
reads a vector page's signal and text without drawing it, and a later stage draws the page
alone from the kept file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.ecg import STANDARD_LEADS
from ingest.errors import IngestError
from ingest.readers.pdf import read_page_image
from ingest.readers.pdf.document import PageContent
from ingest.readers.read import read_ecg
from ingest.readers.wfdb import read_wfdb
from tests.ingest_readers.builders import write_scan_pdf
from tests.ingest_readers.ecg_pages import write_ecg_pdf

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vector_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ecg = read_wfdb(REPO / "data" / "real" / "ptbxl" / "HR00001.hea")
    signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]]
    return write_ecg_pdf(tmp_path_factory.mktemp("pdf") / "page.pdf", signal, float(ecg.sampling_rate_hz))


def test_a_vector_page_is_read_without_drawing_it(vector_pdf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    real_render = PageContent.render

    def counting_render(page: PageContent) -> object:
        drawn.append(page.index)
        return real_render(page)

    monkeypatch.setattr(PageContent, "render", counting_render)
    lean = read_ecg(vector_pdf, page_images=False)
    assert drawn == [] and lean.pages == [] and "not kept" in lean.provenance["page_images"]
    full = read_ecg(vector_pdf)
    assert drawn == [0] and len(full.pages) == 1
    # Drawing the page changes nothing else that was read.
    np.testing.assert_array_equal(lean.signal, full.signal)
    assert lean.demographics == full.demographics and lean.device_measurements == full.device_measurements


def test_a_scan_is_still_drawn_for_the_digitiser(tmp_path: Path) -> None:
    scan = write_scan_pdf(tmp_path / "scan.pdf")
    lean = read_ecg(scan, page_images=False)
    assert lean.pages == [] and lean.provenance["signal"] == "digitised from the page image"
    assert "page 1 image digitised" in lean.provenance["signal_notes"]
    np.testing.assert_array_equal(lean.signal, read_ecg(scan).signal)


def test_a_page_alone_is_the_page_read_ecg_draws(vector_pdf: Path) -> None:
    page = read_page_image(vector_pdf)
    assert np.array_equal(np.asarray(page), np.asarray(read_ecg(vector_pdf).pages[0]))
    with pytest.raises(IngestError, match="no page 2"):
        read_page_image(vector_pdf, 1)
