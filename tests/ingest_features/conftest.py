"""Fixtures of the feature tests: the real Mortara ECG with the device's own measurements.

The Mortara ELI 250 record shipped with pydicom stores, besides the signal, what the device
measured: global intervals and axes (SCPECG-coded numeric annotations), the fiducial point
of every beat, and its median beat. The tests read those straight from the DICOM dataset,
independently of `ingest.readers`, and compare `ingest.measure.features.measure` with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ingest.measure.features import measure
from ingest.measure.measured import GroundingFeatures
from ingest.readers.read import read_ecg
from ingest.prepare.signal import to_model_window

# SCPECG codes of the global measurements the device stores (SCP-ECG section 5 nomenclature).
SCPECG_MEASUREMENTS = {
    "5.10.2.1-3": "rr_ms", "5.13.5-7": "pr_ms", "5.13.5-9": "qrs_ms", "5.13.5-11": "qt_ms",
    "5.10.2.5-5": "qtc_ms", "5.10.3-11": "p_axis_deg", "5.10.3-13": "qrs_axis_deg", "5.10.3-15": "t_axis_deg",
}
SCPECG_FIDUCIAL = "5.7.1-3"


@dataclass(frozen=True)
class DeviceRecord:
    """What the Mortara device wrote about its own recording."""

    measurements: dict[str, float]  # ms / degrees, by our Measurements field names
    fiducials_ms: list[float]  # the device's fiducial point of each rhythm beat
    median_beat: np.ndarray  # (12, 1200) mV at 1000 Hz, STANDARD_LEADS order
    median_marks: dict[str, int]  # P onset, QRS onset/offset, T offset... samples in median_beat


@dataclass(frozen=True)
class MortaraCase:
    signal: np.ndarray  # the (12, 5000) model window at 500 Hz
    fs: float
    features: GroundingFeatures
    device: DeviceRecord


def device_record(path: Path) -> DeviceRecord:
    """The device's annotations, read with pydicom only.

    The first set of P onset/.../T offset/fiducial points refers to the median beat; every
    further fiducial point is one rhythm beat (1000 Hz samples).
    """
    dataset = pydicom.dcmread(path)
    measurements: dict[str, float] = {}
    marks: dict[str, int] = {}
    fiducials: list[float] = []
    for annotation in dataset.WaveformAnnotationSequence:
        names = annotation.get("ConceptNameCodeSequence")
        if not names:
            continue
        code, meaning = names[0].CodeValue, names[0].CodeMeaning
        if code in SCPECG_MEASUREMENTS and "NumericValue" in annotation:
            measurements[SCPECG_MEASUREMENTS[code]] = float(annotation.NumericValue)
        position = annotation.get("ReferencedSamplePositions")
        if position is None:
            continue
        if meaning not in marks:
            marks[meaning] = int(position)
        elif code == SCPECG_FIDUCIAL:
            fiducials.append(float(position))
    ecg = read_ecg(path)
    return DeviceRecord(measurements=measurements, fiducials_ms=fiducials, median_beat=ecg.median_beat,
                        median_marks=marks)


@pytest.fixture(scope="session")
def mortara(mortara_dicom_path: Path) -> MortaraCase:
    window = to_model_window(read_ecg(mortara_dicom_path))
    features = measure(window.signal, window.sampling_rate_hz)
    return MortaraCase(signal=window.signal, fs=float(window.sampling_rate_hz), features=features,
                       device=device_record(mortara_dicom_path))
