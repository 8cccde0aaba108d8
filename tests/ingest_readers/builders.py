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


def synthetic_12lead(fs: float = 500.0, seconds: float = 10.0, rate_bpm: float = 75.0) -> np.ndarray:
    """A cheap, deterministic (12, N) mV ECG: Gaussian P, QRS and T waves on a 45-degree axis.

    Not physiology: just a signal with the shape and scale of an ECG, for tests that need
    a page to show one (neurokit2's simulator is the better signal but takes ~0.7 s).
    """
    t = np.arange(int(seconds * fs)) / fs
    beat = np.zeros_like(t)
    for r in np.arange(0.4, seconds, 60.0 / rate_bpm):
        for offset, width, height in ((-0.16, 0.025, 0.12), (-0.02, 0.008, -0.1), (0.0, 0.011, 1.0),
                                      (0.025, 0.01, -0.25), (0.3, 0.05, 0.3)):
            beat += height * np.exp(-0.5 * ((t - r - offset) / width) ** 2)
    angles = {"I": 0, "II": 60, "III": 120, "aVR": -150, "aVL": -30, "aVF": 90}
    limb = {lead: beat * np.cos(np.deg2rad(45 - angle)) for lead, angle in angles.items()}
    chest = {f"V{k}": beat * weight for k, weight in zip(range(1, 7), (-0.6, -0.2, 0.4, 1.2, 1.1, 0.8), strict=True)}
    return np.stack([{**limb, **chest}[lead] for lead in STANDARD_LEADS])


def write_report_pdf(path: Path, header_lines: Sequence[str], trace_mv: np.ndarray | None = None) -> Path:
    """A vector ECG report like a management system exports: header text, grid, labelled traces
    (3x4 + rhythm strip) of `trace_mv` (12 x N mV at 500 Hz) or of `synthetic_12lead()`."""
    from tests.ingest_readers.ecg_pages import write_ecg_pdf

    signal = synthetic_12lead() if trace_mv is None else trace_mv
    return write_ecg_pdf(path, signal, 500.0, header=list(header_lines))


def write_scan_pdf(path: Path, *, blur_px: float = 0.0, rotation_deg: float = 0.0, dpi: float = 150.0) -> Path:
    """A raster-only scan of a 12-lead printout (no text layer): a page of `synthetic_12lead()`
    rendered at `dpi`, optionally blurred and tilted, saved as an image PDF at the paper's size.
    A blur of 3 px or more leaves a page that is plainly an ECG but too soft to digitise."""
    import tempfile

    from tests.ingest_readers.ecg_pages import degrade, page_image, write_ecg_pdf, write_image_pdf

    with tempfile.TemporaryDirectory() as folder:
        vector = write_ecg_pdf(Path(folder) / "page.pdf", synthetic_12lead(), 500.0, header=None)
        image = degrade(page_image(vector, dpi), blur_px=blur_px, rotation_deg=rotation_deg)
    return write_image_pdf(path, image, dpi=dpi)


def write_encrypted_pdf(path: Path, password: str = "secret") -> Path:
    """A PDF with a user password (reportlab's standard encryption)."""
    from reportlab.lib.pdfencrypt import StandardEncryption
    from reportlab.pdfgen import canvas

    page = canvas.Canvas(str(path), encrypt=StandardEncryption(password, canPrint=0))
    page.drawString(72, 720, "Name: LOCKED^PATIENT")
    page.showPage()
    page.save()
    return path
