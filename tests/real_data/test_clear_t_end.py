"""The global T end is where the clear T waves end (`ingest.measure.features.CLEAR_T_SHARE`), on real recordings.

ludb/101 (dev, atrial fibrillation): the T waves of its limb leads are a fraction of the precordial ones and
fade out late; with them the QT measured 26 ms longer than the one the LUDB cardiologists drew, and was called
prolonged. cpsc2018_extra/Q0010 (test): T waves of 0.04-0.1 mV in most leads ended 370-450 ms after the QRS
onset, and the QT of 424 ms at 85 /min passed for a marked prolongation (Bazett 506 ms) that the review queue
marked red; its clear T waves (V3-V6) end 130 ms apart, so its T end is not known and no QTc is claimed.
"""

from __future__ import annotations

from ingest.measure.features import measure
from ingest.protocol import protocol_read
from ingest.protocol import vocabulary as v
from ingest.validation.metrics import annotated_intervals
from ingest.validation.references import DEFAULT_DATA_DIR, load_references, ludb_boundaries
from ingest.validation.run import measured_critical, model_window


def _measured(key: str):
    reference = next(ref for ref in load_references(DEFAULT_DATA_DIR) if ref.key == key)
    signal, fs, ecg = model_window(reference, DEFAULT_DATA_DIR)
    return reference, measure(signal, fs, recorded_rate_hz=ecg.sampling_rate_hz), ecg


def test_small_limb_lead_t_waves_do_not_lengthen_the_qt_beyond_the_drawn_one():
    reference, features, ecg = _measured("ludb/101")
    drawn = annotated_intervals(ludb_boundaries(reference.file(DEFAULT_DATA_DIR).with_suffix(".hea")))
    assert abs(features.global_.qt_ms - drawn.qt_ms) <= 10, (features.global_.qt_ms, drawn.qt_ms)
    assert v.PROLONGED_QT not in protocol_read(features, ecg.demographics).labels


def test_a_record_whose_clear_t_waves_disagree_claims_no_qt_and_no_marked_prolongation():
    _, features, ecg = _measured("cpsc2018_extra/Q0010")
    assert features.global_.qt_ms is None
    assert any(note.startswith("T end") and "disagree" in note for note in features.notes), features.notes
    assert "marked qt prolongation" not in measured_critical(features, ecg.demographics)
