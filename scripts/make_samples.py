"""Make the bundled sample ECGs in samples/ (deterministic; the output is committed).

    .venv/bin/python scripts/make_samples.py [--out samples]

    demo-dicom.dcm        pydicom's bundled Mortara ELI 250 12-lead (waveform_ecg.dcm), with the
                          patient fields replaced by obviously fake ones
    demo-wfdb.hea/.dat    a 12-lead, 10 s, 500 Hz WFDB record (format 16) of a neurokit2
                          simulation (fixed seed), with age/sex in the header comments and
                          a demographics sidecar demo-wfdb.json
    demo-report.pdf       a PDF with a text layer: the 12-lead rendering (ingest.prepare.render) as an
                          image and the demographics as text, as an ECG cart exports it
    demo-scan.pdf         an image-only PDF, as a scanner makes it (a slightly rotated, grey,
                          noisy photo of a printout; no text layer), with a sidecar
                          demo-scan.pdf.json for its demographics

Every patient field says DEMO: these are not anyone's data. Needs the test extra
(neurokit2, reportlab), installed by scripts/bootstrap.sh.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parent.parent
FAKE_NAME = "DEMO^PATIENT"
FAKE_ID = "DEMO-0001"
FS = 500
SECONDS = 10


def simulated_12lead(seed: int, heart_rate: float) -> np.ndarray:
    """(12, 5000) mV in standard lead order from neurokit2's multi-lead simulator."""
    import neurokit2 as nk

    frame = nk.ecg_simulate(duration=SECONDS, sampling_rate=FS, method="multileads",
                            heart_rate=heart_rate, random_state=seed, random_state_distort=seed)
    from ingest.ecg import STANDARD_LEADS

    return frame[list(STANDARD_LEADS)].to_numpy(dtype=np.float64).T


def make_dicom(out: Path) -> Path:
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    dataset.PatientName = FAKE_NAME
    dataset.PatientID = FAKE_ID
    dataset.PatientBirthDate = "19700101"
    dataset.AccessionNumber = "DEMO-ACC-0001"
    dataset.InstitutionName = "DEMO HOSPITAL"
    path = out / "demo-dicom.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def make_wfdb(out: Path) -> Path:
    import wfdb

    from ingest.ecg import STANDARD_LEADS

    signal = simulated_12lead(seed=11, heart_rate=72)
    wfdb.wrsamp("demo-wfdb", fs=FS, units=["mV"] * 12, sig_name=list(STANDARD_LEADS), p_signal=signal.T,
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                comments=["<age>: 54 <sex>: M <dx>: demo record, simulated (neurokit2)"], write_dir=str(out))
    (out / "demo-wfdb.json").write_text(json.dumps(
        {"patient_id": FAKE_ID, "patient_name": FAKE_NAME, "accession": "DEMO-ACC-0002"}, indent=2) + "\n")
    return out / "demo-wfdb.hea"


def _page_image(seed: int, heart_rate: float) -> Image.Image:
    from ingest.prepare.render import render_12lead

    return render_12lead(simulated_12lead(seed, heart_rate), FS, header="DEMO 12-lead")


def make_text_pdf(out: Path) -> Path:
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    path = out / "demo-report.pdf"
    width, height = landscape(letter)
    pdf = canvas.Canvas(str(path), pagesize=(width, height), invariant=True)
    pdf.setTitle("DEMO ECG report")
    pdf.setFont("Helvetica", 10)
    lines = [
        f"Name: {FAKE_NAME}   Patient ID: {FAKE_ID}   DOB: 1970-01-01   Sex: F",
        "Accession: DEMO-ACC-0003   Acquired: 2024-01-02 10:30",
        "DEMO SAMPLE - simulated ECG, not a patient record",
    ]
    for i, line in enumerate(lines):
        pdf.drawString(36, height - 36 - 14 * i, line)
    image = _page_image(seed=23, heart_rate=64)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    buffer.seek(0)
    box_width = width - 72
    box_height = box_width * image.height / image.width
    pdf.drawImage(ImageReader(buffer), 36, height - 90 - box_height, box_width, box_height)
    pdf.showPage()
    pdf.save()
    return path


def make_scanned_pdf(out: Path) -> Path:
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    rng = np.random.default_rng(5)
    page = _page_image(seed=37, heart_rate=88).convert("L")
    # What a scan does to paper: a small tilt, a grey background, blur and sensor noise.
    page = page.rotate(1.2, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=235)
    ImageDraw.Draw(page).text((40, 8), "DEMO SAMPLE (scan)", fill=40)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    pixels = np.asarray(page, dtype=np.float64) * 0.92 + rng.normal(0, 6, size=(page.height, page.width))
    page = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    page.save(buffer, format="JPEG", quality=70)
    buffer.seek(0)

    path = out / "demo-scan.pdf"
    width, height = landscape(letter)
    pdf = canvas.Canvas(str(path), pagesize=(width, height), invariant=True)
    box_width = width - 40
    box_height = box_width * page.height / page.width
    pdf.drawImage(ImageReader(buffer), 20, (height - box_height) / 2, box_width, box_height)
    pdf.showPage()
    pdf.save()
    (out / "demo-scan.pdf.json").write_text(json.dumps(
        {"patient_id": FAKE_ID, "patient_name": FAKE_NAME, "sex": "M", "accession": "DEMO-ACC-0004"},
        indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "samples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    made = [make_dicom(args.out), make_wfdb(args.out), make_text_pdf(args.out), make_scanned_pdf(args.out)]
    total = sum(path.stat().st_size for path in args.out.iterdir() if path.is_file())
    for path in made:
        print(f"{path.relative_to(args.out)}  {path.stat().st_size // 1024} KiB")
    print(f"total {total // 1024} KiB in {args.out}")


if __name__ == "__main__":
    main()
