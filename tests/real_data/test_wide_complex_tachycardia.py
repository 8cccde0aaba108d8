"""A ventricular tachycardia whose complexes fill the whole cycle is beats, not noise.

ningbo/JS45546 (ventricular tachycardia at 173 /min, in the committed set) has no quiet stretch
between its complexes, so the noise check called 28 of its 29 QRS detections an artefact and the
record was read "signal not measurable". It is measured now, and read and triaged as a wide complex
tachycardia; an artefact's detections, which do not repeat one shape, are still left out.
"""

from __future__ import annotations

import numpy as np

from ingest.measure.beats import detect_qrs, in_noise, qrs_band, qrs_energy
from ingest.measure.features import _complexes_fill_the_cycle, measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.references import DEFAULT_DATA_DIR, load_references
from ingest.validation.run import model_window
from reports.triage import measured_findings


def _record(key: str) -> tuple[np.ndarray, float]:
    reference = next(ref for ref in load_references(DEFAULT_DATA_DIR) if ref.key == key)
    signal, fs, _ecg = model_window(reference, DEFAULT_DATA_DIR)
    return signal, fs


def test_a_ventricular_tachycardia_filling_the_cycle_is_measured_and_read_as_one():
    signal, fs = _record("ningbo/JS45546")
    band = qrs_band(signal, fs)
    energy = qrs_energy(band, fs)
    detections = detect_qrs(energy, fs)
    assert in_noise(energy, detections, fs).mean() > 0.9  # what the noise check alone makes of it

    features = measure(signal, fs)
    assert any("complexes that fill the cardiac cycle" in note for note in features.notes), features.notes
    assert 165 <= features.global_.hr_bpm <= 180
    assert features.global_.qrs_ms >= 120 and len(features.leads_measured) >= 8
    read = protocol_read(features)
    assert v.WIDE_COMPLEX_TACHYCARDIA in read.labels
    assert not {v.SINUS_TACHYCARDIA, v.SHORT_PR, v.RIGHT_ATRIAL_ABNORMALITY, v.ECTOPIC_BEATS} & set(read.labels)
    assert v.WIDE_COMPLEX_TACHYCARDIA in [finding.finding for finding in measured_findings(features)]


def test_an_artefact_whose_detections_do_not_repeat_stays_unmeasured():
    rng = np.random.default_rng(11)
    noise = rng.normal(0.0, 0.5, (12, 5000)).astype(np.float32)
    band = qrs_band(noise, 500)
    energy = qrs_energy(band, 500)
    detections = detect_qrs(energy, 500)
    flagged = in_noise(energy, detections, 500)
    assert flagged.mean() >= 0.5
    assert not _complexes_fill_the_cycle(band, detections, flagged, 500)
    assert any("nothing measured" in note for note in measure(noise, 500).notes)
