"""Writers of small ECG files for the reader tests: WFDB (wfdb.wrsamp, and a CinC-style .mat),
DICOM waveform (pydicom, from scratch), a vector PDF report (reportlab) and a raster scan PDF
(Pillow). Each writes real files in the real formats, so the readers are tested end to end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ingest.ecg import STANDARD_LEADS

TWELVE_LEAD_SOP = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG_SOP = "1.2.840.10008.5.1.4.1.1.9.1.2"
HEMODYNAMIC_SOP = "1.2.840.10008.5.1.4.1.1.9.2.1"

# MDC lead codes for the 12 standard leads (the reader must map these, not the position).
MDC_CODES = {"I": "2:1", "II": "2:2", "V1": "2:3", "V2": "2:4", "V3": "2:5", "V4": "2:6",
             "V5": "2:7", "V6": "2:8", "III": "2:61", "aVR": "2:62", "aVL": "2:63", "aVF": "2:64"}


def simulated_12lead(seed: int = 7) -> np.ndarray:
    """A (12, 5000) float64 mV signal, 10 s at 500 Hz, columns I..V6 from neurokit2."""
    import neurokit2 as nk

    frame = nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads", random_state=seed)
    assert list(frame.columns) == list(STANDARD_LEADS)
    return frame.to_numpy().T.copy()


def write_wfdb(folder: Path, name: str, signal_mv: np.ndarray, lead_names: Sequence[str], *,
               fs: float = 500, fmt: str = "16", units: str = "mV",
               comments: Sequence[str] = (), base: dt.datetime | None = None) -> Path:
    """Write a WFDB record with wfdb.wrsamp; returns the header path."""
    import wfdb

    scale = {"mV": 1.0, "uV": 1000.0}[units]
    physical = (signal_mv * scale).T
    n = len(lead_names)
    # Fixed gains (like a real device) so all-NaN channels are writable too.
    gain = {"16": 1000.0, "212": 200.0}[fmt] / scale
    wfdb.wrsamp(name, fs=fs, units=[units] * n, sig_name=list(lead_names), p_signal=physical,
                fmt=[fmt] * n, adc_gain=[gain] * n, baseline=[0] * n, comments=list(comments),
                base_time=base.time() if base else None, base_date=base.date() if base else None,
                write_dir=str(folder))
    return folder / f"{name}.hea"


def write_mat_record(folder: Path, name: str, signal_mv: np.ndarray, lead_names: Sequence[str],
                     *, fs: float = 500, gain: float = 1000.0, comments: Sequence[str] = ()) -> Path:
    """A PhysioNet/CinC 2020-style record: a MATLAB v4 `.mat` (24-byte header) read as format 16+24."""
    from scipy.io import savemat

    digital = np.round(signal_mv * gain).astype(np.int16)
    savemat(folder / f"{name}.mat", {"val": digital}, format="4")  # column-major: interleaved samples
    lines = [f"{name} {len(lead_names)} {fs:g} {digital.shape[1]}"]
    lines += [f"{name}.mat 16+24 {gain:g}/mV 16 0 {digital[i, 0]} 0 0 {lead}" for i, lead in enumerate(lead_names)]
    lines += [f"#{comment}" for comment in comments]
    header = folder / f"{name}.hea"
    header.write_text("\n".join(lines) + "\n")
    return header


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def waveform_group(signal: np.ndarray, sources: Sequence[tuple[str, str, str]], *, fs: float,
                   label: str, units: str = "uV", sensitivity: float = 1.0):
    """One multiplex group: `signal` (channels, samples) already in `units`, stored as int16."""
    from pydicom.dataset import Dataset

    group = Dataset()
    group.MultiplexGroupLabel = label
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = signal.shape[0]
    group.NumberOfWaveformSamples = signal.shape[1]
    group.SamplingFrequency = f"{fs:g}"
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for value, scheme, meaning in sources:
        channel = Dataset()
        channel.ChannelSourceSequence = [_code(value, scheme, meaning)]
        channel.ChannelSensitivity = f"{sensitivity:g}"
        channel.ChannelSensitivityUnitsSequence = [_code(units, "UCUM", units)]
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = channels
    raw = np.round(signal / sensitivity).astype("<i2")
    group.WaveformData = raw.T.tobytes()  # interleaved: C1S1, C2S1, ..., CnS1, C1S2, ...
    return group


def mdc_sources(lead_names: Sequence[str]) -> list[tuple[str, str, str]]:
    return [(MDC_CODES[lead], "MDC", f"Lead {lead}") for lead in lead_names]


def write_dicom_ecg(path: Path, groups: list, *, sop_class: str = TWELVE_LEAD_SOP,
                    patient_id: str = "P-0001", patient_name: str = "DOE^JANE",
                    preamble: bool = True, annotations: list | None = None) -> Path:
    """A waveform DICOM file with the given multiplex groups (from `waveform_group`)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "ECG"
    dataset.PatientID = patient_id
    dataset.PatientName = patient_name
    dataset.PatientSex = "M"
    dataset.PatientBirthDate = "19600315"
    dataset.StudyInstanceUID = generate_uid()
    dataset.AccessionNumber = "ACC-42"
    dataset.AcquisitionDateTime = "20240301142233.5+0100"
    dataset.WaveformSequence = groups
    if annotations is not None:
        dataset.WaveformAnnotationSequence = annotations
    dataset.save_as(path, enforce_file_format=preamble)
    if not preamble:  # write the bare dataset: no preamble, no "DICM", no file meta
        from pydicom import dcmwrite

        dataset.file_meta = FileMetaDataset()
        dataset.preamble = None
        dcmwrite(path, dataset, implicit_vr=True, little_endian=True)
    return path


def write_report_pdf(path: Path, header_lines: Sequence[str], trace_mv: np.ndarray | None = None) -> Path:
    """A vector ECG report like a management system exports: text fields and drawn traces."""
    from reportlab.lib.pagesizes import landscape, letter
    from reportlab.pdfgen import canvas

    width, height = landscape(letter)
    page = canvas.Canvas(str(path), pagesize=(width, height))
    y = height - 40
    for line in header_lines:
        page.drawString(40, y, line)
        y -= 16
    if trace_mv is not None:  # 12 rows of trace, 25 mm/s is not the point here: just real paths
        for row, lead in enumerate(trace_mv[:, :2500]):
            baseline = y - 30 - row * 38
            path_obj = page.beginPath()
            xs = np.linspace(40, width - 40, lead.size)
            path_obj.moveTo(xs[0], baseline + lead[0] * 20)
            for x, v in zip(xs[1::4], lead[1::4], strict=True):
                path_obj.lineTo(x, baseline + v * 20)
            page.drawPath(path_obj, stroke=1, fill=0)
    page.showPage()
    page.save()
    return path


def write_scan_pdf(path: Path, size: tuple[int, int] = (1650, 1275)) -> Path:
    """A raster-only 'scan': a Pillow image with grid and a trace saved as PDF (no text layer)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 25):
        draw.line([(x, 0), (x, size[1])], fill=(255, 200, 200))
    t = np.linspace(0, 20 * np.pi, size[0])
    ys = size[1] / 2 - 80 * np.sin(t) ** 15
    draw.line(list(zip(range(size[0]), ys.tolist(), strict=True)), fill="black", width=2)
    image.save(path, "PDF", resolution=150)
    return path


def write_encrypted_pdf(path: Path, password: str = "secret") -> Path:
    """A PDF with a user password (reportlab's standard encryption)."""
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.pdfgen import canvas

    page = canvas.Canvas(str(path), encrypt=StandardEncryption(password, canPrint=0))
    page.drawString(72, 720, "Name: LOCKED^PATIENT")
    page.showPage()
    page.save()
    return path
