"""How much the ECG readers add on top of the libraries they wrap, per format.

For each format, times `read_ecg` and the bare library call it is built on (the baseline,
measured in the same run on the same file), and prints both and their ratio:

    DICOM  pydicom.dcmread + waveform_array            (Mortara file shipped with pydicom)
    WFDB   wfdb.rdrecord                               (12 x 5000, format 16, written here)
    PDF    pypdfium2 open + render page 1 at 2200 px   (one reportlab page, written here)

Run: .venv/bin/python benchmarks/readers.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _median_ms(function: Callable[[], object], repeat: int) -> float:
    function()  # warm caches and lazy imports
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _fixtures(folder: Path) -> dict[str, Path]:
    import wfdb
    from pydicom.data import get_testdata_file
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.pdfgen import canvas

    signal = np.sin(np.linspace(0, 60, 5000))[None, :] * np.linspace(0.5, 1.5, 12)[:, None]
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    wfdb.wrsamp("bench", fs=500, units=["mV"] * 12, sig_name=names, p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[1000] * 12, baseline=[0] * 12, write_dir=str(folder))
    pdf = folder / "bench.pdf"
    page = canvas.Canvas(str(pdf), pagesize=landscape(letter))
    page.drawString(40, 560, "Name: BENCH^MARK  Patient ID: 1  DOB: 1970-01-01")
    page.showPage()
    page.save()
    return {"dicom": Path(get_testdata_file("waveform_ecg.dcm")), "wfdb": folder / "bench.hea", "pdf": pdf}


def _baselines(files: dict[str, Path]) -> dict[str, Callable[[], object]]:
    import pydicom
    import pypdfium2 as pdfium
    import wfdb

    def dicom() -> object:
        return pydicom.dcmread(files["dicom"]).waveform_array(0)

    def wfdb_record() -> object:
        return wfdb.rdrecord(str(files["wfdb"].with_suffix(""))).p_signal

    def pdf() -> object:
        document = pdfium.PdfDocument(files["pdf"])
        page = document[0]
        image = page.render(scale=2200 / page.get_size()[0]).to_pil()
        document.close()
        return image

    return {"dicom": dicom, "wfdb": wfdb_record, "pdf": pdf}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    from ingest.readers.read import read_ecg

    with tempfile.TemporaryDirectory() as folder:
        files = _fixtures(Path(folder))
        baselines = _baselines(files)
        print(f"{'format':<8}{'baseline ms':>12}{'read_ecg ms':>13}{'ratio':>8}")
        for name, path in files.items():
            base = _median_ms(baselines[name], args.repeat)
            ours = _median_ms(lambda path=path: read_ecg(path), args.repeat)
            print(f"{name:<8}{base:>12.2f}{ours:>13.2f}{ours / base:>8.2f}")


if __name__ == "__main__":
    main()
