"""PDF ECGs: how much signal comes back, from vector exports and from scans, and at what cost per page.

Run: .venv/bin/python benchmarks/pdf_digitize.py [--records 10] [--dpi 200]

Prints, all measured in this run:

1. Vector round trip. Real recordings from data/real/ (the first N of the `test` split, every
   source) drawn as a cart export by tests/ingest_readers/ecg_pages.py (reportlab: 3x4 + II
   rhythm strip, 1/5 mm grid, a 1 mV pulse per row, lead labels), read back by
   `ingest.readers.read.read_ecg`. SNR per lead as the 2024 PhysioNet Challenge scores it:
   over the samples the page prints, no time or offset alignment. Then the same with the page
   drawn in other ways (scaled to fit, /Rotate 90, paths split, 6x2, 12x1, no pulses).
2. Scans. The same pages rendered at --dpi (pypdfium2), degraded as a scanner or copier does,
   saved as image-only PDFs and read back. Per degradation: the share of pages digitised (the
   rest stay image-only: the confidence test refused them), the mean SNR over the digitised
   pages, and the mean counting a refused page as 0 dB (the Challenge's score for no output),
   beside the published figures of the Challenge leaders.
3. The real cart PDFs in tests/data/pdf/ (GE CardioSoft, Schiller): fields read from the text
   layer, and our measurement of the recovered signal beside the values the device printed.
   Then GE MUSE-style pages written by tests/ingest_readers/muse_page.py (no real MUSE PDF we
   may redistribute was found) of the ten Chapman-Shaoxing recordings in data/real/, each
   printing GE MUSE's own measurements of that recording: our measurement of the signal read
   back from the page, and of the recording itself, beside GE MUSE's; and those pages scanned
   (with and without the "ROOM #:" line above the first row), against their own vector paths.
4. The non-ECG corpus of tests/ingest_readers/test_pdf_not_ecg.py: how many are accepted.

Time per page: `read_ecg` (read, text, signal) against the baseline of the same run, pypdfium2
opening the file and rendering its page at 2200 px (what the reader did before it read any
signal). One thread.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest.ecg import STANDARD_LEADS  # noqa: E402
from ingest.errors import IngestError  # noqa: E402
from ingest.prepare import prepare  # noqa: E402
from ingest.readers.read import read_ecg  # noqa: E402
from ingest.readers.wfdb import read_wfdb  # noqa: E402
from tests.ingest_readers.ecg_pages import (  # noqa: E402
    degrade,
    page_image,
    printed_reference,
    snr_db,
    write_ecg_pdf,
    write_image_pdf,
)
from tests.ingest_readers.muse_page import chapman_record, chapman_records, write_muse_style_pdf  # noqa: E402

VARIANTS = {
    "3x4 + II (plain)": {},
    "scaled to fit (95 %)": {"fit": 0.95},
    "/Rotate 90 (as GE MUSE does)": {"rotate": 90},
    "paths split every 0.5 s": {"split_every_s": 0.5},
    "6x2": {"layout": "6x2"},
    "12x1": {"layout": "12x1"},
    "no calibration pulses": {"pulses": False},
}
DEGRADATIONS = {
    "clean render": {},
    "rotated 1.5 deg": {"rotation_deg": 1.5},
    "blur 1 px": {"blur_px": 1.0},
    "noise sd 12": {"noise_sd": 12.0},
    "JPEG q 40": {"jpeg_quality": 40},
    "greyscale": {"grey": True},
    "green grid": {"grid": "green"},
    "blue grid": {"grid": "blue"},
    "scan (grey, -1 deg, blur, noise, JPEG 60)": {"grey": True, "rotation_deg": -1.0, "blur_px": 0.8, "noise_sd": 8.0,
                                                  "jpeg_quality": 60},
}
CHALLENGE = (
    ("PhysioNet/CinC Challenge 2024, winning team, cross-validation on synthetic images", "~17"),
    ("PhysioNet/CinC Challenge 2024, winning team, hidden test set", "12.15"),
    ("Open-ECG-Digitizer, mean on hospital scans", "19.65"),
)
DEVICE_FIELDS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg")


def records(count: int) -> list[tuple[str, np.ndarray, float]]:
    """The first `count` test-split recordings of data/real, round-robin over the sources."""
    with (REPO / "data" / "real" / "references.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test" and row["source"] != "mortara"]
    by_source: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    chosen = []
    while len(chosen) < count and any(by_source.values()):
        for source in sorted(by_source):
            if by_source[source] and len(chosen) < count:
                chosen.append(by_source[source].pop(0))
    out = []
    for row in chosen:
        ecg = read_wfdb(REPO / "data" / "real" / row["path"])
        signal = ecg.signal[[ecg.lead_names.index(lead) for lead in STANDARD_LEADS]].astype(np.float64)
        fs = float(ecg.sampling_rate_hz)
        out.append((f"{row['source']}/{row['record']}", signal[:, :int(10 * fs)], fs))
    return out


def recovered(path: Path) -> tuple[np.ndarray | None, float]:
    """The signal read back (12 x 5000, NaN-padded) or None, and the seconds it took."""
    start = time.perf_counter()
    try:
        ecg = read_ecg(path)
    except IngestError:
        return None, time.perf_counter() - start
    took = time.perf_counter() - start
    if ecg.signal is None:
        return None, took
    out = np.full((12, 5000), np.nan)
    n = min(5000, ecg.signal.shape[1])
    out[:, :n] = ecg.signal[:, :n]
    return out, took


def baseline_seconds(path: Path) -> float:
    import pypdfium2 as pdfium

    start = time.perf_counter()
    document = pdfium.PdfDocument(path)
    page = document[0]
    width, _ = page.get_size()
    page.render(scale=2200 / width).to_pil()
    document.close()
    return time.perf_counter() - start


def vector_section(data: list, folder: Path) -> None:
    print("\n== 1. Vector round trip (SNR dB per lead, Challenge 2024 definition) ==")
    per_lead = np.full((len(data), 12), np.nan)
    times, baselines = [], []
    for k, (_name, signal, fs) in enumerate(data):
        pdf = write_ecg_pdf(folder / f"v{k}.pdf", signal, fs)
        got, took = recovered(pdf)
        times.append(took)
        baselines.append(baseline_seconds(pdf))
        if got is not None:
            per_lead[k] = snr_db(printed_reference(signal, fs), got)
    print(f"{len(data)} real recordings, 3x4 + II page:")
    print("lead   " + " ".join(f"{lead:>6}" for lead in STANDARD_LEADS))
    print("mean   " + " ".join(f"{v:6.1f}" for v in np.nanmean(per_lead, axis=0)))
    print("min    " + " ".join(f"{v:6.1f}" for v in np.nanmin(per_lead, axis=0)))
    print(f"lowest lead SNR over all pages: {np.nanmin(per_lead):.1f} dB (goal: >= 30 dB)")
    print(f"time per page: {statistics.median(times) * 1000:.0f} ms (read_ecg), baseline open+render "
          f"{statistics.median(baselines) * 1000:.0f} ms, ratio {statistics.median(times) / statistics.median(baselines):.1f}x")
    print("\nthe page drawn otherwise (mean / min SNR over leads and recordings):")
    for label, options in VARIANTS.items():
        values = []
        for k, (_name, signal, fs) in enumerate(data):
            pdf = write_ecg_pdf(folder / f"w{k}.pdf", signal, fs, **options)
            got, _ = recovered(pdf)
            reference = printed_reference(signal, fs, options.get("layout", "3x4"))
            values.append(snr_db(reference, got) if got is not None else np.full(12, np.nan))
        values = np.array(values)
        read = int(np.isfinite(values).all(axis=1).sum())
        print(f"  {label:28s} read {read}/{len(data)}  mean {np.nanmean(values):5.1f}  min {np.nanmin(values):5.1f}")


def scan_section(data: list, folder: Path, dpi: float) -> None:
    print(f"\n== 2. Scans at {dpi:g} dpi (SNR dB, Challenge 2024 definition; mean over leads and pages) ==")
    print(f"{'degradation':44s} {'digitised':>9s} {'SNR digitised':>14s} {'SNR, refused = 0':>17s} {'ms/page':>8s}")
    for label, options in DEGRADATIONS.items():
        grid = options.get("grid", "red")
        degradation = {key: value for key, value in options.items() if key != "grid"}
        scores, times, done = [], [], 0
        for k, (_name, signal, fs) in enumerate(data):
            vector = write_ecg_pdf(folder / f"s{k}.pdf", signal, fs, grid=grid)
            image = degrade(page_image(vector, dpi), seed=k, **degradation)
            scan = write_image_pdf(folder / f"s{k}-scan.pdf", image, dpi=dpi)
            got, took = recovered(scan)
            times.append(took)
            if got is None:
                scores.append(np.zeros(12))
                continue
            done += 1
            scores.append(snr_db(printed_reference(signal, fs), got))
        scores = np.array(scores)
        digitised = scores[np.any(scores != 0, axis=1)]
        mean_digitised = np.nanmean(digitised) if digitised.size else float("nan")
        print(f"{label:44s} {done:>4d}/{len(data):<4d} {mean_digitised:14.1f} {np.nanmean(scores):17.1f} "
              f"{statistics.median(times) * 1000:8.0f}")
    print("\npublished, for comparison (different images: theirs are ECG-Image-Kit renderings and real scans):")
    for label, value in CHALLENGE:
        print(f"  {label:84s} {value:>6s} dB")


def _cells(printed: object, measured: object) -> str:
    """ "device / ours" for each of DEVICE_FIELDS (a dash where a value is missing)."""
    cells = []
    for name in DEVICE_FIELDS:
        device, ours = getattr(printed, name, None), getattr(measured, name, None)
        cells.append(f"{'-' if device is None else round(device)!s:>6s} / {'-' if ours is None else round(ours)!s:>6s}")
    return "  ".join(f"{c:>16s}" for c in cells)


def real_section() -> None:
    print("\n== 3a. Real cart PDFs (tests/data/pdf) ==")
    print(f"{'file':22s} {'device':14s} {'fields':>6s}  " + "  ".join(f"{f:>16s}" for f in DEVICE_FIELDS))
    for pdf in sorted((REPO / "tests" / "data" / "pdf").glob("*.pdf")):
        ecg = read_ecg(pdf)
        device = ecg.device_measurements
        demographics = ecg.demographics.model_dump(exclude_defaults=True)
        fields = sum(value is not None for value in device.model_dump().values()) + len(demographics) + (
            1 if ecg.device_statements else 0)
        ours = prepare(ecg).features.global_
        print(f"{pdf.name:22s} {ecg.device_name or '-':14s} {fields:>6d}  " + _cells(device, ours))
    print("(cells: printed by the device / ours from the recovered signal; fields: measurements, demographics and "
          "statements read from the text layer)")


def muse_style_section(folder: Path, dpi: float) -> None:
    print("\n== 3b. GE MUSE-style pages written by the tests, of the Chapman-Shaoxing recordings (data/real) ==")
    print(f"{'record':8s} {'page read':>9s}  " + "  ".join(f"{f:>16s}" for f in DEVICE_FIELDS))
    scans: dict[bool, list[float | None]] = {True: [], False: []}
    for name in chapman_records():
        record = chapman_record(name)
        device = SimpleNamespace(**record.device)
        page = write_muse_style_pdf(folder / f"muse-{name}.pdf", record.signal, record.fs, record.page_text())
        ecg = read_ecg(page)
        printed = ecg.device_measurements
        read_back = all(getattr(printed, field) == value for field, value in record.device.items()
                        if field in ("hr_bpm", "qrs_ms", "qt_ms", "qtc_ms"))
        from_page = prepare(ecg).features.global_
        from_recording = prepare(read_wfdb(REPO / "data" / "real" / "chapman_shaoxing" / f"{name}.hea")).features.global_
        print(f"{name:8s} {'yes' if read_back else 'NO':>9s}  " + _cells(device, from_page))
        print(f"{'':8s} {'recording':>9s}  " + _cells(device, from_recording))
        vector = ecg.signal.astype(np.float64)
        for room in (True, False):
            if not room:
                page = write_muse_style_pdf(folder / f"muse-{name}.pdf", record.signal, record.fs,
                                            record.page_text(room_label=False))
            image = degrade(page_image(page, dpi), rotation_deg=1.0, noise_sd=6.0, jpeg_quality=70)
            got, _ = recovered(write_image_pdf(folder / f"muse-{name}-scan.pdf", image, dpi=dpi))
            scans[room].append(None if got is None else float(snr_db(vector, got[:, :vector.shape[1]]).mean()))
    print("(cells: GE MUSE's measurement of the recording / ours from the signal read back from the page, then ours "
          "from the recording itself; 'page read': the printed values came back from the text layer)")
    for room, values in scans.items():
        done = [value for value in values if value is not None]
        per_record = ", ".join("image-only" if value is None else f"{value:.1f}" for value in values)
        print(f"scanned at {dpi:g} dpi (1 deg, noise 6, JPEG 70), {'with' if room else 'without'} the ROOM line, vs "
              f"its vector paths: digitised {len(done)}/{len(values)}, mean {statistics.mean(done):.1f} dB "
              f"(per record: {per_record})")


def corpus_section(folder: Path) -> None:
    from tests.ingest_readers.test_pdf_not_ecg import CORPUS

    accepted = []
    for name, write in CORPUS.items():
        try:
            read_ecg(write(folder / f"{name}.pdf"))
            accepted.append(name)
        except IngestError:
            pass
    print(f"\n== 4. Non-ECG PDFs: {len(accepted)} of {len(CORPUS)} accepted as ECG studies"
          f"{': ' + ', '.join(accepted) if accepted else ''} ({', '.join(CORPUS)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10)
    parser.add_argument("--dpi", type=float, default=200.0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    data = records(args.records)
    print("recordings:", ", ".join(name for name, _, _ in data))
    with tempfile.TemporaryDirectory() as folder:
        read_ecg(write_ecg_pdf(Path(folder) / "warm.pdf", data[0][1], data[0][2]))  # lazy imports
        vector_section(data, Path(folder))
        scan_section(data, Path(folder), args.dpi)
        real_section()
        muse_style_section(Path(folder), args.dpi)
        corpus_section(Path(folder))


if __name__ == "__main__":
    main()
