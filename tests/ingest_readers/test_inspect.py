"""`summarize`: the inspect summary of a read ECG, with and without its preparation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ingest.ecg import STANDARD_LEADS, Measurements, SourceFormat
from ingest.inspect import format_summary, summarize
from ingest.measure.measured import GroundingFeatures
from ingest.prepare import PreparedEcg
from ingest.readers.read import read_ecg
from tests.ingest_readers.builders import write_scan_pdf, write_wfdb


def test_summary_of_the_mortara_file_before_preparation(mortara_dicom_path: Path) -> None:
    summary = summarize(read_ecg(mortara_dicom_path))
    assert summary.source_format is SourceFormat.DICOM
    assert summary.leads == list(STANDARD_LEADS)
    assert (summary.sampling_rate_hz, summary.duration_s, summary.n_samples) == (1000.0, 10.0, 10000)
    assert summary.has_signal and not summary.has_image and not summary.prepared
    assert summary.demographics.patient_id == "642341"
    assert summary.demographics.accession == "03028041970546"
    assert summary.measurements.model_dump() == dict.fromkeys(summary.measurements.model_dump())  # all None
    device = summary.device_measurements
    assert device is not None and (device.pr_ms, device.qrs_ms, device.qtc_ms) == (161, 75, 370)
    assert summary.missing_leads == []
    assert summary.notes == ["filters: 0.05-300 Hz"]
    text = format_summary(summary)
    assert "HR 61.1 bpm  PR 161  QRS 75  QT 368  QTc 370 ms  axes P 74  QRS 52  T 57" in text
    assert "measured      -" in text


def test_measurements_come_from_the_prepared_features(mortara_dicom_path: Path) -> None:
    ecg = read_ecg(mortara_dicom_path)
    features = GroundingFeatures(global_=Measurements(hr_bpm=60.5, pr_ms=158, qrs_ms=80, qt_ms=370,
                                                      qtc_ms=372, qrs_axis_deg=48, rr_ms=992),
                                 notes=["no T end found in V2"])
    prepared = PreparedEcg(ecg=ecg, model_signal=np.zeros((12, 5000), np.float32),
                           image=Image.new("RGB", (10, 10)), features=features,
                           window_note="first 10 s", notes=["resampled 1000 -> 500 Hz"])
    summary = summarize(ecg, prepared)
    assert summary.prepared and summary.has_image
    assert summary.measurements.hr_bpm == 60.5 and summary.measurements.qrs_axis_deg == 48
    assert summary.measurements.t_axis_deg is None
    assert summary.notes == ["filters: 0.05-300 Hz", "first 10 s", "resampled 1000 -> 500 Hz",
                             "no T end found in V2"]


def test_summary_of_a_scan_and_of_derived_leads(tmp_path: Path, ecg12: np.ndarray) -> None:
    scan = summarize(read_ecg(write_scan_pdf(tmp_path / "scan.pdf", blur_px=3.0)))
    assert not scan.has_signal and scan.has_image and scan.n_pages == 1
    assert scan.leads == [] and scan.missing_leads == list(STANDARD_LEADS)
    assert scan.device_measurements is None

    eight = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    source = np.stack([ecg12[STANDARD_LEADS.index(name)] for name in eight])
    derived = summarize(read_ecg(write_wfdb(tmp_path, "eight", source, eight)))
    assert derived.derived_leads == ["III", "aVR", "aVL", "aVF"]
    assert "(derived: III, aVR, aVL, aVF)" in format_summary(derived)
